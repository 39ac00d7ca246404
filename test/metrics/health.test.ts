import t from 'tap';
import { EventLoopLag, healthVerdict, UNHEALTHY_STATES } from '../../src/metrics/health.js';
import { AGENT_STATES } from '../../src/metrics/registry.js';
import { FakeClock } from '../helpers/fake-clock.js';

t.test('the rule: failed, stopping and stopped are unhealthy, every other state is fine', async (t) => {
  t.same([...UNHEALTHY_STATES].sort(), ['failed', 'stopped', 'stopping']);
  for (const state of AGENT_STATES) {
    const r = healthVerdict(state, 0);
    t.equal(r.ok, !UNHEALTHY_STATES.includes(state), `${state}: ${r.ok ? 'ok' : 'not ok'}`);
    t.same(r.problems, r.ok ? [] : [`agent state is ${state}`]);
  }
});

t.test('the rule: a late event loop is unhealthy', async (t) => {
  t.match(healthVerdict('peer-up', 999, 1000), { ok: true, eventLoopLagMs: 999 });
  t.match(healthVerdict('peer-up', 1500, 1000), { ok: false, problems: ['event loop 1500 ms late (limit 1000 ms)'] });
  t.equal(healthVerdict('failed', 5000, 1000).problems.length, 2, 'both problems named');
});

t.test('EventLoopLag on a fake clock: on time is 0; stop() leaves no timer', async (t) => {
  const clock = new FakeClock();
  const lag = new EventLoopLag({ periodMs: 100, clock });
  lag.start();
  lag.start();
  t.equal(clock.pendingCount, 1, 'one timer however often started');
  clock.advance(1000);
  t.equal(lag.lagMs, 0);
  lag.stop();
  t.equal(clock.pendingCount, 0);
});

t.test('EventLoopLag sees a blocked loop', async (t) => {
  const lag = new EventLoopLag({ periodMs: 20 });
  t.teardown(() => lag.stop());
  lag.start();
  const until = Date.now() + 250;
  while (Date.now() < until) {
    // block the event loop, as a stuck synchronous call would
  }
  // The overdue sample timer was due before this one, so it has run when this resolves.
  await new Promise((resolve) => setTimeout(resolve, 0));
  t.ok(lag.lagMs > 100, `the sample after a 250 ms block is late (${lag.lagMs} ms)`);
});
