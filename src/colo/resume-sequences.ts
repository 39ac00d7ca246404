/**
 * The documented resume sequences (COLO-FT.txt "Primary resume replication" / "Secondary resume
 * replication", qemu-colo-facts.md §2) as data, in three parts, plus the new secondary's preparation.
 *
 * - prepare (guest running): drive-mirror of the disk to the new secondary's NBD export, then wait
 *   for BLOCK_JOB_READY (disk in sync; progress from query-block-jobs); then create the replication
 *   node (unattached), x-colo and x-checkpoint-delay.
 * - switchover (guest paused, starts with `stop`): end the mirror (block-job-cancel of a READY
 *   mirror leaves a point-in-time copy and reports BLOCK_JOB_COMPLETED), attach the replication
 *   node, add the COLO proxy objects, migrate, and wait until COLO runs (the migration's
 *   completion resumes the guest itself).
 * - rollback (any failure after `stop` or during prepare; also after an agent restart): undo every
 *   part, each step idempotent, and `cont` the guest, so the primary runs solo as before.
 *
 * Additions to the document, each for a reason:
 * - object-add with flat properties on QEMU >= 6.0 (`props` before), facts §4;
 * - `migrate-set-parameters x-checkpoint-delay` before `migrate` (the agent's colo.checkpointDelayMs;
 *   on 7.2 under TCG a large value keeps the first-checkpoint deadlock away, facts §3);
 * - the wait steps (the document says "wait until disk is synced"), every one with a timeout;
 * - the NBD target and migration go to the PEER's host (core/topology.ts), whichever configured
 *   host that is after the pair's failovers and failbacks;
 * - blockdev-add of an `nbd` node instead of HMP drive_add on profiles with nbdNodeRemoval
 *   'blockdev-del' (the newer upstream docs), mirroring the failover's drive_del/blockdev-del choice;
 * - the replication node is created, and x-colo and the checkpoint delay set, before `stop` (at
 *   the end of prepare), to keep the NBD connect out of the guest's pause; it is attached after.
 *
 * The rollback removes all five proxy objects: the executor checks before it starts that none of
 * them exists (after a primary failover the failover deleted the primary's own; a former secondary
 * never had them), so whatever is there during a rollback was added by the resume. It never
 * touches rew0, the former secondary's filter-rewriter.
 */
import { schemaDefaults } from '../config/schema.js';
import type { ColoConfig, ColoIdsConfig } from '../config/types.js';
import { coloCapabilities, type QemuProfile } from './profile.js';
import type { ResumeTarget } from './resume-already-done.js';
import type { YankTarget } from './yank.js';

/** The drive-mirror job's id (documented: resync). */
export const RESYNC_JOB_ID = 'resync';
/** The netdev the proxy filters attach to (documented hn0): the default when the topology has no `netdev`. */
export const DEFAULT_NETDEV = 'hn0';

export type ResumeSequenceName = 'primary-resume' | 'secondary-resume';
export const RESUME_SEQUENCE_NAMES: readonly ResumeSequenceName[] = ['primary-resume', 'secondary-resume'];
export type ResumePhase = 'prepare' | 'switchover' | 'rollback' | 'secondary-prepare';

export function isResumeSequenceName(name: string): name is ResumeSequenceName {
  return (RESUME_SEQUENCE_NAMES as readonly string[]).includes(name);
}

// ---- step kinds ----

/** One QMP command (as the failover's CommandStep, with the resume targets). */
export interface ResumeCommandStep {
  kind: 'command';
  /** Unique within its part. */
  name: string;
  command: string;
  args?: Record<string, unknown>;
  timeoutMs?: number;
  target?: ResumeTarget;
  /** QEMU says the target is already gone: count the step as done. Default 'fail'. */
  onMissing?: 'done' | 'fail';
  /** QEMU says the target already exists: count the step as done. Default 'fail'. */
  onExists?: 'done' | 'fail';
  /** human-monitor-command: output other than "" / "OK" means HMP failed. */
  hmp?: boolean;
  /** A failure is recorded but does not count against the part. */
  optional?: boolean;
}

/**
 * Until the block job reports BLOCK_JOB_READY (or query-block-jobs says ready). Fails on
 * BLOCK_JOB_ERROR, on the job ending (COMPLETED/CANCELLED) before ready, and on the job vanishing.
 * Progress (offset/len) is read from query-block-jobs every `pollMs`.
 */
