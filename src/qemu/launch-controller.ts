/**
 * When the agent launches its own QEMU (qemu.launch): the policy between the agent's state and
 * the QemuSupervisor that does the launching.
 *
 * The rule is "a fresh secondary, only where this node will not be primary, and never while the
 * agent is in the middle of something": a launch (or a restart after an exit) happens when the
 * node's role (the journal's, else node.role) is secondary, or when its epoch is stale (the peer
 * took the guest over: this host comes back as the new secondary), and nothing is in flight (no
 * failover unfinished in the journal, no takeover decision, no resume, not `failed`). A node that
 * is, or is about to be, primary never launches: its first bring-up stays the operator's
 * documented procedure, a secondary QEMU there would hold the QMP socket and the disk lock the
 * primary needs, and a QEMU that became the primary by a failover is never replaced by a fresh
 * secondary when it exits (the restart is deferred until the node is secondary or stale).
 *
 * The supervisor itself refuses to launch next to a QEMU that answers on qemu.qmp, so asking
 * again is always safe.
 */
import type { QemuLaunchConfig } from '../config/index.js';
import type { Logger } from '../log.js';
import type { Clock } from '../util/clock.js';
import { QemuSupervisor, type EnsureResult, type QemuSupervisorStatus } from './supervisor.js';

/** What a launch decision looks at. */
export interface LaunchFacts {
  /** The node's role now (the journal's, else node.role). */
  role: 'primary' | 'secondary' | 'witness';
  stale: boolean;
  /** Why the agent cannot take a new QEMU now (a failover or resume in flight, `failed`), if so. */
  busy?: string;
}

/** Why no fresh secondary may be launched now, or undefined when one may. */
export function launchRefusal(f: LaunchFacts): string | undefined {
  if (f.busy !== undefined) return f.busy;
  if (f.role !== 'secondary' && !f.stale) return `this node is ${f.role} (only a fresh secondary is ever launched)`;
  return undefined;
}

export interface QemuLaunchControllerOptions {
  launch: QemuLaunchConfig;
  stateDir: string;
  qmp: string;
  /** The agent's facts, read at every launch and restart decision. */
  facts: () => LaunchFacts;
  clock: Clock;
  logger: Logger;
}

export class QemuLaunchController {
  readonly supervisor: QemuSupervisor;
  private readonly log: Logger;
  private readonly facts: () => LaunchFacts;

  constructor(opts: QemuLaunchControllerOptions) {
    const l = opts.launch;
    this.log = opts.logger.child({ component: 'qemu-launch' });
    this.facts = opts.facts;
    this.supervisor = new QemuSupervisor({
      command: l.secondaryCommand,
      stateDir: opts.stateDir,
      restart: l.restart,
      maxRestarts: l.maxRestarts,
      restartWindowMs: l.restartWindowMs,
      restartDelayMs: l.restartDelayMs,
      qmp: opts.qmp,
      mayRestart: () => launchRefusal(this.facts()),
      clock: opts.clock,
      logger: opts.logger,
    });
  }

  /** Adopts the QEMU an earlier agent run launched (its exit is then watched), whatever the role. */
  async adopt(): Promise<void> {
    try {
      await this.supervisor.adopt();
    } catch (err) {
      this.log.error({ err }, 'could not look for a QEMU an earlier agent run launched');
    }
  }

  /**
   * Launches a fresh secondary when the facts allow one and no QEMU runs; never throws (a failed
   * launch is logged and counted by the supervisor's events, and the agent goes on without QEMU).
   */
  async ensure(why: string): Promise<EnsureResult | undefined> {
    const facts = this.facts();
    const refused = launchRefusal(facts);
    if (refused !== undefined) {
      this.log.info({ ...facts, why }, `not launching QEMU: ${refused}`);
      return undefined;
    }
    try {
      return await this.supervisor.ensureRunning(why);
    } catch (err) {
      this.log.error({ err, why }, 'could not launch the secondary QEMU');
      return undefined;
    }
  }

  /** A planned agent stop: supervision ends, the QEMU keeps running (the guest must not go down). */
  stop(): Promise<void> {
    return this.supervisor.stop();
  }

  status(): QemuSupervisorStatus {
    return this.supervisor.status();
  }
}
