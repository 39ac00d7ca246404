/**
 * The live view: rendering a snapshot (agents with their epoch, arbiter, lease and paused guest;
 * the witness), the one-line-per-change form, and reading /metrics.
 */
import t from 'tap';
import type { AgentStatus } from '../../src/agent.js';
import { FailoverOutages } from '../../src/demo/outage.js';
import {
  arbiterCell,
  checkpointCell,
  demoMetricsFrom,
  epochCell,
  lastKnown,
  outageCell,
  parseMetricSums,
  renderView,
  sideRow,
  viewChanges,
  witnessRow,
  type DemoSnapshot,
  type SideSnapshot,
  type WitnessSnapshot,
  type WitnessStatus,
} from '../../src/demo/view.js';

const T = Date.parse('2026-01-01T12:00:00.000Z');

function status(over: Partial<AgentStatus> & { colo?: string } = {}): AgentStatus {
  const { colo, ...rest } = over;
  return {
    node: 'colo-a',
    role: 'primary',
    state: 'peer-up',
    peer: { name: 'colo-b', state: 'up', silentForMs: 40 },
    links: [
      { link: '127.0.0.2:7410', state: 'up', rttMs: 0.412 },
      { link: 'in:127.0.0.2', state: 'up', rttMs: 0.388 },
    ],
    qemu: { qmp: 'unix:/x', status: 'ready', version: '7.2.22', colo: { mode: (colo ?? 'primary') as AgentStatus['qemu']['colo']['mode'] } },
    maintenance: { on: false },
    epoch: { epoch: 0, newestSeen: 0, newestSeenFrom: undefined, stale: false, holder: undefined, updatedAt: undefined },
    arbiter: { mode: 'none', reachable: true },
    ...rest,
  };
}

function side(over: Partial<SideSnapshot> = {}): SideSnapshot {
  return { side: 'primary', agentPid: 100, agentAlive: true, qemuPid: 99, qemuAlive: true, status: status(), metrics: { checkpoints: 0, coloStarts: 1, peerOutageSeconds: 0 }, ...over };
}

function snap(sides: SideSnapshot[], at = T + 5000, witness?: WitnessSnapshot): DemoSnapshot {
  return { at, since: T, qemuVersion: '7.2.22', checkpointDelayMs: 600_000, arbiter: witness ? 'witness' : 'none', sides, ...(witness && { witness }) };
}

function witnessStatus(over: Partial<WitnessStatus> = {}): WitnessStatus {
  return {
    node: 'colo-w',
    role: 'witness',
    state: 'witness',
    epoch: 0,
    holder: 'colo-a',
    leaseRemainingMs: 512.4,
    pending: [],
    links: [
      { link: 'in:127.0.0.1', peer: 'colo-a', state: 'established', rttMs: 0.3 },
      { link: 'in:127.0.0.2', peer: 'colo-b', state: 'established', rttMs: 0.281 },
    ],
    ...over,
  };
}

function witness(over: Partial<WitnessSnapshot> = {}): WitnessSnapshot {
  return { pid: 300, alive: true, listen: '127.0.0.3:7410', status: witnessStatus(), ...over };
}

const witnessArbiter = (leaseRemainingMs?: number, reachable = true): AgentStatus['arbiter'] => ({ mode: 'witness', reachable, ...(leaseRemainingMs !== undefined && { leaseRemainingMs }) });

t.test('parseMetricSums: sums samples across labels, ignores comments and other metrics', async (t) => {
  const text = [
    '# HELP colo_agent_checkpoints_total Checkpoints',
    '# TYPE colo_agent_checkpoints_total counter',
    'colo_agent_checkpoints_total{node="colo-a"} 3',
    'colo_agent_checkpoints_total{node="colo-a",x="y"} 2',
    'colo_agent_colo_starts_total 1',
    'colo_agent_peer_outage_seconds 1.5',
    'colo_agent_checkpoints_total_other 99',
    'garbage line',
  ].join('\n');
  t.same(parseMetricSums(text, ['colo_agent_checkpoints_total', 'colo_agent_colo_starts_total']), { colo_agent_checkpoints_total: 5, colo_agent_colo_starts_total: 1 });
  t.same(demoMetricsFrom(text), { checkpoints: 5, coloStarts: 1, peerOutageSeconds: 1.5 });
  t.same(demoMetricsFrom(''), { checkpoints: undefined, coloStarts: undefined, peerOutageSeconds: undefined });
});