export interface WaitJobReadyStep {
  kind: 'wait-job-ready';
  name: string;
  job: string;
  timeoutMs: number;
  pollMs?: number;
  optional?: boolean;
}

/**
 * Until the block job is gone from query-block-jobs. `requireSynced`: it must have ended with
 * BLOCK_JOB_COMPLETED without error (a cancelled READY mirror: the target holds a point-in-time
 * copy); an error or BLOCK_JOB_CANCELLED fails the step. Without it any end is fine (rollback).
 */
export interface WaitJobGoneStep {
  kind: 'wait-job-gone';
  name: string;
  job: string;
  requireSynced: boolean;
  timeoutMs: number;
  optional?: boolean;
}

/**
 * Until query-colo-status says mode primary and query-status says running. Fails when
 * query-migrate says failed/cancelled, when the migration completed without COLO (the
 * 10.0.0-10.0.6 / 10.1.x regression), or on COLO_EXIT.
 */
export interface WaitColoStep {
  kind: 'wait-colo';
  name: string;
  timeoutMs: number;
  optional?: boolean;
}

/** Rollback: yank what leads to the (maybe silently dead) new secondary, so no later step blocks on it. */
export interface ResumeYankStep {
  kind: 'yank';
  name: string;
  targets: YankTarget[];
  /** Also the NBD nodes below the target of these block jobs (the drive-mirror's NBD client). */
  jobTargets: string[];
  timeoutMs?: number;
  optional?: boolean;
}

/** Rollback: migrate_cancel when a migration is in flight, then wait until it is not. Nothing to do otherwise. */
export interface CancelMigrationStep {
  kind: 'cancel-migration';
  name: string;
  timeoutMs: number;
  optional?: boolean;
}

/** Rollback: when COLO already started (mode primary), x-colo-lost-heartbeat and wait for mode none. */
export interface LeaveColoStep {
  kind: 'leave-colo';
  name: string;
  timeoutMs: number;
  optional?: boolean;
}

/** Rollback: `cont` when query-status says the guest is not running, until it runs. */
export interface ContIfPausedStep {
  kind: 'cont-if-paused';
  name: string;
  timeoutMs: number;
  optional?: boolean;
}

export type ResumeStep =
  | ResumeCommandStep
  | WaitJobReadyStep
  | WaitJobGoneStep
  | WaitColoStep
  | ResumeYankStep
  | CancelMigrationStep
  | LeaveColoStep
  | ContIfPausedStep;

export interface DialAddress {
  host: string;
  port: number;
}

export interface ResumeSequence {
  name: ResumeSequenceName;
  /** True for the secondary resume: this primary used to be a secondary, its rew0 is still there. */
  afterSecondaryFailover: boolean;
  roleBefore: 'primary';
  roleAfter: 'primary';
  /** Where the NBD client and the migration dial the new secondary. */
  peer: { nbd: DialAddress; migration: DialAddress };
  prepare: ResumeStep[];
  switchover: ResumeStep[];
  rollback: ResumeStep[];
}

export interface StepList {
  name: 'secondary-prepare';
  steps: ResumeStep[];
}

// ---- topology and options ----

/** The part of the agent's `colo` config the resume uses: all of it (a ColoConfig fits). */
export type ResumeTopology = ColoConfig;
export type ResumeTopologyInput = Partial<Omit<ColoConfig, 'ids'>> & { ids?: Partial<ColoIdsConfig> };

/** Fills what `input` leaves out with the documented names, ports and defaults (the config schema's). */
export function withResumeDefaults(input: ResumeTopologyInput): ResumeTopology {
  const d = schemaDefaults().colo;
  const defined = <T extends object>(o: T): Partial<T> => Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
  const { ids, ...rest } = input;
  return { ...d, ...defined(rest), ids: { ...d.ids, ...defined(ids ?? {}) } };
}

export interface ResumeTimeouts {
  /** drive-mirror until BLOCK_JOB_READY: the whole disk is copied. Default 3600000 (1 h). */
  resyncMs: number;
  /** How often the resync progress is read (query-block-jobs). Default 500. */
  progressPollMs: number;
  /** block-job-cancel until the job is gone. Default 30000. */
  jobEndMs: number;
  /** migrate until COLO runs: the guest's RAM is copied while it is paused. Default 300000. */
  coloMs: number;
  /** Each of the rollback's waits (migration cancelled, COLO left, guest running). Default 30000. */
  rollbackWaitMs: number;
}

