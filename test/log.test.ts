import t from 'tap';
import { Writable } from 'node:stream';
import { createLogger } from '../src/log.js';

function capture(level: 'info' | 'debug' | 'warn') {
  const lines: Record<string, unknown>[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const l of chunk.toString().split('\n').filter(Boolean)) lines.push(JSON.parse(l) as Record<string, unknown>);
      cb();
    },
  });
  return { lines, logger: createLogger({ level, destination }) };
}

t.test('JSON lines with level label, ISO time and component children', async (t) => {
  const { lines, logger } = capture('info');
  logger.child({ component: 'qmp' }).info({ command: 'query-status' }, 'sent');
  logger.debug('hidden at info');
  t.equal(lines.length, 1, 'debug is filtered at level info');
  t.match(lines[0], { level: 'info', component: 'qmp', command: 'query-status', msg: 'sent' });
  t.match(String(lines[0]!.time), /^\d{4}-\d\d-\d\dT/);
});

t.test('secret-looking fields are redacted at any of the first levels', async (t) => {
  const { lines, logger } = capture('info');
  logger.warn({ key: 'k1', opts: { secret: 's1', nested: { password: 'p1' } }, token: 't1' }, 'careful');
  const text = JSON.stringify(lines);
  for (const s of ['k1', 's1', 'p1', 't1']) t.notOk(text.includes(`"${s}"`), `${s} is not logged`);
  t.match(lines[0], { key: '[redacted]', token: '[redacted]', opts: { secret: '[redacted]' } });
});