t.test('renderView: a header, one row per side, the last failover, the checkpoint note', async (t) => {
  const lines = renderView(
    snap([
      side(),
      side({
        side: 'secondary',
        agentPid: 200,
        qemuPid: 199,
        status: status({ node: 'colo-b', role: 'primary', state: 'solo', colo: 'none', lastFailover: { sequence: 'secondary-failover', trigger: 'colo-exit-error', ok: true, durationMs: 35.5 } }),
        metrics: { checkpoints: 0, peerOutageSeconds: 2.345 },
      }),
    ]),
  );
  t.match(lines[0], /^colo-agent demo · QEMU 7\.2\.22 \(TCG\) · primary 127\.0\.0\.1 \/ secondary 127\.0\.0\.2 · up 5s · Ctrl-C/);
  t.match(lines[1], /^SIDE\s+NODE\s+ROLE\s+STATE\s+QEMU\s+COLO\s+EPOCH\s+ARBITER LEASE\s+PEER\s+LINK RTT\s+CKPT\s+OUTAGE$/);
  t.match(lines[2], /^primary\s+colo-a\s+primary\s+peer-up\s+ready\s+primary\s+0\s+none\s+up\s+2\/2 up 0\.39ms\s+0\s+-$/);
  // Solo (COLO none): no replication to count; no outage measured for it here (no outage field).
  t.match(lines[3], /^secondary\s+colo-b\s+primary\s+solo\s+ready\s+none\s+0\s+none\s+up\s+2\/2 up 0\.39ms\s+n\/a\s+-$/);
  t.match(lines[4], /^arbiter none: a partition between the sides makes both take over \(split brain\)/, 'no witness: said so');
  t.equal(lines[5], 'secondary: last failover secondary-failover (colo-exit-error) ok in 35.5 ms');
  t.match(lines[6], /idle period is 600 s/);
});

t.test('renderView with the witness: its row after the sides; each side with epoch, arbiter and lease', async (t) => {
  const lines = renderView(
    snap(
      [
        side({ status: status({ arbiter: witnessArbiter(412.7) }) }),
        side({ side: 'secondary', agentPid: 200, qemuPid: 199, status: status({ node: 'colo-b', role: 'secondary', colo: 'secondary', arbiter: witnessArbiter() }) }),
      ],
      T + 5000,
      witness(),
    ),
  );
  t.match(lines[0], /primary 127\.0\.0\.1 \/ secondary 127\.0\.0\.2 \/ witness 127\.0\.0\.3 · up 5s/);
  t.match(lines[2], /^primary\s+colo-a\s+primary\s+peer-up\s+ready\s+primary\s+0\s+ok 413ms\s+up\s/);
  t.match(lines[3], /^secondary\s+colo-b\s+secondary\s+peer-up\s+ready\s+secondary\s+0\s+ok\s+up\s/);
  t.equal(lines[4], 'witness    colo-w   127.0.0.3:7410 epoch 0, holder colo-a (lease 512ms), links colo-a up 0.30ms, colo-b up 0.28ms');
  t.notOk(lines.some((l) => l.startsWith('arbiter none')), 'no split-brain warning with a witness');
});

t.test('the arbitration cells: stale epoch, unreachable arbiter, paused guest, arbitrating', async (t) => {
  const stale = status({
    state: 'stale',
    epoch: { epoch: 0, newestSeen: 1, newestSeenFrom: 'witness colo-w', stale: true, holder: undefined, updatedAt: undefined },
    arbiter: witnessArbiter(),
  });
  t.equal(epochCell(stale), '0 stale:1');
  t.equal(epochCell(status({ epoch: { epoch: 2, newestSeen: 2, newestSeenFrom: undefined, stale: false, holder: 'colo-a', updatedAt: undefined } })), '2');
  t.equal(epochCell(status({ epoch: undefined })), '?', 'an agent without epochs');
  t.equal(arbiterCell(status()), 'none');
  t.equal(arbiterCell(status({ arbiter: witnessArbiter(0, false) })), 'UNREACHABLE 0ms');
  t.equal(arbiterCell(status({ arbiter: witnessArbiter(undefined, false) })), 'UNREACHABLE');
  t.match(sideRow(side({ status: stale })), /^primary\s+colo-a\s+primary\s+stale\s+ready\s+primary\s+0 stale:1\s+ok\s+up/);
  t.match(sideRow(side({ status: status({ state: 'peer-down', guestStopped: 'lease', arbiter: witnessArbiter(0, false) }) })), /peer-down\s+PAUSED:lease\s+primary\s+0\s+UNREACHABLE 0ms/);
  t.match(sideRow(side({ status: status({ state: 'arbitrating', arbiter: witnessArbiter() }) })), /^primary\s+colo-a\s+primary\s+arbitrating\s+ready/);
});

