/**
 * When the agent launches its own QEMU (qemu.launch): the policy between the agent's state and
 * the QemuSupervisor that does the launching.
 *
 * The rule is "a fresh secondary, only where this node will not be primary": a launch happens
 * when the node's role (the journal's, else node.role) is secondary, or when its epoch is stale
 * (the peer took the guest over: this host comes back as the new secondary). A node that is, or
 * is about to be, primary never launches at start: its first bring-up stays the operator's
 * documented procedure, and a secondary QEMU there would hold the QMP socket and the disk lock
 * the operator's primary needs. Once launched, the supervisor's restart policy takes over.
 *
 * The supervisor itself refuses to launch next to a QEMU that answers on qemu.qmp, so asking
 * again is always safe.
 */
import type { QemuLaunchConfig } from '../config/index.js';
import type { Logger } from '../log.js';
import type { Clock } from '../util/clock.js';
import { QemuSupervisor, type EnsureResult, type QemuSupervisorStatus } from './supervisor.js';

export interface QemuLaunchControllerOptions {
  launch: QemuLaunchConfig;
  stateDir: string;
  qmp: string;
  clock: Clock;
  logger: Logger;
}

/** What a launch decision looks at. */
export interface LaunchFacts {
  /** The node's role now (the journal's, else node.role). */
  role: 'primary' | 'secondary' | 'witness';
  stale: boolean;
}

export function wantsFreshSecondary(f: LaunchFacts): boolean {
  return f.role === 'secondary' || f.stale;
}

export class QemuLaunchController {
  readonly supervisor: QemuSupervisor;
  private readonly log: Logger;

  constructor(opts: QemuLaunchControllerOptions) {
    const l = opts.launch;
    this.log = opts.logger.child({ component: 'qemu-launch' });
    this.supervisor = new QemuSupervisor({
      command: l.secondaryCommand,
      stateDir: opts.stateDir,
      restart: l.restart,
      maxRestarts: l.maxRestarts,
      restartWindowMs: l.restartWindowMs,
      restartDelayMs: l.restartDelayMs,
      qmp: opts.qmp,
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
   * Launches a fresh secondary when the facts want one and no QEMU runs; never throws (a failed
   * launch is logged and counted by the supervisor's events, and the agent goes on without QEMU).
   */
  async ensure(facts: LaunchFacts, why: string): Promise<EnsureResult | undefined> {
    if (!wantsFreshSecondary(facts)) {
      this.log.info({ ...facts }, 'not launching QEMU: this node is primary (only a fresh secondary is ever launched)');
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
