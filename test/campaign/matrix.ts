/**
 * The lifecycle campaign's matrix: the phases a pair is brought into, the faults injected there,
 * and what must happen, as data. Pure: the trial runner (run-trial.ts) does the work on the lab of
 * separate hosts, the verdict (verdict.ts) judges what QEMU itself showed.
 *
 * Hosts are named by the role they play when the fault hits ("the primary's host"), not by
 * letter: after a failback with the roles swapped, the primary's host is host b.
 */

/** Where the pair's history has brought it when the fault hits. */
export const PHASES = [
  /** a fresh pair in COLO: a primary, b secondary */
  'steady',
  /** the secondary's host was lost: the primary runs solo, the lost host is back with its agent only */
  'after-primary-failover',
  /** the primary's host was lost: the former secondary runs solo, the lost host is back with its agent only */
  'after-secondary-failover',
  /** after a primary failover, the returning host's fresh secondary is being resynced (drive-mirror running) */
  'during-resync',
  /** primary failover, then failback: COLO again with a primary, b secondary */
  'failback-kept',
  /** secondary failover, then failback: COLO again with b primary, a secondary */
  'failback-swapped',
  /** failback-swapped, then the new primary's host lost: the new secondary (host a) ran a secondary failover and runs solo */
  'second-failover',
] as const;
export type Phase = (typeof PHASES)[number];

export const FAULTS = [
  /** all traffic of the primary's host dropped (no FIN, no RST), then its processes killed */
  'power-loss-primary',
  'power-loss-secondary',
  /** the primary's host cut off from everything, its processes keep running */
  'isolate-primary',
  'isolate-secondary',
  /** the two hosts cut off from each other, both still reach the witness */
  'partition',
  /** SIGSTOP of every process of the primary's host, SIGCONT after the takeover (or a while) */
  'freeze-primary',
  'freeze-secondary',
  /** SIGKILL of every process of the host: the kernel sends FIN/RST */
  'crash-primary',
  'crash-secondary',
  /** only the QEMU dies */
  'qemu-death-primary',
  'qemu-death-secondary',
  /** only the agent dies (kill -9): its QEMU lives, nobody may take over */
  'agent-death-primary',
  'agent-death-secondary',
  /** the primary's QEMU dies, and the secondary's agent is killed while its failover is in the journal, then restarted */
  'agent-restart-mid-failover',
  /** the witness is gone (SIGKILL); the pair itself is healthy */
  'witness-down',
] as const;
export type Fault = (typeof FAULTS)[number];

/** A replicated phase: a primary and a secondary in COLO when the fault hits. */
export function replicated(phase: Phase): boolean {
  return phase === 'steady' || phase === 'failback-kept' || phase === 'failback-swapped';
}

/** A solo phase: one QEMU runs the guest, the other host runs only its agent (no QEMU yet). */
export function solo(phase: Phase): boolean {
  return phase === 'after-primary-failover' || phase === 'after-secondary-failover' || phase === 'second-failover';
}

/** Which fault kinds make sense in a phase (a solo phase has no secondary QEMU to kill, etc.). */
export function applicable(phase: Phase, fault: Fault): boolean {
  if (replicated(phase)) return true;
  if (solo(phase)) {
    // The host without a QEMU: losing it, or its agent, must change nothing for the solo primary.
    return ['power-loss-secondary', 'crash-secondary', 'agent-death-secondary', 'agent-death-primary', 'witness-down', 'isolate-primary', 'freeze-secondary'].includes(fault);
  }
  // during-resync: the new secondary is not in COLO yet; only losing it, or an agent, is meaningful.
  return ['power-loss-secondary', 'crash-secondary', 'qemu-death-secondary', 'agent-death-primary', 'agent-death-secondary', 'witness-down'].includes(fault);
}

export type Survivor = 'primary' | 'secondary';

/** What must come out of a trial, besides safety (never two guests running outside COLO at once). */
export interface Expectation {
  /** The host whose QEMU must run the guest once the fault has played out. */
  runs: Survivor;
  /** A takeover (a failover sequence) is due, on `runs`' node. false: nobody may run one. */
  takeover: boolean;
  /** COLO must be back by itself once the failed host is repaired (restarted, powered on, thawed, healed). */
  resumes: boolean;
  /** The takeover's bound in ms (fault -> the survivor's guest runs alone), printed by the campaign. */
  boundMs?: number;
  /** Why, for the table's notes. */
  why: string;
}

