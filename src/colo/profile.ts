/**
 * QEMU profile: the documented differences between QEMU releases that change what the agent sends
 * (qemu-colo-facts.md §4), decided once from a version and then read as plain flags.
 *
 * The version comes from the QMP greeting (`qemu.profile: auto`) or from an explicit config string
 * such as "7.2" or "10.0.7", which wins: an operator may pin the behaviour of a patched or
 * backported build whose version number says otherwise. A missing micro counts as 0, so "10.0"
 * means 10.0.0 (which has the primary regression); write "10.0.7" for the fixed release.
 * Pure: no I/O, no clock.
 */
import { ColoProfileError } from './errors.js';

export interface VersionTriple {
  major: number;
  minor: number;
  micro: number;
}

/** How primary failover removes the replication/NBD node after detaching it from the quorum. */
export type NbdNodeRemoval = 'drive_del' | 'blockdev-del';

export interface QemuProfile {
  version: VersionTriple;
  /** Where `version` came from. */
  /** Where the version came from: QEMU's QMP greeting, the config, or the installed binary's --version (plan). */
  source: 'greeting' | 'config' | 'installed';
  /** False when the config string had no micro (taken as 0). */
  microKnown: boolean;
  /** The greeting's version when the config pinned another one (worth a warning), else undefined. */
  reportedVersion: VersionTriple | undefined;
  /** 6.0: `query-yank` / `yank` (allow-oob) exist; failover yanks the dead peer's sockets first. */
  yank: boolean;
  /** 6.0: `object-add` takes flat properties; before, they sat under `props` (2019 resume steps). */
  objectAddFlat: boolean;
  /** 8.1: the secondary must enable migration capability x-colo too, or ENABLE_COLO fails the migration. */
  secondaryNeedsXColo: boolean;
  /**
   * 11.0: `x-colo` is refused ("Capability 'x-colo' requires capability 'return-path'") unless
   * `return-path` is set in the same call, on both sides (measured on 11.1.3; 10.0.13 takes x-colo alone).
   */
  xColoNeedsReturnPath: boolean;
  /** 9.2: the socket chardev option `reconnect` (seconds) became `reconnect-ms` (milliseconds). */
  chardevReconnectKey: 'reconnect' | 'reconnect-ms';
  /**
   * drive_del (human-monitor-command, the 2019 documented sequence) or blockdev-del. This follows how
   * the node was attached, not the version: every release so far keeps HMP drive_del, and for a node
   * added with `drive_add -n` it is the same as blockdev-del (hmp_drive_del falls back to
   * qmp_blockdev_del for a node name; both checked on QEMU 7.2). Newer upstream docs attach the NBD
   * node with blockdev-add and remove it with blockdev-del; such deployments pass
   * `{ nbdNodeRemoval: 'blockdev-del' }`.
   */
  nbdNodeRemoval: NbdNodeRemoval;
  /**
   * 10.0.0-10.0.6 and 10.1.x: the primary finishes a plain migration instead of entering COLO
   * (fixed in 10.0.7). Replication cannot work on such a primary; the agent should say so loudly.
   */
  primaryColoRegression: boolean;
}

export interface ProfileOverrides {
  nbdNodeRemoval?: NbdNodeRemoval;
}

const VERSION_SPEC = /^(\d{1,3})\.(\d{1,3})(?:\.(\d{1,4}))?$/;

/** Parses `auto` or MAJOR.MINOR[.MICRO]; throws ColoProfileError otherwise. */
export function parseProfileSpec(spec: string): 'auto' | { version: VersionTriple; microKnown: boolean } {
  if (spec === 'auto') return 'auto';
  const m = typeof spec === 'string' ? VERSION_SPEC.exec(spec.trim()) : null;
  if (!m) throw new ColoProfileError(`QEMU profile ${JSON.stringify(spec)} is neither "auto" nor a version MAJOR.MINOR[.MICRO] such as "7.2" or "10.0.7"`);
  return {
    version: { major: Number(m[1]), minor: Number(m[2]), micro: m[3] === undefined ? 0 : Number(m[3]) },
    microKnown: m[3] !== undefined,
  };
}

function atLeast(v: VersionTriple, major: number, minor: number, micro = 0): boolean {
  return (v.major - major || v.minor - minor || v.micro - micro) >= 0;
}

/** The flags for one version. */
export function profileForVersion(
  version: VersionTriple,
  source: QemuProfile['source'] = 'greeting',
  overrides: ProfileOverrides = {},
  microKnown = true,
): QemuProfile {
  const v = { major: version.major, minor: version.minor, micro: version.micro };
  return {
    version: v,
    source,
    microKnown,
    reportedVersion: undefined,
    yank: atLeast(v, 6, 0),
    objectAddFlat: atLeast(v, 6, 0),
    secondaryNeedsXColo: atLeast(v, 8, 1),
    xColoNeedsReturnPath: atLeast(v, 11, 0),
    chardevReconnectKey: atLeast(v, 9, 2) ? 'reconnect-ms' : 'reconnect',
    nbdNodeRemoval: overrides.nbdNodeRemoval ?? 'drive_del',
    primaryColoRegression: (v.major === 10 && v.minor === 0 && v.micro <= 6) || (v.major === 10 && v.minor === 1),
  };
}

/** The arguments of `migrate-set-capabilities` that enable COLO on either side: x-colo, with return-path where required. */
export function coloCapabilities(p: Pick<QemuProfile, 'xColoNeedsReturnPath'>): { capabilities: Array<{ capability: string; state: boolean }> } {
  const caps = [{ capability: 'x-colo', state: true }];
  if (p.xColoNeedsReturnPath) caps.unshift({ capability: 'return-path', state: true });
  return { capabilities: caps };
}

/**
 * `spec` is the `qemu.profile` config value; `greeting` the version from the QMP greeting (the
 * client's `version`), undefined when not connected yet. `auto` without a greeting is an error:
 * the caller must connect first rather than guess.
 */
export function resolveQemuProfile(
  spec: string,
  greeting: (VersionTriple & { package?: string }) | undefined,
  overrides: ProfileOverrides = {},
): QemuProfile {
  const parsed = parseProfileSpec(spec);
  if (parsed === 'auto') {
    if (!greeting) throw new ColoProfileError('QEMU profile "auto" needs the version from the QMP greeting, and QEMU has not greeted yet');
    return profileForVersion(greeting, 'greeting', overrides);
  }
  const profile = profileForVersion(parsed.version, 'config', overrides, parsed.microKnown);
  if (greeting && !sameVersion(greeting, parsed.version, parsed.microKnown)) {
    profile.reportedVersion = { major: greeting.major, minor: greeting.minor, micro: greeting.micro };
  }
  return profile;
}

function sameVersion(a: VersionTriple, b: VersionTriple, compareMicro: boolean): boolean {
  return a.major === b.major && a.minor === b.minor && (!compareMicro || a.micro === b.micro);
}

/** e.g. `7.2.22 (from the QMP greeting)` or `10.0 (from config; QEMU reports 10.0.7)`. */
export function describeProfile(p: QemuProfile): string {
  const v = p.microKnown ? `${p.version.major}.${p.version.minor}.${p.version.micro}` : `${p.version.major}.${p.version.minor}`;
  const from = p.source === 'greeting' ? 'from the QMP greeting' : p.source === 'installed' ? 'of the installed qemu-system-x86_64' : 'from config';
  const r = p.reportedVersion;
  return `${v} (${from}${r ? `; QEMU reports ${r.major}.${r.minor}.${r.micro}` : ''})`;
}
