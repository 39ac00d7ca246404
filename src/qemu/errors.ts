/** Errors of the QEMU launcher (src/qemu): starting QEMU processes and bringing up a COLO pair. */
import { ColoAgentError } from '../errors.js';

/** A QEMU process did not start, or did not become ready on its QMP sockets. */
export class QemuStartError extends ColoAgentError {
  constructor(message: string, opts: { cause?: unknown } = {}) {
    super('QEMU_START_FAILED', message, opts);
  }
}

/** Bring-up of a COLO pair failed for a reason other than "this QEMU cannot do COLO". */
export class ColoPairStartError extends ColoAgentError {
  /** The bring-up step that failed, e.g. "primary: migrate" or "wait for COLO". */
  readonly step: string;
  /** A port was taken between picking it and QEMU binding it (auto ports are then retried). */
  readonly addressInUse: boolean;
  /** The QEMUs it had started (all killed by now) and the dirs it had made (all removed). */
  readonly pids: number[];
  readonly dirs: string[];

  constructor(
    step: string,
    message: string,
    diagnostics: string,
    opts: { cause?: unknown; addressInUse?: boolean; pids?: number[]; dirs?: string[] } = {},
  ) {
    super('COLO_PAIR_START_FAILED', `COLO pair bring-up failed at "${step}": ${message}\n${diagnostics}`, { cause: opts.cause });
    this.step = step;
    this.addressInUse = opts.addressInUse ?? false;
    this.pids = opts.pids ?? [];
    this.dirs = opts.dirs ?? [];
  }
}
