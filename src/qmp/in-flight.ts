/**
 * The commands sent on one connection and still owed a reply, keyed by the id we gave them.
 *
 * Commands that timed out move to a bounded "late" list: QEMU still owes their reply, and when it
 * comes it is proof QEMU is alive again, not a protocol error. Only an id we never sent (or one
 * answered twice) is a protocol error. The bound keeps a QEMU that never answers from growing it
 * forever; past it the oldest ids are forgotten, and a reply to one of those is treated as unknown.
 */
import type { TimerHandle } from '../util/clock.js';

export interface PendingCommand {
  readonly id: number;
  readonly command: string;
  readonly oob: boolean;
  /** Clock.now() when it was written. */
  readonly startedAt: number;
  timer: TimerHandle | undefined;
  resolve(value: unknown): void;
  reject(err: Error): void;
}

export interface LateCommand {
  readonly id: number;
  readonly command: string;
  readonly oob: boolean;
  readonly startedAt: number;
}

export class InFlightTable {
  private readonly pending = new Map<number, PendingCommand>();
  private readonly late = new Map<number, LateCommand>();

  constructor(private readonly maxLate = 1024) {}

  add(cmd: PendingCommand): void {
    this.pending.set(cmd.id, cmd);
  }

  /** Removes and returns the command waiting for this id, if any. */
  take(id: number): PendingCommand | undefined {
    const cmd = this.pending.get(id);
    if (cmd) this.pending.delete(id);
    return cmd;
  }

  /** Remember a timed-out command so that its late reply is recognised. */
  rememberLate(cmd: PendingCommand): void {
    this.late.set(cmd.id, { id: cmd.id, command: cmd.command, oob: cmd.oob, startedAt: cmd.startedAt });
    while (this.late.size > this.maxLate) {
      const oldest = this.late.keys().next();
      if (oldest.done) break;
      this.late.delete(oldest.value);
    }
  }

  takeLate(id: number): LateCommand | undefined {
    const cmd = this.late.get(id);
    if (cmd) this.late.delete(id);
    return cmd;
  }

  /** Empties the table (the connection is gone) and returns what was still waiting. */
  drain(): PendingCommand[] {
    const all = [...this.pending.values()];
    this.pending.clear();
    this.late.clear();
    return all;
  }

  get size(): number {
    return this.pending.size;
  }

  get lateSize(): number {
    return this.late.size;
  }
}
