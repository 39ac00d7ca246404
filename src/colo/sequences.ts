/**
 * The documented failover sequences (COLO-FT.txt "Primary Failover" / "Secondary Failover",
 * qemu-colo-facts.md §2) as data: an ordered list of steps the runner executes one by one.
 * Keeping them as data lets `colo-agent plan` print exactly what would be sent, lets tests compare
 * them with the document, and lets the journal name each step.
 *
 * Every id and port comes from the caller's topology (the agent's `colo` config section), with the
 * documented names as defaults. The only additions to the document:
 * - a first `yank` step (QEMU >= 6.0) that cuts the sockets to the dead peer, so that no later
 *   step blocks on them (facts §4; see yank.ts);
 * - "already done" recognition for the steps that remove or create something (already-done.ts),
 *   so that a run resumed after an agent crash steps over its own earlier work.
 */
import type { StepTarget } from './already-done.js';
import type { QemuProfile } from './profile.js';
import type { YankTarget } from './yank.js';
import { schemaDefaults } from '../config/schema.js';
import type { ColoIdsConfig } from '../config/types.js';

export type SequenceName = 'primary-failover' | 'secondary-failover';
export const SEQUENCE_NAMES: readonly SequenceName[] = ['primary-failover', 'secondary-failover'];

export interface CommandStep {
  kind: 'command';
  /** Unique within its sequence; the journal records completed steps by this name. */
  name: string;
  command: string;
  args?: Record<string, unknown>;
  /** Overrides the runner's step timeout. */
  timeoutMs?: number;
  /** Send with exec-oob (only when the session negotiated oob). */
  oob?: boolean;
  /** What the step removes or creates, for recognising QEMU's "already done" errors. */
  target?: StepTarget;
  /** QEMU says the target is already gone: 'done' counts the step as done. Default 'fail'. */
  onMissing?: 'done' | 'fail';
  /** QEMU says the target already exists (chardev-add): 'done' counts the step as done. Default 'fail'. */
  onExists?: 'done' | 'fail';
  /** human-monitor-command: QEMU returns HMP's output as the result; any output means HMP failed. */
  hmp?: boolean;
  /** A failure is recorded but does not stop the sequence. Default false (required). */
  optional?: boolean;
}

/** Resolved at run time: query-yank, the block graph if needed, then one (oob) yank. */
export interface YankStep {
  kind: 'yank';
  name: string;
  targets: YankTarget[];
  timeoutMs?: number;
  optional?: boolean;
}

export type Step = CommandStep | YankStep;

export interface Sequence {
  name: SequenceName;
  /** The node's role before the failover, and after it succeeded. */
  roleBefore: 'primary' | 'secondary';
  roleAfter: 'primary';
  steps: Step[];
}

/** The ids of the documented COLO proxy (keys as in the agent's colo.ids config). */
export type ColoIds = ColoIdsConfig;

/** The part of the agent's `colo` config the failover sequences use (a ColoConfig fits). */
export interface ColoTopology {
  disk: string;
  replicationNode: string;
  quorumChild: string;
  mirrorPort: number;
  compare1Port: number;
  compare0Port: number;
  compareOutPort: number;
  ids: ColoIds;
}

export type ColoTopologyInput = Partial<Omit<ColoTopology, 'ids'>> & { ids?: Partial<ColoIds> };

/** The documented names and ports: the config schema's defaults. */
export const DOCUMENTED_TOPOLOGY: ColoTopology = schemaDefaults().colo;

/** Fills what `input` leaves out with the documented names and ports. */
export function withDocumentedDefaults(input: ColoTopologyInput): ColoTopology {
  const pick = <T>(v: T | undefined, d: T): T => (v === undefined ? d : v);
  const d = DOCUMENTED_TOPOLOGY;
  const ids = { ...d.ids };
  for (const key of Object.keys(ids) as Array<keyof ColoIds>) ids[key] = pick(input.ids?.[key], d.ids[key]);
  return {
    disk: pick(input.disk, d.disk),
    replicationNode: pick(input.replicationNode, d.replicationNode),
    quorumChild: pick(input.quorumChild, d.quorumChild),
    mirrorPort: pick(input.mirrorPort, d.mirrorPort),
    compare1Port: pick(input.compare1Port, d.compare1Port),
    compare0Port: pick(input.compare0Port, d.compare0Port),
    compareOutPort: pick(input.compareOutPort, d.compareOutPort),
    ids,
  };
}

export const YANK_STEP_NAME = 'yank';

function yankStep(targets: YankTarget[]): YankStep {
  // Optional: yanking only keeps later steps from blocking on the dead peer. If it fails (an odd
  // QEMU, a race with QEMU removing the instance) the documented steps still have to run.
  return { kind: 'yank', name: YANK_STEP_NAME, targets, optional: true };
}

function objectDel(id: string): CommandStep {
  return { kind: 'command', name: `object-del ${id}`, command: 'object-del', args: { id }, target: { kind: 'object', id }, onMissing: 'done' };
}

function chardevRemove(id: string): CommandStep {
  return { kind: 'command', name: `chardev-remove ${id}`, command: 'chardev-remove', args: { id }, target: { kind: 'chardev', id }, onMissing: 'done' };
}

/**
 * chardev-add of a TCP socket in QEMU's qapi shape (qapi/char.json ChardevBackend 'socket' ->
 * ChardevSocket, addr SocketAddressLegacy 'inet' -> InetSocketAddress). The port is a STRING in
 * InetSocketAddressBase: a number is refused ("Invalid parameter type ... expected: string").
 * `wait: false` for servers: chardev-add must not block QEMU until a client connects.
 */