export const DEFAULT_RESUME_TIMEOUTS: ResumeTimeouts = {
  resyncMs: 3_600_000,
  progressPollMs: 500,
  jobEndMs: 30_000,
  coloMs: 300_000,
  rollbackWaitMs: 30_000,
};

export interface ResumeOptions {
  /**
   * The new secondary's host: the peer's, from core/topology.ts (resumeTargets). Required: which
   * configured host that is depends on the pair's history, which only the topology knows.
   */
  peerHost: string;
  /** Where the NBD client dials (a proxy in between). Default peerHost:colo.nbdPort. */
  nbd?: DialAddress;
  /** Where the migration dials. Default peerHost:colo.migrationPort. */
  migration?: DialAddress;
  /** The netdev the filters attach to. Default: colo.netdev, else hn0 (DEFAULT_NETDEV). */
  netdev?: string;
  /** drive-mirror `speed` in bytes per second (0 or absent: unlimited), to spare the link and disks. */
  resyncSpeed?: number;
  timeouts?: Partial<ResumeTimeouts>;
}

function hostPort(a: DialAddress): string {
  return a.host.includes(':') ? `[${a.host}]:${a.port}` : `${a.host}:${a.port}`;
}

// ---- builders ----

function cmd(name: string, command: string, args?: Record<string, unknown>, extra: Partial<ResumeCommandStep> = {}): ResumeCommandStep {
  return { kind: 'command', name, command, ...(args !== undefined && { args }), ...extra };
}

/** object-add in the profile's shape: flat properties since 6.0, `props` before. */
export function objectAddArgs(profile: QemuProfile, qomType: string, id: string, props: Record<string, unknown>): Record<string, unknown> {
  if (profile.objectAddFlat) return { 'qom-type': qomType, id, ...props };
  return Object.keys(props).length === 0 ? { 'qom-type': qomType, id } : { 'qom-type': qomType, id, props };
}

/** The documented NBD attach line for the primary (drive_add -n buddy, replication driver, mode primary). */
export function driveAddLine(c: ResumeTopology, nbd: DialAddress): string {
  return (
    'drive_add -n buddy driver=replication,mode=primary,file.driver=nbd,' +
    `file.host=${nbd.host},file.port=${nbd.port},file.export=${c.nbdExport},node-name=${c.replicationNode}`
  );
}

function attachStep(c: ResumeTopology, profile: QemuProfile, nbd: DialAddress): ResumeCommandStep {
  if (profile.nbdNodeRemoval === 'blockdev-del') {
    // Newer upstream docs (docs/system/qemu-colo.rst): a plain NBD node, removed with blockdev-del.
    return cmd('blockdev-add', 'blockdev-add', {
      driver: 'nbd',
      'node-name': c.replicationNode,
      server: { type: 'inet', host: nbd.host, port: String(nbd.port) },
      export: c.nbdExport,
      'detect-zeroes': 'on',
    });
  }
  return cmd('drive_add', 'human-monitor-command', { 'command-line': driveAddLine(c, nbd) }, { hmp: true });
}

function detachSteps(c: ResumeTopology, profile: QemuProfile): ResumeCommandStep[] {
  const remove: ResumeCommandStep =
    profile.nbdNodeRemoval === 'blockdev-del'
      ? cmd('blockdev-del', 'blockdev-del', { 'node-name': c.replicationNode }, { target: { kind: 'block-node', id: c.replicationNode }, onMissing: 'done' })
      : cmd('drive_del', 'human-monitor-command', { 'command-line': `drive_del ${c.replicationNode}` }, {
          hmp: true,
          target: { kind: 'hmp-drive', id: c.replicationNode },
          onMissing: 'done',
        });
  return [
    cmd('x-blockdev-change', 'x-blockdev-change', { parent: c.disk, child: c.quorumChild }, {
      target: { kind: 'quorum-child', parent: c.disk, child: c.quorumChild },
      onMissing: 'done',
    }),
    remove,
  ];
}

