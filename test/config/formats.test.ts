import t from 'tap';
import convict from 'convict';
import { FORMATS, getFormat, registerFormats, showValue, type FormatName, type FormatParams } from '../../src/config/formats.js';

/** The message a format gives for `value`, or undefined when it accepts it. */
function problem(name: FormatName, value: unknown, leaf: FormatParams = {}): string | undefined {
  try {
    getFormat(name).validate(value, leaf);
    return undefined;
  } catch (err) {
    return (err as Error).message;
  }
}

t.test('host-port accepts IPv4, bracketed IPv6 and host names with ports 1-65535', async (t) => {
  for (const ok of ['127.0.0.1:7410', '0.0.0.0:1', '[::1]:7410', '[fd00::2]:65535', 'localhost:7410', 'node-a.example.com:9464']) {
    t.equal(problem('host-port', ok), undefined, ok);
  }
});

t.test('host-port says what is wrong and shows the value', async (t) => {
  const cases: [unknown, string][] = [
    ['127.0.0.1', 'missing ":PORT"'],
    ['127.0.0.1:0', 'port 0 is outside 1-65535'],
    ['127.0.0.1:65536', 'port 65536 is outside 1-65535'],
    ['127.0.0.1:http', 'port "http" is not a number'],
    [':7410', 'the host is empty'],
    ['::1:7410', 'an IPv6 address needs brackets'],
    ['[::1:7410', 'missing "]"'],
    ['[nope]:7410', '"nope" is not an IPv6 address'],
    ['[::1]7410', 'missing ":PORT"'],
    ['10.0.0.300:7410', '"10.0.0.300" is not a valid IPv4 address'],
    ['bad_host:7410', '"bad_host" is not an IPv4 address, IPv6 address or host name'],
    ['-x.example:7410', 'is not an IPv4 address, IPv6 address or host name'],
    [7410, 'must be a "HOST:PORT" string'],
  ];
  for (const [value, reason] of cases) {
    const msg = problem('host-port', value);
    t.match(msg, reason, String(value));
    t.match(msg, `(got ${showValue(value)})`, 'names the value');
  }
});

t.test('optional-host-port also takes "" (off)', async (t) => {
  t.equal(problem('optional-host-port', ''), undefined);
  t.equal(problem('optional-host-port', '127.0.0.1:9464'), undefined);
  t.match(problem('optional-host-port', 'off'), 'missing ":PORT"');
  t.equal(problem('host-port', '') !== undefined, true, 'host-port itself does not take ""');
});

t.test('host-port-list checks every entry and coerces comma-separated text', async (t) => {
  const f = getFormat('host-port-list');
  t.equal(problem('host-port-list', []), undefined);
  t.equal(problem('host-port-list', ['127.0.0.2:7410', '[::1]:7410']), undefined);
  t.match(problem('host-port-list', '127.0.0.2:7410'), 'must be a list of "HOST:PORT" strings');
  const msg = problem('host-port-list', ['127.0.0.2:7410', 'x', 7]);
  t.match(msg, 'entry 2 "x": missing ":PORT"');
  t.match(msg, 'entry 3 7: not a string');
  t.same(f.coerce!('127.0.0.2:7410, 10.0.0.2:7410'), ['127.0.0.2:7410', '10.0.0.2:7410']);
  t.same(f.coerce!(''), [], '"" is the empty list');
});

t.test('qmp-address: unix:ABSOLUTE_PATH or tcp:HOST:PORT', async (t) => {
  for (const ok of ['unix:/run/colo-agent/qmp.sock', 'tcp:127.0.0.1:4444', 'tcp:[::1]:4444', 'tcp:qemu-host:4444']) {
    t.equal(problem('qmp-address', ok), undefined, ok);
  }
  t.match(problem('qmp-address', 'unix:run/qmp.sock'), 'with an absolute PATH');
  t.match(problem('qmp-address', 'file:/run/qmp.sock'), 'invalid QMP address');
  t.match(problem('qmp-address', 'tcp:127.0.0.1'), 'invalid QMP address');
  t.match(problem('qmp-address', 'tcp:127.0.0.1:0'), 'port 0');
  t.match(problem('qmp-address', `unix:/${'x'.repeat(200)}.sock`), 'at most 107');
  t.match(problem('qmp-address', 42), 'must be a "unix:PATH" or "tcp:HOST:PORT" string (got 42)');
});

