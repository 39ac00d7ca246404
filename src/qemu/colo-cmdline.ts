/**
 * The documented COLO topology (qemu-colo-facts.md §1, COLO-FT.txt "Startup qemu") as data:
 * option resolution with the documented names, the two QEMU command lines, the primary's
 * drive_add line, and the per-version decisions (§4). Pure functions, no processes: colo-launch.ts
 * runs them. Deviations from the document, each for a reason:
 * - `-accel tcg -display none -nodefaults` (no /dev/kvm here) and a NIC without option ROM
 *   (`romfile=`) with `-netdev user`, so no guest traffic reaches colo-compare (facts §3).
 * - compare1 is `wait=off` instead of the document's `server,wait`: with `wait` the primary blocks
 *   in chardev setup (no QMP) until the secondary's red1 connects, which forces both to start at
 *   once and costs the secondary a 1 s reconnect round when it is first.
 * - The chardev servers mirror0/compare1 and the secondary's listeners bind the side's own host,
 *   not 0.0.0.0 (unless `listenAll`), so pairs running in parallel on one machine never collide.
 * - The dialling side may reach a listener at another address (`dial`): something in between, a
 *   fault proxy or a NAT, forwards it. By default every connection goes to the listener itself.
 */
import { schemaDefaults } from '../config/schema.js';
import type { ColoConfig, ColoIdsConfig } from '../config/types.js';
import { profileForVersion } from '../colo/profile.js';
import { qemuVersionAtLeast, type QemuVersion } from '../qmp/version.js';

/** The documented topology: the config schema's defaults (written down once, in src/config/schema.ts). */
export const DOCUMENTED_COLO: ColoConfig = schemaDefaults().colo;

/** The port keys of ColoConfig; every one is picked free per pair unless given. */
export const COLO_PORT_KEYS = ['nbdPort', 'migrationPort', 'mirrorPort', 'compare1Port', 'compare0Port', 'compareOutPort'] as const;
export type ColoPortKey = (typeof COLO_PORT_KEYS)[number];
export type ColoPorts = Pick<ColoConfig, ColoPortKey>;

/** What a caller may override: any key of the agent's `colo` config section, ids one by one. */
export type ColoOverrides = Partial<Omit<ColoConfig, 'ids'>> & { ids?: Partial<ColoIdsConfig> };

/** Names the topology needs that the agent's config does not carry (the agent never touches them). */
export interface ColoHarnessNames {
  /** The secondary's replication drive (documented: childs0). */
  secondaryChild: string;
  /** The netdev both NICs use and the filters attach to (documented: hn0). */
  netdev: string;
  /** The NIC device id (documented: e0). */
  nic: string;
}

export const DOCUMENTED_HARNESS_NAMES: ColoHarnessNames = { secondaryChild: 'childs0', netdev: 'hn0', nic: 'e0' };

/** The launcher runs TCG with tiny guests; a large delay keeps QEMU 7.2's first-checkpoint deadlock away. */
export const HARNESS_CHECKPOINT_DELAY_MS = 600_000;