/** The five proxy objects in the order the document adds them. */
function proxyObjects(c: ResumeTopology, netdev: string, beforeRewriter: boolean): Array<{ qomType: string; id: string; props: Record<string, unknown> }> {
  const { ids } = c;
  // The former secondary's filter-rewriter must stay last on the netdev: the primary's filters go before it.
  const at = beforeRewriter ? { insert: 'before', position: `id=${ids.rew0}` } : {};
  return [
    { qomType: 'filter-mirror', id: ids.m0, props: { ...at, netdev, queue: 'tx', outdev: ids.mirror0 } },
    { qomType: 'filter-redirector', id: ids.redire0, props: { ...at, netdev, queue: 'rx', indev: ids.compare_out } },
    { qomType: 'filter-redirector', id: ids.redire1, props: { ...at, netdev, queue: 'rx', outdev: ids.compare0 } },
    { qomType: 'iothread', id: ids.iothread1, props: {} },
    {
      qomType: 'colo-compare',
      id: ids.comp0,
      props: { primary_in: ids.compare0_0, secondary_in: ids.compare1, outdev: ids.compare_out0, iothread: ids.iothread1 },
    },
  ];
}

/** The ids the rollback deletes (and the executor's pre-check requires absent), in the failover's order. */
export function resumeProxyIds(colo: ResumeTopologyInput): string[] {
  const { ids } = withResumeDefaults(colo);
  return [ids.comp0, ids.iothread1, ids.m0, ids.redire0, ids.redire1];
}

/**
 * The rollback: the same for both resume sequences (it depends on neither the peer nor the
 * filters' position), so an agent restarted mid-resume can run it from the journal's name alone.
 */
export function resumeRollback(colo: ResumeTopologyInput, profile: QemuProfile, opts: Pick<ResumeOptions, 'timeouts'> = {}): ResumeStep[] {
  const c = withResumeDefaults(colo);
  const t = { ...DEFAULT_RESUME_TIMEOUTS, ...opts.timeouts };
  const steps: ResumeStep[] = [];
  if (profile.yank) {
    steps.push({
      kind: 'yank',
      name: 'yank',
      targets: [{ type: 'migration' }, { type: 'block-node', under: c.replicationNode }],
      jobTargets: [RESYNC_JOB_ID],
      optional: true,
    });
  }
  steps.push({ kind: 'cancel-migration', name: 'cancel-migration', timeoutMs: t.rollbackWaitMs });
  steps.push(
    cmd('block-job-cancel', 'block-job-cancel', { device: RESYNC_JOB_ID, force: true }, { target: { kind: 'block-job', id: RESYNC_JOB_ID }, onMissing: 'done' }),
    { kind: 'wait-job-gone', name: `wait-job-gone ${RESYNC_JOB_ID}`, job: RESYNC_JOB_ID, requireSynced: false, timeoutMs: t.jobEndMs },
  );
  steps.push(...detachSteps(c, profile));
  for (const id of resumeProxyIds(c)) steps.push(cmd(`object-del ${id}`, 'object-del', { id }, { target: { kind: 'object', id }, onMissing: 'done' }));
  steps.push({ kind: 'leave-colo', name: 'leave-colo', timeoutMs: t.rollbackWaitMs });
  steps.push({ kind: 'cont-if-paused', name: 'cont-if-paused', timeoutMs: t.rollbackWaitMs });
  return steps;
}

/**
 * The resume sequence on the current primary. `afterSecondaryFailover` false: "Primary resume
 * replication" (after a primary failover). true: "Secondary resume replication" (this primary was
 * the secondary; filters inserted before rew0). Either way the new secondary is on the peer's host
 * (opts.peerHost), whichever configured host that is after the pair's failovers.
 */