export function socketChardevArgs(id: string, host: string, port: number, server: boolean): Record<string, unknown> {
  const data: Record<string, unknown> = { addr: { type: 'inet', data: { host, port: String(port) } }, server };
  if (server) data.wait = false;
  return { id, backend: { type: 'socket', data } };
}

function chardevAdd(id: string, host: string, port: number, server: boolean): CommandStep {
  return {
    kind: 'command',
    name: `chardev-add ${id}`,
    command: 'chardev-add',
    args: socketChardevArgs(id, host, port, server),
    target: { kind: 'chardev', id },
    onExists: 'done',
  };
}

const LOST_HEARTBEAT: CommandStep = { kind: 'command', name: 'x-colo-lost-heartbeat', command: 'x-colo-lost-heartbeat', onMissing: 'fail' };

/**
 * Primary failover (the secondary died; continue alone on the primary):
 * yank; x-blockdev-change {parent: disk, child: quorumChild}; drive_del (or blockdev-del) of the
 * replication node; object-del comp0, iothread1, m0, redire0, redire1; x-colo-lost-heartbeat.
 */
export function primaryFailover(colo: ColoTopologyInput, profile: QemuProfile): Sequence {
  const c = withDocumentedDefaults(colo);
  const steps: Step[] = [];
  if (profile.yank) {
    steps.push(
      yankStep([
        { type: 'migration' },
        { type: 'block-node', under: c.replicationNode },
        { type: 'chardev', id: c.ids.mirror0 },
        { type: 'chardev', id: c.ids.compare1 },
      ]),
    );
  }
  steps.push({
    kind: 'command',
    name: 'x-blockdev-change',
    command: 'x-blockdev-change',
    args: { parent: c.disk, child: c.quorumChild },
    target: { kind: 'quorum-child', parent: c.disk, child: c.quorumChild },
    onMissing: 'done',
  });
  if (profile.nbdNodeRemoval === 'blockdev-del') {
    steps.push({
      kind: 'command',
      name: 'blockdev-del',
      command: 'blockdev-del',
      args: { 'node-name': c.replicationNode },
      target: { kind: 'block-node', id: c.replicationNode },
      onMissing: 'done',
    });
  } else {
    steps.push({
      kind: 'command',
      name: 'drive_del',
      command: 'human-monitor-command',
      args: { 'command-line': `drive_del ${c.replicationNode}` },
      hmp: true,
      target: { kind: 'hmp-drive', id: c.replicationNode },
      onMissing: 'done',
    });
  }
  for (const id of [c.ids.comp0, c.ids.iothread1, c.ids.m0, c.ids.redire0, c.ids.redire1]) steps.push(objectDel(id));
  steps.push({ ...LOST_HEARTBEAT });
  return { name: 'primary-failover', roleBefore: 'primary', roleAfter: 'primary', steps };
}

export interface SecondaryFailoverOptions {
  /** Where the new primary's mirror0/compare1 servers listen for the next secondary. Documented: 0.0.0.0. */
  proxyListenHost?: string;
  /** The local compare0/compare_out chardev pairs. Documented: 127.0.0.1. */
  loopbackHost?: string;
}

/**
 * Secondary failover (the primary died; take over and prepare to become the new primary):
 * yank; nbd-server-stop; x-colo-lost-heartbeat; object-del f2, f1; chardev-remove red1, red0;
 * chardev-add mirror0 + compare1 servers (0.0.0.0), compare0 server + compare0-0 client and
 * compare_out server + compare_out0 client (127.0.0.1).
 */
export function secondaryFailover(colo: ColoTopologyInput, profile: QemuProfile, opts: SecondaryFailoverOptions = {}): Sequence {
  const c = withDocumentedDefaults(colo);
  const listen = opts.proxyListenHost ?? '0.0.0.0';
  const loop = opts.loopbackHost ?? '127.0.0.1';
  const steps: Step[] = [];
  if (profile.yank) {
    steps.push(yankStep([{ type: 'migration' }, { type: 'chardev', id: c.ids.red0 }, { type: 'chardev', id: c.ids.red1 }]));
  }
  steps.push({ kind: 'command', name: 'nbd-server-stop', command: 'nbd-server-stop', target: { kind: 'nbd-server' }, onMissing: 'done' });
  steps.push({ ...LOST_HEARTBEAT });
  steps.push(objectDel(c.ids.f2), objectDel(c.ids.f1), chardevRemove(c.ids.red1), chardevRemove(c.ids.red0));
  steps.push(
    chardevAdd(c.ids.mirror0, listen, c.mirrorPort, true),
    chardevAdd(c.ids.compare1, listen, c.compare1Port, true),
    chardevAdd(c.ids.compare0, loop, c.compare0Port, true),
    chardevAdd(c.ids.compare0_0, loop, c.compare0Port, false),
    chardevAdd(c.ids.compare_out, loop, c.compareOutPort, true),
    chardevAdd(c.ids.compare_out0, loop, c.compareOutPort, false),
  );
  return { name: 'secondary-failover', roleBefore: 'secondary', roleAfter: 'primary', steps };
}

/** The sequence by name. */
export function failoverSequence(name: SequenceName, colo: ColoTopologyInput, profile: QemuProfile, opts: SecondaryFailoverOptions = {}): Sequence {
  return name === 'primary-failover' ? primaryFailover(colo, profile) : secondaryFailover(colo, profile, opts);
}
