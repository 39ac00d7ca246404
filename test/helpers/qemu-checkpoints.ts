/**
 * QEMU's own account of COLO checkpoints, as ground truth for what the agent reports: every STOP
 * and RESUME event one side's QEMU sends a QMP client of ours (QEMU broadcasts events to each of
 * its monitors, so the harness's socket sees what the agent's sees), paired in order into pauses.
 *
 * In COLO each checkpoint is a STOP then a RESUME (facts §3); a pause is measured from QEMU's own
 * stamps, in integer microseconds (exact: no float in the ground truth). Start the log inside COLO
 * (after the colo-start) and every pair it sees is a checkpoint.
 */
import type { QmpClient, QmpEvent, QmpTimestamp } from '../../src/qmp/index.js';

export interface QemuPause {
  /** QEMU's stamps, epoch ms. */
  stopAt: number;
  resumeAt: number;
  /** RESUME minus STOP from the stamps, exact. */
  pauseUs: number;
}

const micros = (ts: QmpTimestamp): number => ts.seconds * 1_000_000 + ts.microseconds;

export class QemuCheckpointLog {
  readonly events: QmpEvent[] = [];
  private readonly onEvent = (e: QmpEvent): void => {
    if (e.event === 'STOP' || e.event === 'RESUME') this.events.push(e);
  };

  constructor(private readonly client: QmpClient) {
    client.on('event', this.onEvent);
  }

  close(): void {
    this.client.off('event', this.onEvent);
  }

  /** The STOP/RESUME pairs so far, in order, and whatever broke the alternation (empty when none). */
  pauses(): { pauses: QemuPause[]; odd: string[] } {
    const pauses: QemuPause[] = [];
    const odd: string[] = [];
    let stop: QmpEvent | undefined;
    for (const e of this.events) {
      if (e.event === 'STOP') {
        if (stop) odd.push(`STOP at ${stop.timestampMs} followed by another STOP at ${e.timestampMs}`);
        stop = e;
      } else if (!stop) {
        odd.push(`RESUME at ${e.timestampMs} without a STOP before it`);
      } else {
        pauses.push({ stopAt: stop.timestampMs, resumeAt: e.timestampMs, pauseUs: micros(e.timestamp) - micros(stop.timestamp) });
        stop = undefined;
      }
    }
    return { pauses, odd };
  }

  /** A checkpoint has begun (STOP) and not ended (no RESUME yet). */
  get stopped(): boolean {
    return this.events.at(-1)?.event === 'STOP';
  }

  /** Our monotonic arrival time of the last event, undefined before any. */
  get lastReceivedAt(): number | undefined {
    return this.events.at(-1)?.receivedAt;
  }
}


/**
 * Calls `act` (a SIGSTOP to a QEMU, a host's power loss) synchronously inside the handler of the
 * next STOP event `watched` emits, so that it lands at the start of that checkpoint's pause (our
 * reaction is about a millisecond, a pause tens of ms). Resolves with that STOP; rejects after
 * timeoutMs without one.
 *
 * Which side to watch (measured on 11.1.3, transcripts monitor-first-checkpoint-*-qemu-11.1.3): the
 * secondary stops first, at the checkpoint request, and the primary ~1 ms later, once the secondary
 * has replied; then the primary sends its state and waits for the secondary to load it. Freezing
 * the secondary at the primary's STOP leaves both stopped until it is thawed; at its own STOP it is
 * frozen before it replies, and the primary keeps running (waiting for the reply, no STOP).
 */
export function atNextStop(watched: QmpClient, act: () => void, timeoutMs: number): Promise<QmpEvent> {
  return new Promise((resolve, reject) => {
    const onEvent = (e: QmpEvent) => {
      if (e.event !== 'STOP') return;
      act();
      done();
      resolve(e);
    };
    const timer = setTimeout(() => {
      done();
      reject(new Error(`no STOP within ${timeoutMs} ms: no checkpoint to act in`));
    }, timeoutMs);
    const done = () => {
      clearTimeout(timer);
      watched.off('event', onEvent);
    };
    watched.on('event', onEvent);
  });
}

/** The pause of `log` that began with the STOP stamped `stop` (undefined while it has not ended). */
export function pauseFrom(log: QemuCheckpointLog, stop: QmpEvent): QemuPause | undefined {
  return log.pauses().pauses.find((p) => p.stopAt === stop.timestampMs);
}