t.test('witnessRow: a request pending, no /status, gone', async (t) => {
  t.equal(
    witnessRow(witness({ status: witnessStatus({ epoch: 1, pending: ['colo-b'], links: [{ link: 'in:127.0.0.2', peer: 'colo-b', state: 'established' }, { link: 'in:127.0.0.1', state: 'hello' }] }) })),
    'witness    colo-w   127.0.0.3:7410 epoch 1, holder colo-a (lease 512ms), pending colo-b, links colo-b up, in:127.0.0.1 hello',
  );
  t.match(witnessRow(witness({ status: witnessStatus({ holder: undefined, leaseRemainingMs: undefined, links: [] }) })), /epoch 0, holder none, links no agent linked$/);
  t.match(witnessRow(witness({ status: witnessStatus({ state: 'starting' }) })), /127\.0\.0\.3:7410 state starting, epoch 0/);
  t.equal(witnessRow(witness({ status: undefined })), 'witness    pid 300 on 127.0.0.3:7410: no /status');
  t.equal(
    witnessRow(witness({ alive: false, exit: 'SIGKILL', status: undefined })),
    'witness    pid 300 gone (SIGKILL): the agents have no arbiter (no takeover can be granted)',
  );
});

t.test('sideRow: a link down, maintenance, a killed agent', async (t) => {
  const row = sideRow(side({ status: status({ state: 'peer-suspect', maintenance: { on: true }, links: [{ link: 'a', state: 'up', rttMs: 1 }, { link: 'b', state: 'suspect' }] }) }));
  t.match(row, /peer-suspect\*/, 'maintenance marked');
  t.match(row, /1\/2 up, suspect/);
  t.match(sideRow(side({ agentAlive: false, agentExit: 'SIGKILL', status: undefined })), /agent pid 100 gone \(SIGKILL\); QEMU pid 99 runs$/);
  t.match(sideRow(side({ agentAlive: false, qemuAlive: false, status: undefined })), /QEMU pid 99 gone$/);
});

t.test('viewChanges: everything the first time, then only what changed; RTT alone is no change', async (t) => {
  const a = snap([side()], T + 1000);
  const first = viewChanges(undefined, a);
  t.same(first, [
    '12:00:01.000 primary: agent pid 100, qemu ready, node colo-a, role primary, state peer-up, colo primary, peer up, links 127.0.0.2:7410 up, in:127.0.0.2 up, maintenance off, epoch 0, arbiter none, checkpoints 0',
  ]);
  const rttOnly = snap([side({ status: status({ links: [{ link: '127.0.0.2:7410', state: 'up', rttMs: 9 }, { link: 'in:127.0.0.2', state: 'up', rttMs: 8 }] }) })], T + 2000);
  t.same(viewChanges(a, rttOnly), [], 'RTT and clocks do not count');
  const down = snap([side({ status: status({ state: 'peer-down', peer: { state: 'down' } }) })], T + 3000);
  t.same(viewChanges(a, down), ['12:00:03.000 primary: state peer-up -> peer-down, peer up -> down']);
  const killed = snap([side({ agentAlive: false, agentExit: 'SIGKILL', qemuAlive: false, status: undefined })], T + 4000);
  t.match(viewChanges(down, killed)[0], /^12:00:04\.000 primary: agent pid 100 -> gone \(SIGKILL\), qemu ready -> gone, node colo-a -> -/);
});

