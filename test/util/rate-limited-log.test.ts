import { Writable } from 'node:stream';
import t from 'tap';
import { createLogger } from '../../src/log.js';
import { RateLimitedLog } from '../../src/util/rate-limited-log.js';
import { FakeClock } from '../helpers/fake-clock.js';

function capture(): { lines: Array<Record<string, unknown>>; stream: Writable } {
  const lines: Array<Record<string, unknown>> = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const l of chunk.toString().split('\n')) if (l) lines.push(JSON.parse(l) as Record<string, unknown>);
      cb();
    },
  });
  return { lines, stream };
}

t.test('one line per key per interval, then the suppressed count', async (t) => {
  const { lines, stream } = capture();
  const clock = new FakeClock();
  const log = new RateLimitedLog(createLogger({ level: 'info', destination: stream }), { intervalMs: 10_000, clock });
  t.ok(log.warn('bad-mac', { remote: 'x' }, 'rejected'));
  for (let i = 0; i < 50; i++) t.notOk(log.warn('bad-mac', { remote: 'x' }, 'rejected'));
  t.ok(log.warn('oversize', {}, 'rejected'), 'other keys are independent');
  clock.advance(10_000);
  t.ok(log.warn('bad-mac', { remote: 'y' }, 'rejected'));
  clock.advance(10_000);
  t.ok(log.log('error', 'bad-mac', {}, 'again'));
  await new Promise((r) => setImmediate(r));
  t.equal(lines.length, 4);
  t.equal(lines[0]!.suppressed, undefined);
  t.equal(lines[2]!.suppressed, 50);
  t.equal(lines[2]!.remote, 'y');
  t.equal(lines[3]!.suppressed, undefined, 'count resets');
  t.equal(lines[3]!.level, 'error');
});
