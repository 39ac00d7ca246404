import { join } from 'node:path';
import t from 'tap';
import { readConfigFile, type ConfigFile } from '../../src/config/config-file.js';

function readOk(path: string): ConfigFile {
  const r = readConfigFile(path);
  if (!r.ok) throw new Error(`expected ${path} to parse: ${r.problem.message}`);
  return r.file;
}

t.test('YAML: data, and the line of each key', async (t) => {
  const dir = t.testdir({ 'a.yaml': '# comment\nheartbeat:\n  peers:\n    - 127.0.0.2:7410\n  intervalMs: 50\n' });
  const file = readOk(join(dir, 'a.yaml'));
  t.same(file.data, { heartbeat: { peers: ['127.0.0.2:7410'], intervalMs: 50 } });
  t.equal(file.lineOf(['heartbeat']), 2);
  t.equal(file.lineOf(['heartbeat', 'peers']), 3);
  t.equal(file.lineOf(['heartbeat', 'intervalMs']), 5);
  t.equal(file.lineOf(['heartbeat', 'nope']), undefined);
  t.equal(file.lineOf(['heartbeat', 'intervalMs', 'deeper']), undefined);
});

t.test('YAML 1.2: "yes" and "no" stay strings, anchors work', async (t) => {
  const dir = t.testdir({ 'a.yml': 'a: yes\nb: &x 5\nc: *x\n' });
  t.same(readOk(join(dir, 'a.yml')).data, { a: 'yes', b: 5, c: 5 });
});

t.test('JSON: data and lines; a byte order mark is tolerated', async (t) => {
  const dir = t.testdir({ 'a.json': '\uFEFF{\n  "log": {\n    "level": "debug"\n  }\n}\n' });
  const file = readOk(join(dir, 'a.json'));
  t.same(file.data, { log: { level: 'debug' } });
  t.equal(file.lineOf(['log', 'level']), 3);
});

t.test('an empty YAML file is null; an empty JSON file is an error', async (t) => {
  const dir = t.testdir({ 'e.yaml': '', 'e.json': '' });
  t.equal(readOk(join(dir, 'e.yaml')).data, null);
  const r = readConfigFile(join(dir, 'e.json'));
  t.match(r, { ok: false, problem: { key: '', source: join(dir, 'e.json'), message: 'invalid JSON: Unexpected end of JSON input' } });
});

t.test('syntax errors: file, line, one-line message', async (t) => {
  const dir = t.testdir({
    'tab.yaml': 'log:\n\tlevel: info\n',
    'quote.yaml': 'log:\n  level: "info\n',
    'multi.yaml': 'log: {}\n---\nnode: {}\n',
    'trailing.json': '{"log": {"level": "info",}}',
    'two-lines.json': '{\n"log": x\n}',
  });
  // An unterminated quote is reported where the file ends (line 3), which is where the parser notices.
  for (const [name, line] of [['tab.yaml', 2], ['quote.yaml', 3], ['multi.yaml', 2], ['trailing.json', 1], ['two-lines.json', undefined]] as const) {
    const r = readConfigFile(join(dir, name));
    t.equal(r.ok, false, name);
    if (r.ok) continue;
    t.equal(r.problem.source, join(dir, name));
    t.equal(r.problem.line, line, `${name} line`);
    t.notMatch(r.problem.message, /\n/, `${name}: one line`);
    t.match(r.problem.message, /^invalid (YAML|JSON)/);
  }
});

t.test('extensions are matched without regard to case', async (t) => {
  const dir = t.testdir({ 'A.YAML': 'log: {}\n' });
  t.equal(readConfigFile(join(dir, 'A.YAML')).ok, true);
});
