/**
 * The documented COLO topology as data (command lines, drive_add, per-version decisions) lives in
 * src/qemu/colo-cmdline.ts, shared with the demo and the agent's launcher; re-exported for tests.
 * Also here: what the tests know of a version's checkpoints under TCG (measured, not a rule the
 * agent applies).
 */
import { coloSupport, type ColoSupport } from '../../src/qemu/colo-cmdline.js';
import { qemuVersionAtLeast, type QemuVersion } from '../../src/qmp/version.js';

export * from '../../src/qemu/colo-cmdline.js';

/**
 * Whether this QEMU can run COLO here and completes its checkpoints under TCG (the tests never use
 * KVM), as measured on these machines (qemu-colo-facts.md §4c): 7.2.22 and 10.0.13 hang the primary
 * at the end of its first checkpoint, 11.1.2 and 11.1.3 complete every one. Releases in between
 * were not measured and count as hanging. The reason is fit for a skip.
 */
export function checkpointSupport(v: Pick<QemuVersion, 'major' | 'minor' | 'micro'>): ColoSupport {
  const colo = coloSupport(v);
  if (!colo.ok) return colo;
  if (qemuVersionAtLeast({ ...v, package: '' }, 11, 1)) return { ok: true };
  return {
    ok: false,
    reason:
      `QEMU ${v.major}.${v.minor}.${v.micro} under TCG hangs the COLO primary at the end of its first checkpoint ` +
      '(measured on 7.2.22 and 10.0.13; 11.1 completes them): run it on 11.1 with npm run test:qemu-11',
  };
}
