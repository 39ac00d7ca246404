import t from 'tap';
import { FrameRateLimiter } from '../../src/heartbeat/frame-rate-limiter.js';
import { FakeClock } from '../helpers/fake-clock.js';

t.test('allows the burst, then the sustained rate', async (t) => {
  const clock = new FakeClock();
  const l = new FrameRateLimiter(10, 5, clock);
  let ok = 0;
  for (let i = 0; i < 20; i++) if (l.take()) ok++;
  t.equal(ok, 5, 'burst');
  clock.advance(1000);
  ok = 0;
  for (let i = 0; i < 20; i++) if (l.take()) ok++;
  t.equal(ok, 5, 'refilled up to the burst, not beyond');
  clock.advance(100);
  t.ok(l.take(), 'one token per 100 ms at 10/s');
  t.notOk(l.take());
});

t.test('update changes the limits', async (t) => {
  const clock = new FakeClock();
  const l = new FrameRateLimiter(10, 10, clock);
  l.update(1, 1);
  t.ok(l.take());
  t.notOk(l.take());
  t.throws(() => new FrameRateLimiter(0, 1, clock), RangeError);
});