/** The default bound with the witness's default lease: detection + lease + the sequence. */
export const TAKEOVER_BOUND_MS = 1000;
/**
 * What an agent restart adds to a takeover (agent-restart-mid-failover): the guest runs only once
 * the restarted agent has finished the journal's failover, and its start (node, config, QMP,
 * heartbeat links) takes ~1.3 s on a 2-core machine.
 */
export const AGENT_RESTART_MS = 2000;
/** A frozen host is fenced after failover.unresponsivePeerMs of silence (the campaign sets it, see run-trial.ts). */
export function frozenBoundMs(unresponsivePeerMs: number): number {
  return unresponsivePeerMs + TAKEOVER_BOUND_MS;
}

export function expectation(phase: Phase, fault: Fault, opts: { unresponsivePeerMs: number }): Expectation {
  if (!applicable(phase, fault)) throw new Error(`fault ${fault} does not apply to phase ${phase}`);
  if (solo(phase)) {
    if (fault === 'isolate-primary') {
      // A solo primary (COLO mode none) is not paused by the lease guard: it has no peer to lose the guest to.
      return { runs: 'primary', takeover: false, resumes: true, why: 'solo: nobody to take over; the returning host waits for the heal' };
    }
    return { runs: 'primary', takeover: false, resumes: true, why: 'solo: the primary keeps running; the other host comes back as a fresh secondary' };
  }
  if (phase === 'during-resync') {
    if (fault.startsWith('agent-death')) return { runs: 'primary', takeover: false, resumes: true, why: 'an agent restart rolls the resume back, then resumes again' };
    return { runs: 'primary', takeover: false, resumes: true, why: 'the resume rolls back, the primary runs solo, then resumes into the repaired host' };
  }
  switch (fault) {
    case 'power-loss-primary':
    case 'crash-primary':
    case 'qemu-death-primary':
      return { runs: 'secondary', takeover: true, resumes: true, boundMs: TAKEOVER_BOUND_MS, why: 'the primary is gone: the secondary takes over' };
    case 'agent-restart-mid-failover':
      return {
        runs: 'secondary',
        takeover: true,
        resumes: true,
        boundMs: TAKEOVER_BOUND_MS + AGENT_RESTART_MS,
        why: 'the primary is gone; the secondary agent dies mid-failover and, restarted, finishes it from its journal',
      };
    case 'isolate-primary':
      return { runs: 'secondary', takeover: true, resumes: true, boundMs: TAKEOVER_BOUND_MS, why: 'the primary is cut off: its lease runs out, it pauses, the witness grants the secondary' };
    case 'freeze-primary':
      return { runs: 'secondary', takeover: true, resumes: true, boundMs: frozenBoundMs(opts.unresponsivePeerMs), why: 'a frozen primary: fenced, then taken over' };
    case 'power-loss-secondary':
    case 'crash-secondary':
    case 'qemu-death-secondary':
    case 'isolate-secondary':
      return { runs: 'primary', takeover: true, resumes: true, boundMs: TAKEOVER_BOUND_MS, why: 'the secondary is gone: the primary continues alone' };
    case 'freeze-secondary':
      return { runs: 'primary', takeover: true, resumes: true, boundMs: frozenBoundMs(opts.unresponsivePeerMs), why: 'a frozen secondary: fenced, the primary continues alone' };
    case 'partition':
      return { runs: 'primary', takeover: true, resumes: true, boundMs: TAKEOVER_BOUND_MS, why: 'both ask the witness; the primary holds the lease and continues, the secondary goes stale' };
    case 'agent-death-primary':
    case 'agent-death-secondary':
      return { runs: 'primary', takeover: false, resumes: false, why: 'only an agent died: its QEMU lives, the pair stays in COLO' };
    case 'witness-down':
      return { runs: 'primary', takeover: false, resumes: false, why: 'the pair is healthy: losing the arbiter changes nothing' };
  }
}

/** Every (phase, fault) cell the campaign can run. */
export function cells(filter: { phase?: string | undefined; fault?: string | undefined } = {}): Array<{ phase: Phase; fault: Fault }> {
  const out: Array<{ phase: Phase; fault: Fault }> = [];
  for (const phase of PHASES) {
    if (filter.phase !== undefined && filter.phase !== phase) continue;
    for (const fault of FAULTS) {
      if (filter.fault !== undefined && filter.fault !== fault) continue;
      if (applicable(phase, fault)) out.push({ phase, fault });
    }
  }
  return out;
}
