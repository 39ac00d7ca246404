/**
 * The drill's timeline and verdict from the agents' and the witness's log records (shaped as they
 * write them) and QEMU's answers afterwards.
 */
import t from 'tap';
import type { LogRecord } from '../../src/demo/agent-child.js';
import {
  arbitrationWait,
  drillVerdict,
  formatDrillReport,
  observerEvents,
  runsAsPrimary,
  runsSolo,
  witnessEvents,
  type DrillReport,
  type SideOutcome,
} from '../../src/demo/timeline.js';

const T0 = Date.parse('2026-01-01T12:00:00.000Z');
const at = (ms: number) => new Date(T0 + ms).toISOString();

function rec(ms: number, fields: Record<string, unknown>): LogRecord {
  return { level: 'info', time: at(ms), pid: 1, node: 'colo-b', ...fields };
}

/** What a secondary logs when its primary host dies (COLO_EXIT fast path), with noise around it. */
const secondaryRecords: LogRecord[] = [
  rec(-50, { component: 'agent', msg: 'link RTT' }), // before the fault: ignored
  rec(3, { component: 'colo-monitor', msg: 'COLO_EXIT', mode: 'secondary', reason: 'error' }),
  rec(6, { component: 'agent', msg: 'probed the peer QEMU', host: '127.0.0.1', port: 9003, verdict: 'refused', detail: 'ECONNREFUSED' }),
  rec(9, { component: 'failover', msg: 'failover starting', sequence: 'secondary-failover', reason: 'colo-exit-error: the peer is gone' }),
  rec(120, { component: 'failure-detector', detector: 'peer', from: 'up', to: 'suspect', reason: 'suspect-timeout', msg: 'peer up -> suspect' }),
  rec(45, { component: 'agent', msg: 'failover done: running solo as primary', sequence: 'secondary-failover', durationMs: 35.5 }),
  rec(230, { component: 'failure-detector', detector: 'peer', from: 'suspect', to: 'down', reason: 'timeout', msg: 'peer suspect -> down' }),
];

