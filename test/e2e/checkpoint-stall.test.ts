/**
 * A checkpoint stalled on purpose (issue 15): a real COLO pair on the lab of separate hosts, both
 * agents attached (colo.checkpointStallMs 2000), checkpoints flowing at x-checkpoint-delay 300 ms,
 * then the secondary QEMU frozen (SIGSTOP) the moment the primary emits the STOP of a checkpoint
 * (atNextStop says why that moment): both guests stay stopped, the primary's waiting for the
 * frozen secondary to load the checkpoint. Both agents must export colo_agent_checkpoint_stalled 1 (one stall counted,
 * the checkpoint still in progress); thawed (SIGCONT), the checkpoint completes (QEMU's own stamps
 * show a pause at least as long as the freeze), the gauges go back to 0 and checkpoints flow again.
 * That ColoCheckpointStalled fires on such a run is checked on its recording
 * (test/deploy/series-scenarios.ts, checkpoint-stall-frozen-secondary).
 *
 * Only where checkpoints complete under TCG (QEMU 11.1: npm run test:qemu-11); skipped with the
 * reason elsewhere, and without the lab (root, ip, nft). The waits are bounds, not targets.
 */
import t from 'tap';
import { killAllChildren, requireBuiltCli, sleep } from '../helpers/agent-process.js';
import { checkpointSupport, HARNESS_CHECKPOINT_DELAY_MS } from '../helpers/colo-cmdline.js';
import { queryColoStatus, type ColoRole } from '../helpers/colo-pair.js';
import { scrapeUntil } from '../helpers/exposition.js';
import { atNextStop, pauseFrom, QemuCheckpointLog } from '../helpers/qemu-checkpoints.js';
import { qemuAvailable } from '../helpers/qemu.js';
import { BRING_UP_HOST, startLabColoAgentsOrSkip } from '../lab/lab-colo.js';

const DELAY_MS = 300;
const STALL_MS = 2000;
/** How long the secondary stays frozen once both agents report the stall. */
const HOLD_MS = 2000;
/** Bounds for a loaded 2-core machine, not targets. */
const WAIT_MS = 20_000;

const avail = await qemuAvailable();
const support = avail.ok ? checkpointSupport(avail) : avail;
const skip = support.ok ? false : support.reason;

t.setTimeout(4 * 60_000);
t.teardown(killAllChildren);

if (requireBuiltCli(t)) {
  t.test('the secondary QEMU frozen inside a checkpoint: checkpoint_stalled 1 on both agents; thawed: 0 again, checkpoints flow', { skip }, async (t) => {
    const lc = await startLabColoAgentsOrSkip(t, { arbiter: 'none', sets: [`colo.checkpointStallMs=${STALL_MS}`] });
    if (!lc) return;
    const { pair } = lc;
    const roles: ColoRole[] = ['primary', 'secondary'];
    const metricsOf = (role: ColoRole) => lc.metricsAddress(BRING_UP_HOST[role]);
    const logs = new Map(roles.map((role) => [role, new QemuCheckpointLog(pair.side(role).qmp)] as const));
    t.teardown(() => logs.forEach((l) => l.close()));
    // Never leave a frozen QEMU behind a failed assertion (pair.stop() SIGKILLs it anyway).
    t.teardown(() => pair.secondary.kill('SIGCONT'));

    await pair.primary.qmp.execute('migrate-set-parameters', { 'x-checkpoint-delay': DELAY_MS });
    const flowing = await scrapeUntil(metricsOf('primary'), (x) => x.value('colo_agent_checkpoints_total') >= 3, WAIT_MS);
    t.ok(flowing.value('colo_agent_checkpoints_total') >= 3, `checkpoints flow (${flowing.value('colo_agent_checkpoints_total')} counted by the primary agent)`);

    const stop = await atNextStop(pair.primary.qmp, () => pair.secondary.kill('SIGSTOP'), WAIT_MS);
    const frozenAt = performance.now();
    const countAtFreeze = new Map<ColoRole, number>();
    for (const role of roles) {
      const e = await scrapeUntil(metricsOf(role), (x) => x.value('colo_agent_checkpoint_stalled') === 1, STALL_MS + WAIT_MS);
      t.equal(e.value('colo_agent_checkpoint_stalled'), 1, `${role} agent: colo_agent_checkpoint_stalled 1`);
      t.equal(e.value('colo_agent_checkpoint_stalls_total'), 1, `${role} agent: one stall counted`);
      t.equal(e.value('colo_agent_checkpoint_in_progress'), 1, `${role} agent: the checkpoint is still in progress`);
      countAtFreeze.set(role, e.value('colo_agent_checkpoints_total'));
    }
    t.ok(logs.get('primary')!.stopped, "the primary QEMU's last event is a STOP: its checkpoint waits for the frozen secondary");
    await sleep(HOLD_MS);
    const frozenMs = performance.now() - frozenAt;
    pair.secondary.kill('SIGCONT');

    for (const role of roles) {
      const before = countAtFreeze.get(role)!;
      const e = await scrapeUntil(metricsOf(role), (x) => x.value('colo_agent_checkpoint_stalled') === 0 && x.value('colo_agent_checkpoints_total') > before + 1, WAIT_MS);
      t.equal(e.value('colo_agent_checkpoint_stalled'), 0, `${role} agent: colo_agent_checkpoint_stalled back to 0 after SIGCONT`);
      t.ok(e.value('colo_agent_checkpoints_total') > before + 1, `${role} agent: the stalled checkpoint completed and more followed (${before} -> ${e.value('colo_agent_checkpoints_total')})`);
      t.equal(e.value('colo_agent_checkpoint_stalls_total'), 1, `${role} agent: still one stall counted`);
    }
    const primaryPause = pauseFrom(logs.get('primary')!, stop);
    t.ok(primaryPause && primaryPause.pauseUs / 1000 >= frozenMs - 5, `QEMU's stamps: the frozen checkpoint paused the primary ${(primaryPause?.pauseUs ?? 0) / 1000} ms (frozen ~${Math.round(frozenMs)} ms)`);
    const longest = Math.max(0, ...logs.get('secondary')!.pauses().pauses.map((p) => p.pauseUs / 1000));
    t.ok(longest >= frozenMs - 5, `QEMU's stamps: the secondary's longest pause ${longest} ms covers the freeze`);

    await pair.primary.qmp.execute('migrate-set-parameters', { 'x-checkpoint-delay': HARNESS_CHECKPOINT_DELAY_MS });
    for (const role of roles) t.equal((await queryColoStatus(pair.side(role))).mode, role, `${role} QEMU: still in COLO, mode ${role}`);
    t.comment(`secondary frozen ${Math.round(frozenMs)} ms inside a checkpoint (from the primary's STOP stamped ${stop.timestampMs}); both agents stalled and recovered`);
  });
}