t.test('viewChanges with the witness: its own line; epoch, arbiter, paused guest, stale and lease clocks', async (t) => {
  const sides = (p: Parameters<typeof status>[0], s: Parameters<typeof status>[0]) => [
    side({ status: status({ arbiter: witnessArbiter(400), ...p }) }),
    side({ side: 'secondary', agentPid: 200, qemuPid: 199, status: status({ node: 'colo-b', role: 'secondary', colo: 'secondary', arbiter: witnessArbiter(), ...s }) }),
  ];
  const a = snap(sides({}, {}), T + 1000, witness());
  const first = viewChanges(undefined, a);
  t.equal(first.length, 3);
  t.match(first[0], /primary: .*epoch 0, arbiter reachable, checkpoints 0$/);
  t.equal(first[2], '12:00:01.000 witness: agent pid 300, state witness, epoch 0, holder colo-a, pending -, links colo-a up, colo-b up');
  const clocks = snap(sides({ arbiter: witnessArbiter(90) }, {}), T + 2000, witness({ status: witnessStatus({ leaseRemainingMs: 3, links: witnessStatus().links.map((l) => ({ ...l, rttMs: 9 })) }) }));
  t.same(viewChanges(a, clocks), [], 'lease clocks and RTTs are no change');
  const asked = snap(sides({}, { state: 'arbitrating', peer: { state: 'down' } }), T + 3000, witness({ status: witnessStatus({ pending: ['colo-b'] }) }));
  t.same(viewChanges(a, asked), ['12:00:03.000 secondary: state peer-up -> arbitrating, peer up -> down', '12:00:03.000 witness: pending - -> colo-b']);
  const granted = snap(
    sides(
      { state: 'solo', colo: 'none', epoch: { epoch: 1, newestSeen: 1, newestSeenFrom: undefined, stale: false, holder: 'colo-a', updatedAt: undefined } },
      {
        state: 'stale',
        peer: { state: 'down' },
        epoch: { epoch: 0, newestSeen: 1, newestSeenFrom: 'witness colo-w', stale: true, holder: undefined, updatedAt: undefined },
      },
    ),
    T + 4000,
    witness({ status: witnessStatus({ epoch: 1 }) }),
  );
  t.same(viewChanges(asked, granted), [
    '12:00:04.000 primary: state peer-up -> solo, colo primary -> none, epoch 0 -> 1, checkpoints 0 -> n/a',
    '12:00:04.000 secondary: state arbitrating -> stale, epoch 0 -> 0 stale (epoch 1 from witness colo-w)',
    '12:00:04.000 witness: epoch 0 -> 1, pending colo-b -> -',
  ]);
  const paused = snap(sides({ guestStopped: 'lease', arbiter: witnessArbiter(0, false) }, {}), T + 5000, witness({ alive: false, exit: 'SIGKILL', status: undefined }));
  t.same(viewChanges(a, paused), [
    '12:00:05.000 primary: arbiter reachable -> UNREACHABLE, guest - -> PAUSED (lease)',
    '12:00:05.000 witness: agent pid 300 -> gone (SIGKILL), state witness -> -, epoch 0 -> -, holder colo-a -> -, pending - -> -, links colo-a up, colo-b up -> -',
  ]);
});

t.test('lastKnown: an agent that did not answer keeps its last known state', async (t) => {
  const a = snap([side(), side({ side: 'secondary' })]);
  const noAnswer = snap([side({ status: undefined }), side({ side: 'secondary', status: status({ state: 'peer-down' }) })]);
  const merged = lastKnown(a, noAnswer);
  t.equal(merged.sides[0], a.sides[0], 'the primary as last seen');
  t.equal(merged.sides[1], noAnswer.sides[1], 'the secondary as now');
  t.same(viewChanges(a, merged).length, 1, 'only the real change is printed');
  const dead = snap([side({ agentAlive: false, status: undefined }), side({ side: 'secondary' })]);
  t.equal(lastKnown(a, dead).sides[0], dead.sides[0], 'a dead agent is news, not unknown');
  t.equal(lastKnown(undefined, noAnswer), noAnswer);
  const w = snap([side()], T, witness());
  const wSilent = snap([side()], T + 1000, witness({ status: undefined }));
  t.equal(lastKnown(w, wSilent).witness, w.witness, 'a witness that did not answer keeps its last known state');
  const wGone = snap([side()], T + 1000, witness({ alive: false, status: undefined }));
  t.equal(lastKnown(w, wGone).witness, wGone.witness, 'a dead witness is news');
});