t.test('int-range: integers within the key\'s bounds; coercion leaves non-integers for the message', async (t) => {
  const leaf = { min: 10, max: 60000 };
  t.equal(problem('int-range', 10, leaf), undefined);
  t.equal(problem('int-range', 60000, leaf), undefined);
  t.equal(problem('int-range', 'fast', leaf), 'must be an integer between 10 and 60000 (got "fast")');
  t.equal(problem('int-range', 9, leaf), 'must be an integer between 10 and 60000 (got 9)');
  t.equal(problem('int-range', 1.5, leaf), 'must be an integer between 10 and 60000 (got 1.5)');
  t.equal(problem('int-range', NaN, leaf), 'must be an integer between 10 and 60000 (got NaN)');
  const { coerce } = getFormat('int-range');
  t.equal(coerce!('50'), 50);
  t.equal(coerce!(' 50 '), 50);
  t.equal(coerce!('50ms'), '50ms', 'no parseInt leniency');
  t.equal(coerce!('1e3'), '1e3');
  t.equal(coerce!(''), '');
});

t.test('number-range takes fractions', async (t) => {
  t.equal(problem('number-range', 8.5, { min: 0, max: 100 }), undefined);
  t.match(problem('number-range', Infinity, { min: 0, max: 100 }), 'must be a number between 0 and 100');
  t.equal(getFormat('number-range').coerce!('8.5'), 8.5);
  t.equal(getFormat('number-range').coerce!('eight'), 'eight');
});

t.test('flag is strict: only true and false', async (t) => {
  const { coerce } = getFormat('flag');
  t.equal(coerce!('true'), true);
  t.equal(coerce!('FALSE'), false);
  t.equal(coerce!('0'), '0', '"0" is not silently true (convict\'s Boolean coercion would make it true)');
  t.equal(problem('flag', '0'), 'must be true or false (got "0")');
  t.equal(problem('flag', false), undefined);
});

t.test('enums, names, ids, paths and QEMU profiles', async (t) => {
  t.equal(problem('node-role', 'witness'), undefined);
  t.equal(problem('node-role', 'leader'), 'must be one of primary, secondary, witness (got "leader")');
  t.equal(problem('log-level', 'silent'), undefined);
  t.match(problem('log-level', 'verbose'), 'one of fatal, error, warn, info, debug, trace, silent');
  t.equal(problem('arbiter-mode', 'etcd'), undefined);
  t.equal(problem('host', '::1'), undefined, 'a bare host may be IPv6 without brackets');
  t.equal(problem('host', 'colo-b.example'), undefined);
  t.match(problem('host', '127.0.0.1:7410'), 'must be an IPv4 address, IPv6 address or host name');
  t.equal(problem('node-name', ''), undefined);
  t.equal(problem('node-name', 'colo-a.example'), undefined);
  t.match(problem('node-name', 'has space'), 'must be ""');
  t.equal(problem('qemu-id', 'compare0-0'), undefined);
  t.equal(problem('qemu-id', 'children.1'), undefined);
  t.match(problem('qemu-id', '0abc'), 'a QEMU id');
  t.equal(problem('absolute-path', '/var/lib/colo-agent'), undefined);
  t.match(problem('absolute-path', 'var/lib'), 'must be an absolute path');
  t.equal(problem('optional-absolute-path', ''), undefined);
  for (const ok of ['auto', '7.2', '8.1', '9.2', '10.0', '10.0.7']) t.equal(problem('qemu-profile', ok), undefined, ok);
  t.match(problem('qemu-profile', 10), 'quoted QEMU version');
  t.match(problem('qemu-profile', 'latest'), 'MAJOR.MINOR[.MICRO]');
  t.match(problem('qemu-profile', '10'), 'MAJOR.MINOR[.MICRO]');
});

t.test('a sensitive key\'s value never appears in a message', async (t) => {
  const msg = problem('optional-absolute-path', 'secret/relative', { sensitive: true });
  t.match(msg, 'value not shown');
  t.notMatch(msg, 'secret');
});

t.test('every format describes itself for the reference', async (t) => {
  for (const name of Object.keys(FORMATS) as FormatName[]) {
    t.ok(getFormat(name).describe({ min: 1, max: 2 }).length > 0, name);
  }
  t.equal(getFormat('int-range').describe({ min: 1, max: 2 }), 'integer 1..2');
});

t.test('registerFormats() registers with convict once, and convict then uses the formats', async (t) => {
  registerFormats();
  registerFormats();
  const conf = convict(
    { a: { doc: 'a', format: 'int-range', default: 5, min: 1, max: 9, env: 'A' }, b: { doc: 'b', format: 'host-port-list', default: [], env: 'B' } },
    { env: { A: '7', B: '127.0.0.1:1,127.0.0.2:2' }, args: [] },
  );
  t.equal(conf.get('a'), 7, 'coerced by our int coercion');
  t.same(conf.get('b'), ['127.0.0.1:1', '127.0.0.2:2']);
  t.doesNotThrow(() => conf.validate({ allowed: 'strict' }));
  conf.set('a', '99' as unknown as number);
  t.throws(() => conf.validate({ allowed: 'strict' }), /must be an integer between 1 and 9/);
});