/** Documented values, then the launcher's default checkpoint delay, then `overrides`; ports from `ports`. */
export function resolveColoConfig(overrides: ColoOverrides, ports: ColoPorts): ColoConfig {
  const { ids, ...rest } = overrides;
  return {
    ...DOCUMENTED_COLO,
    checkpointDelayMs: HARNESS_CHECKPOINT_DELAY_MS,
    ...stripUndefined(rest),
    ...ports,
    ids: { ...DOCUMENTED_COLO.ids, ...stripUndefined(ids ?? {}) },
  };
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

// ---- per-version decisions (facts §4) ----

export type ColoSupport = { ok: true } | { ok: false; reason: string };

/**
 * Whether this QEMU can run the documented COLO pair at all. 10.0.0-10.0.6 and 10.1.x finish a
 * plain migration on the primary instead of entering COLO (fixed in 10.0.7).
 */
export function coloSupport(v: Pick<QemuVersion, 'major' | 'minor' | 'micro'>): ColoSupport {
  const text = `${v.major}.${v.minor}.${v.micro}`;
  if (!qemuVersionAtLeast({ ...v, package: '' }, 6, 0)) {
    return { ok: false, reason: `QEMU ${text} is older than 6.0 (no yank, no server=on syntax); the COLO harness needs 6.0 or newer` };
  }
  if ((v.major === 10 && v.minor === 0 && v.micro <= 6) || (v.major === 10 && v.minor === 1)) {
    return {
      ok: false,
      reason:
        `QEMU ${text} has the COLO regression of 10.0.0-10.0.6 and 10.1.x: the primary finishes a plain migration ` +
        'instead of entering COLO (fixed in 10.0.7); install 7.2 (Debian 12 main) or >= 10.0.7',
    };
  }
  return { ok: true };
}

/** Since 8.1 the incoming side must enable x-colo itself, or the migration fails on ENABLE_COLO (the profile's rule). */
export function secondaryNeedsXColo(v: QemuVersion): boolean {
  return profileForVersion(v).secondaryNeedsXColo;
}

/** Chardev client reconnect option: `reconnect` (seconds) until 9.1, `reconnect-ms` since 9.2 (the profile's rule). */
export function chardevReconnectOption(v: QemuVersion, seconds: number): string {
  return profileForVersion(v).chardevReconnectKey === 'reconnect-ms' ? `reconnect-ms=${seconds * 1000}` : `reconnect=${seconds}`;
}

// ---- command lines ----

/** QEMU's option syntax doubles a comma inside a value. */
export function qemuOptValue(s: string): string {
  return s.replaceAll(',', ',,');
}

export interface PrimaryFiles {
  /** The primary's disk image (documented: primary.qcow2). */
  disk: string;
}

export interface SecondaryFiles {
  /** The secondary's copy of the primary's disk, exported as parent0. */
  disk: string;
  active: string;
  hidden: string;
}

/** Where a connection across the sides is dialled: a host and a port. */
export interface DialAddress {
  host: string;
  port: number;
}

/**
 * The four connections one side dials to the other: the secondary's red0 (to the primary's
 * mirror0) and red1 (to compare1), the primary's NBD client (to the secondary's export) and its
 * migration (to the secondary's -incoming). Each defaults to the listener's own address.
 */
export interface ColoDialRoutes {
  mirror: DialAddress;
  compare1: DialAddress;
  nbd: DialAddress;
  migration: DialAddress;
}

/** The listeners themselves: what every connection dials when nothing stands in between. */
export function directRoutes(colo: ColoConfig): ColoDialRoutes {
  return {
    mirror: { host: colo.primaryHost, port: colo.mirrorPort },
    compare1: { host: colo.primaryHost, port: colo.compare1Port },
    nbd: { host: colo.secondaryHost, port: colo.nbdPort },
    migration: { host: colo.secondaryHost, port: colo.migrationPort },
  };
}

export interface CmdlineOptions {
  colo: ColoConfig;
  names: ColoHarnessNames;
  /** Bind mirror0/compare1 (primary) and the migration listener (secondary) to 0.0.0.0 as documented. */
  listenAll: boolean;
  /** Where the secondary's red0/red1 connect. Default: the primary's listeners (directRoutes). */
  dial?: Partial<ColoDialRoutes>;
}

/** `host:port` for a URI or an option value (IPv6 in brackets). */
export function dialHostPort(a: DialAddress): string {
  return a.host.includes(':') ? `[${a.host}]:${a.port}` : `${a.host}:${a.port}`;
}

function bindHost(o: CmdlineOptions, own: string): string {
  return o.listenAll ? '0.0.0.0' : own;
}

/** The primary's topology arguments (everything but accel, display, memory, name and QMP). */
export function primaryArgs(o: CmdlineOptions, files: PrimaryFiles): string[] {
  const { colo, names } = o;
  const { ids } = colo;
  const pub = bindHost(o, colo.primaryHost);
  // The local compare pairs loop back on the primary itself (documented 127.0.0.1).
  const local = '127.0.0.1';
  return [
    '-netdev', `user,id=${names.netdev}`,
    '-device', `rtl8139,id=${names.nic},netdev=${names.netdev},romfile=`,
    '-chardev', `socket,id=${ids.mirror0},host=${pub},port=${colo.mirrorPort},server=on,wait=off`,
    '-chardev', `socket,id=${ids.compare1},host=${pub},port=${colo.compare1Port},server=on,wait=off`,
    '-chardev', `socket,id=${ids.compare0},host=${local},port=${colo.compare0Port},server=on,wait=off`,
    '-chardev', `socket,id=${ids.compare0_0},host=${local},port=${colo.compare0Port}`,
    '-chardev', `socket,id=${ids.compare_out},host=${local},port=${colo.compareOutPort},server=on,wait=off`,
    '-chardev', `socket,id=${ids.compare_out0},host=${local},port=${colo.compareOutPort}`,
    '-object', `filter-mirror,id=${ids.m0},netdev=${names.netdev},queue=tx,outdev=${ids.mirror0}`,
    '-object', `filter-redirector,netdev=${names.netdev},id=${ids.redire0},queue=rx,indev=${ids.compare_out}`,
    '-object', `filter-redirector,netdev=${names.netdev},id=${ids.redire1},queue=rx,outdev=${ids.compare0}`,
    '-object', `iothread,id=${ids.iothread1}`,
    '-object',
    `colo-compare,id=${ids.comp0},primary_in=${ids.compare0_0},secondary_in=${ids.compare1},outdev=${ids.compare_out0},iothread=${ids.iothread1}`,
    '-drive',
    `if=ide,id=${colo.disk},driver=quorum,read-pattern=fifo,vote-threshold=1,` +
      `children.0.file.filename=${qemuOptValue(files.disk)},children.0.driver=qcow2`,
  ];
}

/** The secondary's topology arguments, including `-incoming`. */
export function secondaryArgs(o: CmdlineOptions, files: SecondaryFiles, version: QemuVersion): string[] {
  const { colo, names } = o;
  const { ids } = colo;
  const reconnect = chardevReconnectOption(version, 1);
  const { mirror, compare1 } = { ...directRoutes(colo), ...o.dial };
  return [
    '-netdev', `user,id=${names.netdev}`,
    '-device', `rtl8139,id=${names.nic},netdev=${names.netdev},romfile=`,
    '-chardev', `socket,id=${ids.red0},host=${mirror.host},port=${mirror.port},${reconnect}`,
    '-chardev', `socket,id=${ids.red1},host=${compare1.host},port=${compare1.port},${reconnect}`,
    '-object', `filter-redirector,id=${ids.f1},netdev=${names.netdev},queue=tx,indev=${ids.red0}`,
    '-object', `filter-redirector,id=${ids.f2},netdev=${names.netdev},queue=rx,outdev=${ids.red1}`,
    '-object', `filter-rewriter,id=${ids.rew0},netdev=${names.netdev},queue=all`,
    '-drive', `if=none,id=${colo.nbdExport},file.filename=${qemuOptValue(files.disk)},driver=qcow2`,
    '-drive',
    `if=none,id=${names.secondaryChild},driver=replication,mode=secondary,file.driver=qcow2,` +
      `top-id=${colo.disk},file.file.filename=${qemuOptValue(files.active)},` +
      `file.backing.driver=qcow2,file.backing.file.filename=${qemuOptValue(files.hidden)},` +
      `file.backing.backing=${colo.nbdExport}`,
    '-drive', `if=ide,id=${colo.disk},driver=quorum,read-pattern=fifo,vote-threshold=1,children.0=${names.secondaryChild}`,
    '-incoming', `tcp:${bindHost(o, colo.secondaryHost)}:${colo.migrationPort}`,
  ];
}

/** The primary's documented `drive_add` (sent through human-monitor-command); `nbd` is where it dials. */
export function primaryDriveAddLine(colo: ColoConfig, nbd: DialAddress = directRoutes(colo).nbd): string {
  return (
    'drive_add -n buddy driver=replication,mode=primary,file.driver=nbd,' +
    `file.host=${nbd.host},file.port=${nbd.port},file.export=${colo.nbdExport},node-name=${colo.replicationNode}`
  );
}

/** The primary's `migrate` URI; `migration` is where it dials. */
export function migrateUri(colo: ColoConfig, migration: DialAddress = directRoutes(colo).migration): string {
  return `tcp:${dialHostPort(migration)}`;
}
