/** Errors of the QEMU supervisor (qemu.launch): the agent starting its own secondary QEMU. */
import { ColoAgentError } from '../errors.js';

/** The supervisor's options are unusable (empty command, relative state directory, bad numbers). */
export class QemuSupervisorOptionsError extends ColoAgentError {
  constructor(message: string) {
    super('QEMU_SUPERVISOR_OPTIONS', message);
  }
}

/** The QEMU command could not be started at all (no such program, not executable, fork failed). */
export class QemuLaunchError extends ColoAgentError {
  constructor(message: string, opts: { cause?: unknown } = {}) {
    super('QEMU_LAUNCH_FAILED', message, opts);
  }
}
