/**
 * Checkpoint metrics against QEMU's own events, on a real run (issue 15): a real COLO pair on the
 * lab of separate hosts (test/lab/lab-colo.ts, arbiter none), both agents attached and steady, then
 * checkpoints let flow for some seconds (x-checkpoint-delay 300 ms on the primary, then back to the
 * harness's 600 s). Over that window each agent's COLO monitor, read from its /metrics
 * (colo_agent_checkpoints_total, colo_agent_checkpoint_pause_seconds), must equal the STOP/RESUME
 * pairs its own QEMU emitted to the harness's QMP socket in the same run (test/helpers/
 * qemu-checkpoints.ts): the same count, every histogram bucket holding exactly the pauses QEMU's
 * stamps put there, the same sum; and each pause the agent logged (debug record `checkpoint`)
 * equal to QEMU's, in order.
 *
 * Only where checkpoints complete under TCG (QEMU 11.1: npm run test:qemu-11); skipped with the
 * reason elsewhere (7.2 hangs the primary at the end of its first checkpoint), and without the lab
 * (root, ip, nft). No timed assertion: the waits are bounds, the figures are comments.
 */
import t from 'tap';
import { CHECKPOINT_PAUSE_BUCKETS } from '../../src/metrics/registry.js';
import { summarize } from '../bench/stats.js';
import { killAllChildren, requireBuiltCli, sleep, type AgentProcess } from '../helpers/agent-process.js';
import { checkpointSupport, HARNESS_CHECKPOINT_DELAY_MS } from '../helpers/colo-cmdline.js';
import type { ColoRole } from '../helpers/colo-pair.js';
import { scrape, scrapeUntil } from '../helpers/exposition.js';
import { QemuCheckpointLog, type QemuPause } from '../helpers/qemu-checkpoints.js';
import { qemuAvailable } from '../helpers/qemu.js';
import { BRING_UP_HOST, startLabColoAgentsOrSkip } from '../lab/lab-colo.js';

const DELAY_MS = 300;
/** How long checkpoints flow: ~30 of them at 300 ms plus their pauses. */
const FLOW_MS = 12_000;
/** QEMU is done when no STOP/RESUME came for this long and the last was a RESUME. */
const QUIET_MS = 1500;
/** Bounds for a loaded 2-core machine, not targets. */
const WAIT_MS = 20_000;
/** "Equal within a millisecond": both sides read the same stamps, so the difference is float rounding. */
const PAUSE_TOLERANCE_MS = 1;

const avail = await qemuAvailable();
const support = avail.ok ? checkpointSupport(avail) : avail;
const skip = support.ok ? false : support.reason;

t.setTimeout(4 * 60_000);
t.teardown(killAllChildren);

/** Until QEMU has been quiet for QUIET_MS with its last checkpoint ended (bounded by WAIT_MS). */
async function waitQuiet(log: QemuCheckpointLog): Promise<boolean> {
  const until = performance.now() + WAIT_MS;
  while (performance.now() < until) {
    if (!log.stopped && performance.now() - (log.lastReceivedAt ?? 0) >= QUIET_MS) return true;
    await sleep(100);
  }
  return false;
}

/** The agent's debug records of completed checkpoints: their pauses in ms, in order. */
const loggedPauses = (a: AgentProcess, since: number): number[] =>
  a.filter((r) => r.component === 'colo-monitor' && r.msg === 'checkpoint', since).map((e) => Number(e.record?.pauseMs));

/** The COLO monitor's warnings about odd event streams (each names its anomaly). */
const anomalies = (a: AgentProcess, since: number): string[] => a.filter((r) => r.component === 'colo-monitor' && r.anomaly !== undefined, since).map((e) => e.line);

/** Cumulative bucket counts as the histogram must hold them for these pauses. */
function expectedBuckets(pauses: readonly QemuPause[]): Map<string, number> {
  const m = new Map<string, number>();
  for (const le of CHECKPOINT_PAUSE_BUCKETS) m.set(String(le), pauses.filter((p) => p.pauseUs / 1e6 <= le).length);
  m.set('+Inf', pauses.length);
  return m;
}

