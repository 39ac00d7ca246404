import t from 'tap';
import { Backoff } from '../../src/util/backoff.js';

t.test('grows by the factor and stops at the cap', async (t) => {
  const b = new Backoff({ initialMs: 100, maxMs: 1000, jitter: 0 });
  t.same([b.next(), b.next(), b.next(), b.next(), b.next()], [100, 200, 400, 800, 1000]);
  t.equal(b.next(), 1000, 'stays at the cap');
  b.reset();
  t.equal(b.next(), 100, 'reset starts small again');
});

t.test('jitter stays within its spread and never passes the cap', async (t) => {
  const lo = new Backoff({ initialMs: 100, maxMs: 1000, jitter: 0.5, random: () => 0 });
  const hi = new Backoff({ initialMs: 100, maxMs: 1000, jitter: 0.5, random: () => 0.999999 });
  t.equal(lo.next(), 50);
  t.equal(hi.next(), 150);
  for (let i = 0; i < 10; i++) hi.next();
  t.equal(hi.next(), 1000);
});

t.test('rejects nonsense bounds', async (t) => {
  t.throws(() => new Backoff({ initialMs: 0, maxMs: 10 }), RangeError);
  t.throws(() => new Backoff({ initialMs: 100, maxMs: 10 }), RangeError);
});
