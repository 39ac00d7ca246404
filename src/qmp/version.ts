/**
 * The QEMU version a QMP greeting announces. Behaviour that differs between QEMU releases
 * (see /work/shared/reference/qemu-colo-facts.md §4) is decided from this, never assumed.
 */
export interface QemuVersion {
  major: number;
  minor: number;
  micro: number;
  /** Distribution build string, e.g. "Debian 1:7.2+dfsg-7+deb12u18+b3"; may be empty. */
  package: string;
}

/** Negative, zero or positive, like a sort comparator; `package` is ignored. */
export function compareQemuVersion(a: Pick<QemuVersion, 'major' | 'minor' | 'micro'>, b: Pick<QemuVersion, 'major' | 'minor' | 'micro'>): number {
  return a.major - b.major || a.minor - b.minor || a.micro - b.micro;
}

/** True when `v` is at least major.minor.micro, e.g. qemuVersionAtLeast(v, 8, 1) for the secondary's x-colo need. */
export function qemuVersionAtLeast(v: QemuVersion, major: number, minor = 0, micro = 0): boolean {
  return compareQemuVersion(v, { major, minor, micro }) >= 0;
}

export function formatQemuVersion(v: QemuVersion): string {
  return `${v.major}.${v.minor}.${v.micro}`;
}