t.test('observerEvents: the first record of each kind at or after T0, labelled', async (t) => {
  const events = observerEvents('secondary', secondaryRecords, T0);
  t.same(
    events.map((e) => [e.label, e.at - T0]),
    [
      ['detected', 3],
      ['probe', 6],
      ['started', 9],
      ['done', 45],
      ['suspect', 120],
    ],
    "COLO_EXIT (the monitor's record, the only one) is the detection; the later peer-down is not a second one",
  );
  t.ok(events.every((e) => e.side === 'secondary'));
  t.match(events.find((e) => e.label === 'probe')?.detail, /127\.0\.0\.1:9003 refused \(ECONNREFUSED\)/);
  t.match(events.find((e) => e.label === 'started')?.detail, /^secondary-failover \(colo-exit-error/);
});

t.test('observerEvents: heartbeat detection, a refused takeover, a failed failover', async (t) => {
  const events = observerEvents(
    'primary',
    [
      rec(150, { component: 'failure-detector', detector: 'peer', to: 'suspect', reason: 'suspect-timeout' }),
      rec(151, { component: 'failure-detector', detector: 'link 127.0.0.2:7410', to: 'down', reason: 'timeout' }), // a link, not the peer
      rec(250, { component: 'failure-detector', detector: 'peer', to: 'down', reason: 'timeout' }),
      rec(260, { component: 'agent', msg: 'no takeover', reason: "the peer's QEMU still listens" }),
      rec(262, { component: 'agent', msg: "peer's agent reports its QEMU gone" }),
      rec(270, { component: 'failover', msg: 'failover starting', sequence: 'primary-failover', reason: 'peer-down' }),
      rec(300, { component: 'agent', msg: 'failover FAILED', sequence: 'primary-failover', err: { message: 'step drive_del timed out' } }),
    ],
    T0,
  );
  t.same(
    events.map((e) => e.label),
    ['suspect', 'detected', 'decision', 'started', 'failed'],
  );
  t.match(events[1]?.detail, /peer down: heartbeats missed \(timeout\)/);
  t.match(events[2]?.detail, /no takeover: the peer's QEMU still listens/);
  t.match(events[4]?.detail, /step drive_del timed out/);
});

const solo = (side: 'primary' | 'secondary'): SideOutcome => ({ side, qemuAlive: true, status: 'running', running: true, coloMode: 'none', lastMode: side });
const inColo = (side: 'primary' | 'secondary'): SideOutcome => ({ side, qemuAlive: true, status: 'running', running: true, coloMode: side });
const gone = (side: 'primary' | 'secondary'): SideOutcome => ({ side, qemuAlive: false });

function killPrimaryReport(outcomes: SideOutcome[]): DrillReport {
  return {
    kind: 'kill-primary',
    arbiter: 'none',
    t0: T0,
    fault: 'SIGKILL primary QEMU (pid 10) and its agent (pid 11): the primary host is lost',
    observers: ['secondary'],
    events: [{ at: T0, label: 'injected' as const, detail: 'SIGKILL ...' }, ...observerEvents('secondary', secondaryRecords, T0)].sort((a, b) => a.at - b.at),
    outcomes,
    notes: [],
  };
}

t.test('runsSolo: running and out of COLO', async (t) => {
  t.ok(runsSolo(solo('primary')));
  t.notOk(runsSolo(inColo('primary')), 'still replicating');
  t.notOk(runsSolo(gone('primary')));
  t.notOk(runsSolo({ side: 'primary', qemuAlive: true, status: 'paused', running: false, coloMode: 'none' }), 'paused');
  t.notOk(runsSolo(undefined));
});

t.test('a kill drill passes when the survivor runs alone; the outage ends at its "done"', async (t) => {
  const v = drillVerdict(killPrimaryReport([gone('primary'), solo('secondary')]));
  t.same(v, { ok: true, survivor: 'secondary', outageMs: 45, summary: 'the secondary runs the guest alone' });
  const bad = drillVerdict(killPrimaryReport([gone('primary'), inColo('secondary')]));
  t.equal(bad.ok, false);
  t.match(bad.summary, /does not run the guest alone: query-status running, COLO mode secondary/);
});

t.test('formatDrillReport: timeline lines in order, end states, outage, verdict', async (t) => {
  const lines = formatDrillReport(killPrimaryReport([gone('primary'), solo('secondary')]));
  t.equal(lines[0], "drill kill-primary: timeline (ms after the fault; agents' log times)");
  t.equal(lines[1], '  +    0 ms  injected  SIGKILL ...');
  t.equal(lines[2], '  +    3 ms  detected  secondary: its QEMU left COLO with reason error: the replication stream from the peer broke');
  const labels = lines.flatMap((l) => /^\s+\+\s*\d+ ms\s+(\S+)/.exec(l)?.[1] ?? []);
  t.same(labels, ['injected', 'detected', 'probe', 'started', 'done', 'suspect']);
  t.ok(lines.includes('  end state primary: QEMU gone'));
  t.ok(lines.includes('  end state secondary: query-status running, COLO mode none (last mode secondary)'));
  t.ok(lines.includes("  total outage: 45 ms (fault -> the secondary's guest running solo)"));
  t.equal(lines.at(-1), 'drill kill-primary: PASS: the secondary runs the guest alone');
});

t.test('partition: both taking over is named a split brain and fails; one passes; none fails', async (t) => {
  const report = (outcomes: SideOutcome[]): DrillReport => ({
    kind: 'partition',
    arbiter: 'none',
    t0: T0,
    fault: 'cut',
    observers: ['primary', 'secondary'],
    events: [{ at: T0, label: 'injected', detail: 'cut' }],
    outcomes,
    notes: ['one machine'],
  });
  const both = drillVerdict(report([solo('primary'), solo('secondary')]));
  t.equal(both.ok, false);
  t.equal(both.summary, 'arbiter none: both sides took over — split brain; run with a witness to prevent it');
  const one = drillVerdict(report([solo('primary'), inColo('secondary')]));
  t.equal(one.ok, true);
  t.equal(one.survivor, 'primary');
  const none = drillVerdict(report([inColo('primary'), inColo('secondary')]));
  t.equal(none.ok, false);
  t.match(none.summary, /neither side took over/);
  const lines = formatDrillReport(report([solo('primary'), solo('secondary')]));
  t.ok(lines.includes('  (primary: no detection logged)'), 'a missing detection is said, not hidden');
  t.ok(lines.includes('  note: one machine'));
  t.match(lines.at(-1), /^drill partition: FAIL: arbiter none: both sides took over/);
});

t.test('partition without an arbiter: one side taking over while the other still runs as COLO primary is a split brain too', async (t) => {
  const v = drillVerdict({
    kind: 'partition',
    arbiter: 'none',
    t0: T0,
    fault: 'cut',
    observers: ['primary', 'secondary'],
    events: [],
    outcomes: [inColo('primary'), solo('secondary')],
    notes: [],
  });
  t.equal(v.ok, false);
  t.equal(v.summary, 'split brain: the secondary took over while the primary still runs its guest (query-status running, COLO mode primary)');
  t.ok(runsAsPrimary(inColo('primary')));
  t.notOk(runsAsPrimary(inColo('secondary')), 'a COLO secondary runs no primary');
  t.notOk(runsAsPrimary({ side: 'primary', qemuAlive: true, status: 'paused', running: false, coloMode: 'none' }), 'a paused guest runs nothing');
});

/** The partition with the witness, as the three processes log it. */
const primaryPartition: LogRecord[] = [
  rec(210, { node: 'colo-a', component: 'failure-detector', detector: 'peer', to: 'down', reason: 'timeout' }),
  rec(212, { node: 'colo-a', component: 'agent', msg: 'probed the peer QEMU', host: '127.0.0.2', port: 40001, verdict: 'refused', detail: 'ECONNREFUSED' }),
  rec(220, { node: 'colo-a', level: 'warn', component: 'takeover-gate', msg: 'arbiter granted the takeover', action: 'continue', epoch: 1, by: 'witness colo-w' }),
  rec(222, { node: 'colo-a', component: 'failover', msg: 'failover starting', sequence: 'primary-failover', reason: 'peer-down; epoch 1 granted by witness colo-w' }),
  rec(260, { node: 'colo-a', component: 'agent', msg: 'failover done: running solo as primary', sequence: 'primary-failover', durationMs: 38 }),
];
const secondaryPartition: LogRecord[] = [
  rec(205, { component: 'failure-detector', detector: 'peer', to: 'down', reason: 'timeout' }),
  rec(207, { component: 'agent', msg: 'probed the peer QEMU', host: '127.0.0.1', port: 40002, verdict: 'refused', detail: 'ECONNREFUSED' }),
  rec(215, {
    level: 'warn',
    component: 'agent',
    msg: 'no takeover',
    trigger: 'peer-down',
    step: 'arbiter',
    reason: 'the witness arbiter did not grant epoch 1: colo-a is alive and holds the lease',
  }),
  rec(1215, { level: 'warn', component: 'agent', msg: 'no takeover', trigger: 'peer-down', step: 'stale', reason: 'our epoch 0 is stale' }), // a repeat: not shown
  rec(221, {
    level: 'error',
    component: 'agent',
    msg: 'stale epoch: another node was granted the guest; staying passive (no failover, no resume as primary)',
    epoch: 0,
    newestSeen: 1,
    from: 'witness colo-w',
  }),
];
const witnessPartition: LogRecord[] = [
  rec(-500, { node: 'colo-w', component: 'witness', msg: 'witness listening' }),
  rec(208, { node: 'colo-b', component: 'witness-grants', msg: 'grant requested', action: 'takeover', epoch: 0, holder: 'colo-a' }),
  rec(213, { node: 'colo-b', component: 'witness', msg: 'arbitration verdict', action: 'takeover', granted: false, epoch: 0, reason: 'colo-a is alive and holds the lease' }),
  rec(214, { node: 'colo-a', component: 'witness-grants', msg: 'grant requested', action: 'continue', epoch: 0, holder: 'colo-a' }),
  rec(218, { node: 'colo-a', level: 'warn', component: 'witness', msg: 'arbitration verdict', action: 'continue', granted: true, epoch: 1 }),
  rec(1213, { node: 'colo-b', component: 'witness', msg: 'arbitration verdict', action: 'takeover', granted: false, epoch: 1, reason: 'stale epoch' }), // a repeat
];

function witnessPartitionReport(outcomes: SideOutcome[]): DrillReport {
  return {
    kind: 'partition',
    arbiter: 'witness',
    t0: T0,
    fault: 'cut heartbeat and replication links both ways',
    observers: ['primary', 'secondary', 'witness'],
    events: [
      { at: T0, label: 'injected' as const, detail: 'cut' },
      ...observerEvents('primary', primaryPartition, T0),
      ...observerEvents('secondary', secondaryPartition, T0),
      ...witnessEvents(witnessPartition, T0),
    ].sort((a, b) => a.at - b.at),
    outcomes,
    notes: [],
  };
}

t.test('observerEvents: a grant, a refusal by the arbiter, a stale epoch, a paused and resumed guest', async (t) => {
  const p = observerEvents('primary', primaryPartition, T0);
  t.same(p.map((e) => e.label), ['detected', 'probe', 'granted', 'started', 'done']);
  const granted = p.find((e) => e.label === 'granted');
  t.equal(granted?.detail, 'continue granted at epoch 1 by witness colo-w');
  t.equal(granted?.epoch, 1);
  const s = observerEvents('secondary', secondaryPartition, T0);
  t.same(s.map((e) => e.label), ['detected', 'probe', 'refused', 'stale'], 'only the first refusal');
  t.equal(s[2]?.detail, 'no takeover at the arbiter step: the witness arbiter did not grant epoch 1: colo-a is alive and holds the lease');
  t.equal(s[3]?.detail, 'epoch 1 (from witness colo-w) is newer than ours (0): another node holds the guest; staying passive');
  const lease = observerEvents(
    'primary',
    [
      rec(700, { level: 'error', component: 'agent', msg: 'guest STOPPED: cut off from the peer and the arbiter, and our lease ran out', reason: 'lease' }),
      rec(900, { level: 'warn', component: 'agent', msg: 'guest resumed (cont)', was: 'lease', why: 'granted' }),
    ],
    T0,
  );
  t.same(
    lease.map((e) => [e.label, e.detail]),
    [
      ['paused', 'STOPPED: cut off from the peer and the arbiter, and our lease ran out'],
      ['resumed', 'guest resumed (granted)'],
    ],
  );
});

t.test('witnessEvents: each node\'s first request, first grant and first refusal, from T0 on', async (t) => {
  const w = witnessEvents(witnessPartition, T0);
  t.same(
    w.map((e) => [e.at - T0, e.label, e.detail]),
    [
      [208, 'asked', 'colo-b asks to takeover at epoch 0 (holder colo-a)'],
      [213, 'verdict', 'refused takeover to colo-b: colo-a is alive and holds the lease'],
      [214, 'asked', 'colo-a asks to continue at epoch 0 (holder colo-a)'],
      [218, 'verdict', 'granted continue to colo-a: epoch 1'],
    ],
  );
  t.ok(w.every((e) => e.side === 'witness'));
  t.equal(w[3]?.epoch, 1);
});

t.test('partition with the witness: exactly one side takes over, the verdict says who was granted and who was refused', async (t) => {
  const r = witnessPartitionReport([solo('primary'), inColo('secondary')]);
  const v = drillVerdict(r);
  t.same(v, {
    ok: true,
    survivor: 'primary',
    outageMs: 260,
    summary: 'only the primary took over (granted epoch 1 by the witness); the secondary was refused and stayed passive (stale epoch): no split brain',
  });
  const lines = formatDrillReport(r);
  t.ok(lines.includes('  +  218 ms  verdict   witness: granted continue to colo-a: epoch 1'));
  t.ok(lines.includes('  +  215 ms  refused   secondary: no takeover at the arbiter step: the witness arbiter did not grant epoch 1: colo-a is alive and holds the lease'));
  t.ok(lines.includes('  +  220 ms  granted   primary: continue granted at epoch 1 by witness colo-w'));
  t.notOk(lines.some((l) => /witness: no detection logged/.test(l)), 'the witness detects nothing: not reported as missing');
  t.ok(lines.includes('  of which arbitration: 10 ms (detection -> the witness\'s grant of epoch 1)'));
  t.equal(lines.at(-1), 'drill partition: PASS: only the primary took over (granted epoch 1 by the witness); the secondary was refused and stayed passive (stale epoch): no split brain');
  const both = drillVerdict(witnessPartitionReport([solo('primary'), solo('secondary')]));
  t.equal(both.ok, false);
  t.equal(both.summary, 'SPLIT BRAIN despite the witness arbiter: both sides took over (see the grants above)');
  const none = drillVerdict(witnessPartitionReport([inColo('primary'), inColo('secondary')]));
  t.equal(none.ok, false);
  t.match(none.summary, /neither side took over/);
});

t.test('arbitrationWait: from detection to the grant, only with an arbiter', async (t) => {
  const r = witnessPartitionReport([solo('primary'), inColo('secondary')]);
  t.same(arbitrationWait(r, 'primary'), { ms: 10, from: 'detection', epoch: 1 });
  t.equal(arbitrationWait(r, 'secondary'), undefined, 'never granted');
  t.equal(arbitrationWait({ ...r, arbiter: 'none' }, 'primary'), undefined);
});
