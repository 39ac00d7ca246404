/**
 * Starting real QEMU processes for integration and e2e tests: src/qemu/qemu-process.ts (see there
 * for the command line and the readiness check) plus the tests' safety net.
 *
 * No QEMU outlives its test: pass `t` to stop it at teardown; every QEMU is also in the starter's
 * process-wide registry, which SIGKILLs leftovers when the test process exits or is signalled,
 * and in the reaper (reaper.ts), which kills them even when the test process is SIGKILLed.
 */
import {
  killAllQemusNow,
  qemuAvailable as coreQemuAvailable,
  startQemu as coreStartQemu,
  type QemuAvailability,
  type QemuLifecycleHooks,
  type RunningQemu,
  type StartQemuOptions as CoreStartQemuOptions,
} from '../../src/qemu/qemu-process.js';
import { onProcessEnd } from './exit-hooks.js';
import { reapOnDeath, release } from './reaper.js';
import type { Teardownable } from './short-temp-dir.js';

export { QEMU_INSTALL_HINT, killAllQemusNow, type QemuAvailability, type QemuExit, type RunningQemu } from '../../src/qemu/qemu-process.js';

/** Override with COLO_TEST_QEMU=/path/to/qemu-system-x86_64. */
export const DEFAULT_QEMU_BINARY = process.env.COLO_TEST_QEMU ?? 'qemu-system-x86_64';

/** The reaper as lifecycle hooks: a QEMU dies with the test process, however that ends. */
export const REAP_WITH_TEST: QemuLifecycleHooks = { spawned: reapOnDeath, exited: release };

/** Whether QEMU can be run here; `reason` is fit for t.skip(). Cached per binary. */
export function qemuAvailable(binary = DEFAULT_QEMU_BINARY): Promise<QemuAvailability> {
  return coreQemuAvailable(binary);
}

export interface StartQemuOptions extends Omit<CoreStartQemuOptions, 'lifecycle'> {
  /** Stop this QEMU at the test's teardown. */
  t?: Teardownable;
}

export async function startQemu(opts: StartQemuOptions = {}): Promise<RunningQemu> {
  onProcessEnd(killAllQemusNow);
  const { t, ...rest } = opts;
  const q = await coreStartQemu({ ...rest, binary: rest.binary ?? DEFAULT_QEMU_BINARY, lifecycle: REAP_WITH_TEST });
  t?.teardown(() => q.stop());
  return q;
}