if (requireBuiltCli(t)) {
  t.test(`checkpoints at x-checkpoint-delay ${DELAY_MS} ms: each agent's counters and pause histogram equal its QEMU's STOP/RESUME events`, { skip }, async (t) => {
    const lc = await startLabColoAgentsOrSkip(t, { arbiter: 'none', sets: ['log.level=debug'] });
    if (!lc) return;
    const { pair } = lc;
    const roles: ColoRole[] = ['primary', 'secondary'];
    const agentOf = (role: ColoRole) => lc.agents[BRING_UP_HOST[role]]!;
    const metricsOf = (role: ColoRole) => lc.metricsAddress(BRING_UP_HOST[role]);

    for (const role of roles) {
      const e = await scrape(metricsOf(role));
      t.equal(e.value('colo_agent_checkpoints_total'), 0, `${role}: no checkpoint before the delay is lowered (x-checkpoint-delay ${pair.colo.checkpointDelayMs} ms)`);
    }
    const logs = new Map(roles.map((role) => [role, new QemuCheckpointLog(pair.side(role).qmp)] as const));
    t.teardown(() => logs.forEach((l) => l.close()));
    const cursors = new Map(roles.map((role) => [role, agentOf(role).cursor()] as const));

    const t0 = performance.now();
    await pair.primary.qmp.execute('migrate-set-parameters', { 'x-checkpoint-delay': DELAY_MS });
    await sleep(FLOW_MS);
    // Raising it makes QEMU run one more checkpoint at once, then none for 600 s.
    await pair.primary.qmp.execute('migrate-set-parameters', { 'x-checkpoint-delay': HARNESS_CHECKPOINT_DELAY_MS });
    for (const role of roles) t.ok(await waitQuiet(logs.get(role)!), `${role}: QEMU's checkpoints ended (quiet for ${QUIET_MS} ms)`);
    const windowMs = performance.now() - t0;

    for (const role of roles) {
      const { pauses, odd } = logs.get(role)!.pauses();
      t.same(odd, [], `${role}: QEMU's events alternate STOP, RESUME`);
      t.ok(pauses.length > 0, `${role}: QEMU ran ${pauses.length} checkpoints`);
      const e = await scrapeUntil(metricsOf(role), (x) => x.value('colo_agent_checkpoints_total') >= pauses.length, WAIT_MS);
      t.equal(e.value('colo_agent_checkpoints_total'), pauses.length, `${role}: colo_agent_checkpoints_total = QEMU's STOP/RESUME pairs (${pauses.length})`);
      t.equal(e.value('colo_agent_checkpoint_pause_seconds_count'), pauses.length, `${role}: one pause observed per checkpoint`);
      const got = new Map(e.find('colo_agent_checkpoint_pause_seconds_bucket').map((s) => [s.labels.le!, s.value] as const));
      t.same(Object.fromEntries(got), Object.fromEntries(expectedBuckets(pauses)), `${role}: every bucket holds the pauses QEMU's stamps put there`);
      const sumMs = e.value('colo_agent_checkpoint_pause_seconds_sum') * 1000;
      const qemuSumMs = pauses.reduce((a, p) => a + p.pauseUs, 0) / 1000;
      t.ok(Math.abs(sumMs - qemuSumMs) < PAUSE_TOLERANCE_MS, `${role}: pause sum ${sumMs.toFixed(3)} ms = QEMU's ${qemuSumMs.toFixed(3)} ms`);
      const last = pauses.at(-1)!;
      t.equal(e.value('colo_agent_last_checkpoint_timestamp_seconds'), last.resumeAt / 1000, `${role}: last checkpoint timestamp = QEMU's last RESUME stamp`);
      t.equal(e.value('colo_agent_checkpoint_in_progress'), 0, `${role}: no checkpoint in progress`);
      t.equal(e.value('colo_agent_checkpoint_stalled'), 0, `${role}: not stalled`);

      const since = cursors.get(role)!;
      const agent = agentOf(role);
      const logged = loggedPauses(agent, since);
      const diffs = logged.map((ms, i) => Math.abs(ms - (pauses[i]?.pauseUs ?? Number.NaN) / 1000));
      t.equal(logged.length, pauses.length, `${role}: the agent logged one checkpoint per QEMU pause`);
      t.ok(diffs.every((d) => d < PAUSE_TOLERANCE_MS), `${role}: each logged pause equals QEMU's (largest difference ${Math.max(0, ...diffs).toExponential(1)} ms)`);
      t.same(anomalies(agent, since), [], `${role}: the COLO monitor saw no odd event stream`);

      const ms = summarize(pauses.map((p) => p.pauseUs / 1000));
      const perMin = (pauses.length / windowMs) * 60_000;
      t.comment(
        `QEMU ${pair.version.major}.${pair.version.minor}.${pair.version.micro} ${role}: ${pauses.length} checkpoints in ${(windowMs / 1000).toFixed(1)} s ` +
          `(${perMin.toFixed(0)}/min at delay ${DELAY_MS} ms), pause p50 ${ms.p50.toFixed(1)} ms, p99 ${ms.p99.toFixed(1)} ms, max ${ms.max.toFixed(1)} ms`,
      );
    }
  });
}
