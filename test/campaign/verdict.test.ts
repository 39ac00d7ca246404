/**
 * The campaign's pure parts: the matrix of phases and faults, the seeded plan, the verdict over
 * QEMU timelines, and the table. The trials themselves run in test/e2e/campaign.test.ts.
 */
import t from 'tap';
import { applicable, cells, expectation, FAULTS, PHASES } from './matrix.js';
import { planTrials } from './plan.js';
import { campaignTable } from './table.js';
import { judge, type TrialObservation } from './verdict.js';

const OPTS = { unresponsivePeerMs: 1000 };

t.test('every phase has cells; every applicable cell has an expectation', async (t) => {
  for (const p of PHASES) t.ok(cells({ phase: p }).length > 0, p);
  for (const f of FAULTS) t.ok(cells({ fault: f }).length > 0, f);
  for (const c of cells()) t.ok(expectation(c.phase, c.fault, OPTS).why.length > 0, `${c.phase} / ${c.fault}`);
  t.notOk(applicable('after-primary-failover', 'qemu-death-secondary'), 'a solo phase has no secondary QEMU');
  t.throws(() => expectation('after-primary-failover', 'qemu-death-secondary', OPTS));
  t.match(expectation('failback-swapped', 'agent-death-primary', OPTS), { takeover: false, runs: 'primary' });
  t.match(expectation('steady', 'freeze-primary', OPTS), { takeover: true, runs: 'secondary', boundMs: 2000 });
});

t.test('the plan is replayable and covers distinct cells first', async (t) => {
  const a = planTrials({ trials: 30, seed: 42 });
  t.same(planTrials({ trials: 30, seed: 42 }), a, 'same seed, same trials');
  t.not(JSON.stringify(planTrials({ trials: 30, seed: 43 })), JSON.stringify(a), 'another seed, another order');
  t.equal(new Set(a.map((x) => `${x.phase}/${x.fault}`)).size, 30, '30 trials, 30 distinct cells');
  t.same(a.map((x) => x.index), Array.from({ length: 30 }, (_, i) => i + 1));
  const only = planTrials({ trials: 5, seed: 1, phase: 'failback-swapped', fault: 'agent-death-primary' });
  t.ok(only.every((x) => x.phase === 'failback-swapped' && x.fault === 'agent-death-primary'), 'filters hold');
  t.throws(() => planTrials({ trials: 1, seed: 1, phase: 'nope' }), /no cell/);
});

const base = (over: Partial<TrialObservation>): TrialObservation => ({
  faultAt: 1000,
  hostOf: { primary: 'a', secondary: 'b' },
  qemus: [],
  failovers: [],
  endAt: 5000,
  ...over,
});

t.test('a clean takeover holds and is timed from the fault', async (t) => {
  const e = expectation('steady', 'power-loss-primary', OPTS);
  const v = judge(
    base({
      qemus: [
        { id: 'a#1', host: 'a', changes: [[0, true], [1000, false]] },
        { id: 'b#1', host: 'b', changes: [[0, false], [1600, true]] },
      ],
      failovers: [{ host: 'b', sequence: 'secondary-failover', at: 1550 }],
      resumedAt: 4000,
    }),
    e,
  );
  t.match(v, { held: true, safety: [], liveness: [], takeoverMs: 600, overlapMs: 0 });
});

t.test('two running guests are a violation, however short', async (t) => {
  const e = expectation('steady', 'isolate-primary', OPTS);
  const v = judge(
    base({
      qemus: [
        { id: 'a#1', host: 'a', changes: [[0, true], [1700, false]] },
        { id: 'b#1', host: 'b', changes: [[0, false], [1650, true]] },
      ],
      failovers: [{ host: 'b', sequence: 'secondary-failover', at: 1600 }],
      resumedAt: 4000,
    }),
    e,
  );
  t.equal(v.held, false);
  t.equal(v.overlapMs, 50);
  t.match(v.safety[0], /two guests running outside COLO at \+650 ms for 50 ms: a#1, b#1/);
});

t.test('a takeover while the peer QEMU lives is a violation; so is an empty end', async (t) => {
  const e = expectation('failback-swapped', 'agent-death-primary', OPTS);
  const v = judge(
    base({
      hostOf: { primary: 'b', secondary: 'a' },
      qemus: [
        { id: 'b#1', host: 'b', changes: [[0, true]] },
        { id: 'a#2', host: 'a', changes: [[0, false], [1500, true]] },
      ],
      failovers: [{ host: 'a', sequence: 'secondary-failover', at: 1400 }],
    }),
    e,
  );
  t.equal(v.held, false);
  t.match(v.safety.join('\n'), /no takeover was due .* a ran secondary-failover at \+400 ms/);
  t.match(v.safety.join('\n'), /two guests/);
  const paused = judge(base({ qemus: [{ id: 'a#1', host: 'a', changes: [[0, true], [2000, false]] }] }), expectation('steady', 'witness-down', OPTS));
  t.match(paused.safety, [/no guest runs at the end/]);
});

t.test('a missing resume is a liveness failure, a slow takeover a figure over its bound; neither a violation', async (t) => {
  const e = expectation('steady', 'crash-secondary', OPTS);
  const v = judge(
    base({
      qemus: [{ id: 'a#1', host: 'a', changes: [[0, true]] }, { id: 'b#1', host: 'b', changes: [[0, false]] }],
      failovers: [{ host: 'a', sequence: 'primary-failover', at: 2500 }],
      endAt: 9000,
    }),
    e,
  );
  t.same(v.safety, []);
  t.match(v.liveness, [/did not resume/]);
  t.equal(v.overBound, 'takeover took 1500 ms (bound 1000 ms)');
  t.equal(v.held, false, 'the table does not count it as held');
  const table = campaignTable([{ trial: { index: 1, phase: 'steady', fault: 'crash-secondary', seed: 5 }, verdict: v, boundMs: e.boundMs }], 77);
  t.match(table, /steady\s+crash-secondary\s+1\s+0\s+1500\s+1500\s+1000\s+ok/);
  t.match(table, /#1 steady \/ crash-secondary \(--seed 77 --only 1\): replication did not resume.*; takeover took 1500 ms/);
  t.match(table, /1 trials, 0 held, 0 with safety violations, 1 liveness failures or takeovers over their bound; seed 77/);
});

t.test("the harness's own failure is reported as such", async (t) => {
  const v = judge(base({ harnessError: 'QEMU did not start' }), expectation('steady', 'partition', OPTS));
  t.match(v, { held: false, safety: [], liveness: ['harness: QEMU did not start'] });
});