t.test('after a failover (issue 14): the survivor shows the measured outage and n/a checkpoints, the peer clock moves to PEER', async (t) => {
  // The outage as the live view gets it: a FailoverOutages fed the demo's sight of the primary's
  // QEMU ending and the secondary agent's own records (their shapes as the agent logs them).
  const outages = new FailoverOutages();
  outages.qemuEnded('primary', T + 1000);
  outages.record('secondary', { level: 'warn', time: T + 1002, component: 'colo-monitor', msg: 'COLO_EXIT', mode: 'secondary', reason: 'error' });
  outages.record('secondary', { level: 'warn', time: T + 1600, component: 'failover', msg: 'failover starting', sequence: 'secondary-failover' });
  outages.record('secondary', { level: 'warn', time: T + 1650, component: 'agent', msg: 'failover done: running solo as primary', sequence: 'secondary-failover', durationMs: 50 });
  const outage = outages.last('secondary');
  t.ok(outage);
  const before = snap([side(), side({ side: 'secondary', agentPid: 200, qemuPid: 199, status: status({ node: 'colo-b', role: 'secondary', colo: 'secondary' }) })], T + 900);
  const after = snap(
    [
      side({ qemuAlive: false, status: status({ role: 'secondary', state: 'stale', colo: 'unknown' }) }),
      side({
        side: 'secondary',
        agentPid: 200,
        qemuPid: 199,
        status: status({ node: 'colo-b', role: 'primary', state: 'solo', colo: 'none', peer: { name: 'colo-a', state: 'down', silentForMs: 12_000 }, lastFailover: { sequence: 'secondary-failover', trigger: 'colo-exit-error', ok: true, durationMs: 50 } }),
        metrics: { checkpoints: 0, coloStarts: 1, peerOutageSeconds: 12.3 },
        ...(outage && { outage }),
      }),
    ],
    T + 14_000,
  );
  const lines = renderView(after);
  t.match(lines[2], /^primary\s+colo-a\s+secondary\s+stale\s+gone\s+unknown\s.*\s+n\/a\s+-$/, 'the old primary: its QEMU is gone, nothing to count, no failover of its own');
  t.match(lines[3], /^secondary\s+colo-b\s+primary\s+solo\s+ready\s+none\s+0\s+none\s+down 12s\s+2\/2 up 0\.39ms\s+n\/a\s+0\.65s$/, 'the survivor: n/a, 650 ms of outage, the peer down for 12 s');
  t.ok(lines.includes("secondary: guest outage 650 ms until failover done, counted from the primary's QEMU ending"), 'how the outage was counted');
  t.same(viewChanges(before, after), [
    '12:00:14.000 primary: qemu ready -> gone, role primary -> secondary, state peer-up -> stale, colo primary -> unknown, checkpoints 0 -> n/a',
    "12:00:14.000 secondary: role secondary -> primary, state peer-up -> solo, colo secondary -> none, peer up -> down, checkpoints 0 -> n/a, failover - -> secondary-failover ok in 50 ms, outage - -> 650 ms, from the primary's QEMU ending",
  ]);
  t.same(viewChanges(after, { ...after, at: T + 20_000 }), [], 'a measured outage is a figure, not a clock: no change later');
});

t.test('checkpointCell and outageCell', async (t) => {
  t.equal(checkpointCell(side({ metrics: { checkpoints: 7 } })), '7', 'in COLO: the count');
  t.equal(checkpointCell(side({ metrics: undefined })), '?', 'in COLO, /metrics not read');
  t.equal(checkpointCell(side({ status: status({ colo: 'none' }) })), 'n/a', 'solo');
  t.equal(checkpointCell(side({ qemuAlive: false })), 'n/a', 'QEMU gone');
  t.equal(outageCell(undefined), '-');
  t.equal(outageCell({ from: 0, fromWhat: 'x', to: 1234, ms: 1234, ok: true }), '1.23s');
  t.equal(outageCell({ from: 0, fromWhat: 'x', to: 75_000, ms: 75_000, ok: true }), '1m15s');
  t.equal(outageCell({ from: 0, fromWhat: 'x', to: 1, ms: 1, ok: false }), 'failed');
});