export function resumeSequence(colo: ResumeTopologyInput, profile: QemuProfile, afterSecondaryFailover: boolean, opts: ResumeOptions): ResumeSequence {
  const c = withResumeDefaults(colo);
  const t = { ...DEFAULT_RESUME_TIMEOUTS, ...opts.timeouts };
  // colo.netdev when the agent's config carries it (documented hn0), else the documented name.
  const netdev = opts.netdev ?? c.netdev ?? DEFAULT_NETDEV;
  const peerHost = opts.peerHost;
  const nbd = opts.nbd ?? { host: peerHost, port: c.nbdPort };
  const migration = opts.migration ?? { host: peerHost, port: c.migrationPort };

  const mirrorArgs: Record<string, unknown> = {
    device: c.disk,
    'job-id': RESYNC_JOB_ID,
    target: `nbd://${hostPort(nbd)}/${c.nbdExport}`,
    mode: 'existing',
    format: 'raw',
    sync: 'full',
  };
  if (opts.resyncSpeed !== undefined && opts.resyncSpeed > 0) mirrorArgs.speed = opts.resyncSpeed;
  const prepare: ResumeStep[] = [
    cmd('drive-mirror', 'drive-mirror', mirrorArgs),
    { kind: 'wait-job-ready', name: `wait-job-ready ${RESYNC_JOB_ID}`, job: RESYNC_JOB_ID, timeoutMs: t.resyncMs, pollMs: t.progressPollMs },
    // Before `stop`, unlike the document: creating the replication node opens its NBD connection
    // (about 90 ms here), which would otherwise count in the guest's pause. The node stays
    // unattached (x-blockdev-change after `stop` attaches it, as documented), so the running guest
    // writes nothing through it; the rollback removes it like any other part. Setting the
    // migration capability and parameter touches nothing the guest uses either.
    attachStep(c, profile, nbd),
    cmd('migrate-set-capabilities', 'migrate-set-capabilities', coloCapabilities(profile)),
    cmd('migrate-set-parameters', 'migrate-set-parameters', { 'x-checkpoint-delay': c.checkpointDelayMs }),
  ];

  const switchover: ResumeStep[] = [
    cmd('stop', 'stop'),
    // On a READY mirror this ends the job without pivoting: the target keeps a point-in-time copy.
    cmd('block-job-cancel', 'block-job-cancel', { device: RESYNC_JOB_ID }),
    { kind: 'wait-job-gone', name: `wait-job-gone ${RESYNC_JOB_ID}`, job: RESYNC_JOB_ID, requireSynced: true, timeoutMs: t.jobEndMs },
    cmd('x-blockdev-change', 'x-blockdev-change', { parent: c.disk, node: c.replicationNode }),
    ...proxyObjects(c, netdev, afterSecondaryFailover).map((o) => cmd(`object-add ${o.id}`, 'object-add', objectAddArgs(profile, o.qomType, o.id, o.props))),
    cmd('migrate', 'migrate', { uri: `tcp:${hostPort(migration)}` }),
    { kind: 'wait-colo', name: 'wait-colo', timeoutMs: t.coloMs },
  ];

  return {
    name: afterSecondaryFailover ? 'secondary-resume' : 'primary-resume',
    afterSecondaryFailover,
    roleBefore: 'primary',
    roleAfter: 'primary',
    peer: { nbd, migration },
    prepare,
    switchover,
    rollback: resumeRollback(c, profile, opts),
  };
}

/** "Primary resume replication": after a primary failover (this primary's QEMU was the primary before). */
export function primaryResume(colo: ResumeTopologyInput, profile: QemuProfile, opts: ResumeOptions): ResumeSequence {
  return resumeSequence(colo, profile, false, opts);
}

/** "Secondary resume replication": after a secondary failover (this primary was the secondary); filters before rew0. */
export function secondaryResume(colo: ResumeTopologyInput, profile: QemuProfile, opts: ResumeOptions): ResumeSequence {
  return resumeSequence(colo, profile, true, opts);
}

/** The sequence by name. */
export function resumeSequenceByName(name: ResumeSequenceName, colo: ResumeTopologyInput, profile: QemuProfile, opts: ResumeOptions): ResumeSequence {
  return resumeSequence(colo, profile, name === 'secondary-resume', opts);
}

export interface SecondaryPrepareOptions {
  /** The address the NBD server listens on: the new secondary's own host (documented 0.0.0.0). */
  ownHost: string;
}

/**
 * On the NEW secondary, before the primary's resume (document steps 2-3): x-colo (QEMU >= 8.1,
 * else the incoming migration fails on ENABLE_COLO), nbd-server-start on ownHost:nbdPort,
 * nbd-server-add of the export, writable. Idempotent: a running server or a present export counts as done.
 */
export function secondaryPrepare(colo: ResumeTopologyInput, profile: QemuProfile, opts: SecondaryPrepareOptions): StepList {
  const c = withResumeDefaults(colo);
  const steps: ResumeStep[] = [];
  if (profile.secondaryNeedsXColo) steps.push(cmd('migrate-set-capabilities', 'migrate-set-capabilities', coloCapabilities(profile)));
  steps.push(
    cmd('nbd-server-start', 'nbd-server-start', { addr: { type: 'inet', data: { host: opts.ownHost, port: String(c.nbdPort) } } }, {
      target: { kind: 'nbd-server' },
      onExists: 'done',
    }),
    cmd('nbd-server-add', 'nbd-server-add', { device: c.nbdExport, writable: true }, { target: { kind: 'nbd-export', id: c.nbdExport }, onExists: 'done' }),
  );
  return { name: 'secondary-prepare', steps };
}
