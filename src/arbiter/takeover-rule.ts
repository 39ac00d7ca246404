/**
 * The rule that decides whether this agent runs a failover sequence on its QEMU now.
 *
 * Pure: the agent gathers the facts (its own QEMU, the peer's word, the probe of the peer's QEMU)
 * and this function answers, with a reason an operator can read in the log. The rule, in order:
 *
 * 1. Never act on a QEMU we cannot reach: an agent whose own QEMU is gone tells its peer instead.
 * 2. Act only while our QEMU replicates (COLO mode primary or secondary): the mode, not the
 *    configured role, picks the sequence (primary -> primary failover, secondary -> secondary).
 * 3. Automatic failover can be switched off (failover.enabled); a manual request still runs.
 * 4. Per trigger:
 *    - peer-qemu-gone: the peer's agent saw its QMP socket close and said so (fast path): act when
 *      the probe confirms (`refused`/`silent`); a QMP session can also end for other reasons (a
 *      protocol reset), and a peer QEMU that still listens must never be replaced;
 *    - peer-down (heartbeats lost) and colo-exit-error (our QEMU lost its replication stream):
 *      act only if the probe of the peer's QEMU port says `refused` (host up, QEMU gone) or
 *      `silent` (host gone, or cut off: the split-brain case the arbiter guards). `alive` means the
 *      peer's QEMU still listens: its agent crashed or the heartbeat path is cut, the VM is still
 *      protected, and taking over would run it twice: wait, and ask again later;
 *    - colo-exit-error with a `silent` probe while the peer's agent still heartbeats that its
 *      QEMU is fine: the replication network failed, not the peer: do not act. (A `refused`
 *      probe wins over the peer's last heartbeat, which may predate its QEMU's death by one
 *      interval.)
 *    - a gray failure (`alive` probe, see failover.unresponsivePeerMs): the peer's QEMU port AND its
 *      agent's heartbeat port still complete TCP handshakes, yet its agent has sent nothing for
 *      unresponsivePeerMs. A listening socket answers from the kernel, so the processes exist but
 *      do not run (a frozen host: SIGSTOP, a stuck hypervisor, a VM paused under it) or the agent
 *      is hung. Its guest is not served and nothing tells us when it will be: with a fence command
 *      act, and the gate fences the peer before the sequence runs (so a thaw finds it dead); without
 *      one wait, since a thawed primary would run beside us. A crashed agent is different: its port
 *      refuses, and then a living QEMU is simply left alone.
 *    - manual: act.
 */
import type { PeerQemuVerdict } from './peer-qemu-probe.js';

export type TakeoverTrigger = 'peer-down' | 'peer-qemu-gone' | 'colo-exit-error' | 'manual';
export type FailoverSequenceName = 'primary-failover' | 'secondary-failover';

export interface TakeoverFacts {
  trigger: TakeoverTrigger;
  /** Our QMP session is up. */
  qemuReachable: boolean;
  /** query-colo-status mode of our QEMU. */
  coloMode: string;
  failoverEnabled: boolean;
  /** The peer QEMU probe, when one was made. */
  probe?: PeerQemuVerdict;
  /** The peer agent's last word on its own QEMU, if its heartbeats still arrive. */
  peerReportsQemuReachable?: boolean;
  /** The probe of the peer agent's heartbeat ports (PeerQemuProbeResult.agent). */
  peerAgentPort?: PeerQemuVerdict;
  /** How long the peer's agent has sent nothing (undefined: never heard). */
  peerSilentForMs?: number;
  /** failover.unresponsivePeerMs (0: off). */
  unresponsivePeerMs?: number;
  /** failover.fenceCommand is set: the gate fences the peer before any sequence. */
  fenceConfigured?: boolean;
}

export type TakeoverDecision =
  | { act: true; sequence: FailoverSequenceName; reason: string; /** The peer must be fenced first (a frozen host). */ fenceRequired?: true }
  | {
      act: false;
      reason: string;
      /** Worth asking again (e.g. re-probing) later. */
      retry: boolean;
      /** Ask again no later than this (ms): the moment a silent, still-listening peer counts as frozen. */
      recheckInMs?: number;
    };

export function decideTakeover(f: TakeoverFacts): TakeoverDecision {
  if (!f.qemuReachable) return { act: false, retry: false, reason: 'our QEMU is unreachable: nothing to fail over on' };
  if (f.coloMode !== 'primary' && f.coloMode !== 'secondary') {
    return { act: false, retry: false, reason: `our QEMU is not replicating (COLO mode ${f.coloMode})` };
  }
  const sequence: FailoverSequenceName = f.coloMode === 'primary' ? 'primary-failover' : 'secondary-failover';
  if (f.trigger === 'manual') return { act: true, sequence, reason: 'requested by the operator' };
  if (!f.failoverEnabled) return { act: false, retry: false, reason: 'automatic failover is disabled (failover.enabled=false)' };

  // Every automatic trigger: the probe of the peer's QEMU decides.
  if (f.probe === 'refused') {
    const why = f.trigger === 'peer-qemu-gone' ? "the peer's agent reports its QEMU gone and its host refuses the QEMU's port" : "the peer's host refuses its QEMU's port: its QEMU is gone";
    return { act: true, sequence, reason: why };
  }
  if (f.trigger === 'colo-exit-error' && f.probe === 'silent' && f.peerReportsQemuReachable === true) {
    return { act: false, retry: false, reason: "replication broke but the peer's agent reports its QEMU alive: not a dead peer" };
  }
  if (f.probe === 'silent') return { act: true, sequence, reason: "the peer's host does not answer: host lost" };
  if (f.probe === 'alive') return unresponsivePeer(f, sequence);
  return { act: false, retry: true, reason: 'no probe of the peer QEMU yet' };
}

/** The peer's QEMU still listens: its agent crashed (wait), or the whole host is frozen (fence, then act). */
function unresponsivePeer(f: TakeoverFacts, sequence: FailoverSequenceName): TakeoverDecision {
  const waiting = "the peer's QEMU still listens: its agent is down, not its VM; waiting";
  const after = f.unresponsivePeerMs ?? 0;
  if (f.peerAgentPort !== 'alive' || after <= 0 || f.peerSilentForMs === undefined) return { act: false, retry: true, reason: waiting };
  const silent = Math.round(f.peerSilentForMs);
  if (f.peerSilentForMs < after) {
    return { act: false, retry: true, recheckInMs: Math.max(1, Math.ceil(after - f.peerSilentForMs)), reason: `${waiting} (its agent's port still accepts: frozen after ${after} ms of silence, now ${silent})` };
  }
  const frozen = `the peer's host completes TCP handshakes on its QEMU's and its agent's ports, yet its agent has said nothing for ${silent} ms: frozen or hung`;
  if (!f.fenceConfigured) return { act: false, retry: true, reason: `${frozen}; no failover.fenceCommand to fence it with, so waiting (a thaw would run the guest twice)` };
  return { act: true, sequence, fenceRequired: true, reason: `${frozen}; fencing it, then taking over` };
}
