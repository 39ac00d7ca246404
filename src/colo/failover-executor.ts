/**
 * Runs one failover decision to its end, exactly once across crashes: the journal records the
 * decision before the first command and each completed step before the next one, so an agent
 * restarted mid-sequence resumes it (skipping what was done) instead of starting another.
 *
 * After the last step it waits until QEMU reports the VM running again: x-colo-lost-heartbeat
 * replies before COLO_EXIT and RESUME (seen on 7.2: query-status said {status: colo, running:
 * false} right after the reply), and "failover done" must mean the guest runs.
 */
import { silentLogger, type Logger } from '../log.js';
import type { QmpClient } from '../qmp/index.js';
import { systemClock, type Clock } from '../util/clock.js';
import type { Journal, JournalDecision } from './journal.js';
import { describeProfile, resolveQemuProfile } from './profile.js';
import { runSequence, type SequenceResult, type StepRecord } from './runner.js';
import { failoverSequence, type ColoTopologyInput, type SequenceName } from './sequences.js';

export interface FailoverRequest {
  sequence: SequenceName;
  /** Why (trigger + rule reason), recorded in logs. */
  reason: string;
}

export interface FailoverExecutorOptions {
  qmp: QmpClient;
  journal: Journal;
  colo: ColoTopologyInput;
  /** qemu.profile from config: `auto` or an explicit version. */
  profile: string;
  stepTimeoutMs: number;
  /** How long to wait for the VM to run again after the last step. */
  runningTimeoutMs?: number;
  clock?: Clock;
  logger?: Logger;
  onStep?: (record: StepRecord) => void;
  /** See RunSequenceOptions.cachedBlockGraph. */
  cachedBlockGraph?: () => unknown;
}

export interface FailoverOutcome {
  ok: boolean;
  decision: JournalDecision;
  result: SequenceResult;
  /** The VM ran again after the sequence (checked with query-status). */
  running: boolean;
  /** True when this run resumed an unfinished decision from the journal. */
  resumed: boolean;
}

export class FailoverExecutor {
  private readonly clock: Clock;
  private readonly log: Logger;

  constructor(private readonly opts: FailoverExecutorOptions) {
    this.clock = opts.clock ?? systemClock;
    this.log = (opts.logger ?? silentLogger()).child({ component: 'failover' });
  }

  /**
   * Runs `req`, or the journal's unfinished decision when there is one (its sequence wins: the
   * failover that was started is the one that gets finished). Never rejects for QEMU's reasons;
   * a journal that cannot be written does reject, and the agent then stops acting on its own.
   */
  async run(req: FailoverRequest): Promise<FailoverOutcome> {
    const { qmp, journal } = this.opts;
    const profile = resolveQemuProfile(this.opts.profile, qmp.version);
    let name = req.sequence;
    let decision: JournalDecision;
    let resumed = false;
    const begun = await journal.begin({
      id: `${name}-${new Date().toISOString()}`,
      sequence: name,
      roleBefore: name === 'primary-failover' ? 'primary' : 'secondary',
      roleAfter: 'primary',
    });
    if (begun.started) {
      decision = begun.decision;
    } else {
      decision = await journal.resume();
      name = decision.sequence as SequenceName;
      resumed = true;
    }
    const sequence = failoverSequence(name, this.opts.colo, profile);
    this.log.warn(
      { sequence: name, decision: decision.id, resumed, alreadyDone: decision.completedSteps, profile: describeProfile(profile), reason: req.reason },
      resumed ? 'resuming the unfinished failover from the journal' : 'failover starting',
    );
    const result = await runSequence({
      qmp,
      sequence,
      stepTimeoutMs: this.opts.stepTimeoutMs,
      alreadyDone: decision.completedSteps,
      clock: this.clock,
      // The root logger: the runner's child names its own component (a child of ours would carry `component` twice).
      ...(this.opts.logger && { logger: this.opts.logger }),
      ...(this.opts.cachedBlockGraph && { cachedBlockGraph: this.opts.cachedBlockGraph }),
      onStep: async (rec) => {
        if (rec.outcome === 'done' || rec.outcome === 'already-done') await journal.stepDone(rec.name);
        this.opts.onStep?.(rec);
      },
    });
    for (const h of result.hookErrors) this.log.error({ step: h.step, err: h.error }, 'journal write failed during failover');
    const running = result.ok ? await this.waitRunning() : false;
    const ok = result.ok && running;
    decision = await journal.finish(
      ok ? { ok } : { ok, error: result.error ?? { code: 'COLO_VM_NOT_RUNNING', message: 'the VM did not run again after the sequence' } },
    );
    return { ok, decision, result, running, resumed };
  }

  private async waitRunning(): Promise<boolean> {
    const until = this.clock.now() + (this.opts.runningTimeoutMs ?? 3000);
    for (;;) {
      try {
        const st = await this.opts.qmp.execute<{ running: boolean }>('query-status', undefined, { timeoutMs: this.opts.stepTimeoutMs });
        if (st.running) return true;
      } catch (err) {
        this.log.warn({ err }, 'query-status after the failover failed');
      }
      if (this.clock.now() >= until) return false;
      await new Promise<void>((resolve) => this.clock.setTimeout(resolve, 10));
    }
  }
}
