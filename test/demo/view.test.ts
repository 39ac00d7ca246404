/**
 * The live view: rendering a snapshot, the one-line-per-change form, and reading /metrics.
 */
import t from 'tap';
import type { AgentStatus } from '../../src/agent.js';
import { demoMetricsFrom, lastKnown, parseMetricSums, renderView, sideRow, viewChanges, type DemoSnapshot, type SideSnapshot } from '../../src/demo/view.js';

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
    arbiter: { mode: 'none', reachable: true },
    ...rest,
  };
}

function side(over: Partial<SideSnapshot> = {}): SideSnapshot {
  return { side: 'primary', agentPid: 100, agentAlive: true, qemuPid: 99, qemuAlive: true, status: status(), metrics: { checkpoints: 0, coloStarts: 1, peerOutageSeconds: 0 }, ...over };
}

function snap(sides: SideSnapshot[], at = T + 5000): DemoSnapshot {
  return { at, since: T, qemuVersion: '7.2.22', checkpointDelayMs: 600_000, sides };
}

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
  t.match(lines[1], /^SIDE\s+NODE\s+ROLE\s+STATE\s+QEMU\s+COLO\s+PEER\s+LINK RTT\s+CKPT\s+OUTAGE$/);
  t.match(lines[2], /^primary\s+colo-a\s+primary\s+peer-up\s+ready\s+primary\s+up\s+2\/2 up 0\.39ms\s+0\s+-$/);
  t.match(lines[3], /^secondary\s+colo-b\s+primary\s+solo\s+ready\s+none\s+up\s+2\/2 up 0\.39ms\s+0\s+2\.35s$/);
  t.equal(lines[4], 'secondary: last failover secondary-failover (colo-exit-error) ok in 35.5 ms');
  t.match(lines[5], /idle period is 600 s/);
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
  t.same(first, ['12:00:01.000 primary: agent pid 100, qemu ready, node colo-a, role primary, state peer-up, colo primary, peer up, links 127.0.0.2:7410 up, in:127.0.0.2 up, maintenance off, checkpoints 0']);
  const rttOnly = snap([side({ status: status({ links: [{ link: '127.0.0.2:7410', state: 'up', rttMs: 9 }, { link: 'in:127.0.0.2', state: 'up', rttMs: 8 }] }) })], T + 2000);
  t.same(viewChanges(a, rttOnly), [], 'RTT and clocks do not count');
  const down = snap([side({ status: status({ state: 'peer-down', peer: { state: 'down' } }) })], T + 3000);
  t.same(viewChanges(a, down), ['12:00:03.000 primary: state peer-up -> peer-down, peer up -> down']);
  const killed = snap([side({ agentAlive: false, agentExit: 'SIGKILL', qemuAlive: false, status: undefined })], T + 4000);
  t.match(viewChanges(down, killed)[0], /^12:00:04\.000 primary: agent pid 100 -> gone \(SIGKILL\), qemu ready -> gone, node colo-a -> -/);
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
});
