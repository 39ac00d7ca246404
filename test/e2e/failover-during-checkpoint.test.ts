/**
 * A failover during a checkpoint (issue 15; upstream's tests/qtest/migration/colo-tests.c does the
 * same by hand: wait for a STOP, then yank and x-colo-lost-heartbeat): a real COLO pair on the lab
 * of separate hosts, both agents attached (arbiter none), checkpoints flowing at x-checkpoint-delay
 * 300 ms, then the peer's host is lost the moment the survivor's QEMU emits the STOP of a
 * checkpoint (atNextStop): the peer's QEMU hangs there (SIGSTOP, within a millisecond: the
 * secondary's pause is ~10 ms, shorter than the ~60 ms the lab takes to drop a host's traffic) and
 * then its host loses power (every packet dropped, then all its processes SIGKILLed: no FIN, no
 * RST). The survivor's agent must run its failover sequence (yank first, so no step blocks on the
 * dead peer) on a QEMU stopped inside that checkpoint, and end with the guest running outside COLO.
 *
 * 1. The secondary host is lost at the primary's STOP: the primary waits for a secondary that will
 *    never load the checkpoint; its agent runs primary-failover.
 * 2. The primary host is lost at the secondary's STOP (the secondary stops first, at the
 *    checkpoint request): its agent runs secondary-failover.
 * Each checks from QEMU's own stamps that the fault landed inside the checkpoint (the survivor's
 * RESUME after that STOP came after the power loss), and that the agent counted only the completed
 * checkpoints, not the interrupted one.
 *
 * Only where checkpoints complete under TCG (QEMU 11.1: npm run test:qemu-11); skipped with the
 * reason elsewhere, and without the lab (root, ip, nft). The waits are bounds, not targets.
 */
import t, { type Test } from 'tap';
import { agentState, killAllChildren, requireBuiltCli } from '../helpers/agent-process.js';
import { waitFailoverDone } from '../helpers/colo-agents.js';
import { checkpointSupport } from '../helpers/colo-cmdline.js';
import { queryColoStatus, queryStatus, type ColoRole } from '../helpers/colo-pair.js';
import { scrapeUntil } from '../helpers/exposition.js';
import { atNextStop, pauseFrom, QemuCheckpointLog } from '../helpers/qemu-checkpoints.js';
import { qemuAvailable } from '../helpers/qemu.js';
import { BRING_UP_HOST, startLabColoAgentsOrSkip } from '../lab/lab-colo.js';

const DELAY_MS = 300;
/** Bounds for a loaded 2-core machine, not targets. */
const WAIT_MS = 20_000;
const SEQUENCE: Record<ColoRole, string> = { primary: 'primary-failover', secondary: 'secondary-failover' };

const avail = await qemuAvailable();
const support = avail.ok ? checkpointSupport(avail) : avail;
const skip = support.ok ? false : support.reason;

t.setTimeout(4 * 60_000);
t.teardown(killAllChildren);

async function failoverDuringCheckpoint(t: Test, survivorRole: ColoRole): Promise<void> {
  const lc = await startLabColoAgentsOrSkip(t, { arbiter: 'none' });
  if (!lc) return;
  const { pair } = lc;
  const lostRole: ColoRole = survivorRole === 'primary' ? 'secondary' : 'primary';
  const survivorHost = BRING_UP_HOST[survivorRole];
  const survivor = lc.agents[survivorHost]!;
  const side = pair.side(survivorRole);
  const log = new QemuCheckpointLog(side.qmp);
  t.teardown(() => log.close());

  await pair.primary.qmp.execute('migrate-set-parameters', { 'x-checkpoint-delay': DELAY_MS });
  const flowing = await scrapeUntil(lc.metricsAddress(survivorHost), (x) => x.value('colo_agent_checkpoints_total') >= 3, WAIT_MS);
  t.ok(flowing.value('colo_agent_checkpoints_total') >= 3, `checkpoints flow (${flowing.value('colo_agent_checkpoints_total')} counted by the ${survivorRole} agent)`);

  const since = survivor.cursor();
  let faultAt = 0;
  let powerLoss: Promise<unknown> = Promise.resolve();
  const stop = await atNextStop(
    side.qmp,
    () => {
      faultAt = Date.now();
      pair.side(lostRole).kill('SIGSTOP');
      powerLoss = lc.lab.powerLoss(BRING_UP_HOST[lostRole]);
    },
    WAIT_MS,
  );
  await powerLoss;
  const lostBy = Date.now();
  const timing = await waitFailoverDone(survivor, since, faultAt, WAIT_MS);
  t.equal(timing.sequence, SEQUENCE[survivorRole], `the ${survivorRole} agent ran ${SEQUENCE[survivorRole]} (trigger ${timing.trigger})`);
  await survivor.waitForLog(agentState('solo'), WAIT_MS, { since });

  const resumed = pauseFrom(log, stop);
  t.ok(resumed && resumed.resumeAt > lostBy, `QEMU's stamps: the ${survivorRole} stayed stopped in the checkpoint until after the power loss (STOP ${stop.timestampMs}, lost by ${lostBy}, RESUME ${resumed?.resumeAt})`);
  const vm = await queryStatus(side);
  t.equal(vm.status, 'running', `the ${survivorRole} guest runs after the failover`);
  t.match(await queryColoStatus(side), { mode: 'none', 'last-mode': survivorRole }, 'COLO is over on the survivor');

  const completed = log.pauses().pauses.filter((p) => p.stopAt !== stop.timestampMs).length;
  const e = await scrapeUntil(lc.metricsAddress(survivorHost), (x) => x.stateOf('colo_agent_colo_mode', 'mode')[0] === 'none', WAIT_MS);
  t.equal(e.value('colo_agent_failovers_total', { sequence: SEQUENCE[survivorRole], result: 'success' }), 1, `failovers_total{${SEQUENCE[survivorRole]}, success} 1`);
  t.equal(e.value('colo_agent_checkpoints_total'), completed, `the agent counted the ${completed} completed checkpoints, not the interrupted one`);
  t.equal(e.value('colo_agent_checkpoint_stalled'), 0, 'no stall left behind');
  t.comment(
    `${SEQUENCE[survivorRole]} during a checkpoint (trigger ${timing.trigger}): sequence ${timing.sequenceMs} ms, fault -> done ${timing.faultToDoneMs} ms; ` +
      `the guest was stopped ${((resumed?.pauseUs ?? 0) / 1000).toFixed(0)} ms in all`,
  );
}

if (requireBuiltCli(t)) {
  // Known agent bug, found by this case (3 of 3 runs on 11.1.3): the stuck primary's QMP times out in-band
  // (its main loop blocked on the dead secondary's NBD export; an out-of-band yank of the NBD node unblocks
  // it, measured), and the takeover rule refuses "our QEMU is unreachable: nothing to fail over on".
  const todo = 'agent bug: a primary stuck in a checkpoint on the dead secondary is refused as unreachable instead of yanked (see the comment above)';
  t.test('the secondary host loses power at the STOP of a checkpoint: primary-failover on the stopped primary, its guest runs', { skip, todo: skip ? false : todo }, (t) =>
    failoverDuringCheckpoint(t, 'primary'),
  );
  t.test('the primary host loses power at the STOP of a checkpoint: secondary-failover on the stopped secondary, its guest runs', { skip }, (t) =>
    failoverDuringCheckpoint(t, 'secondary'),
  );
}
