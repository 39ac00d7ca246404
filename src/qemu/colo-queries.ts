/**
 * Queries that verify a COLO pair's state through QMP (the launcher's own client, or any
 * connected one): COLO mode, VM status, migration, the proxy's objects and chardevs, block nodes,
 * yank instances. Used by the tests' assertions and by the demo's drill to check its survivor.
 */
import { QmpClient } from '../qmp/index.js';
import type { ColoSide } from './colo-launch.js';

export interface ColoStatusReply {
  mode: 'none' | 'primary' | 'secondary' | string;
  'last-mode'?: string;
  reason: string;
}

export interface VmStatusReply {
  running: boolean;
  status: string;
  singlestep?: boolean;
}

export interface MigrateInfo {
  status?: string;
  'error-desc'?: string;
  [key: string]: unknown;
}

export interface BlockNodeInfo {
  'node-name': string;
  drv: string;
  file?: string;
  [key: string]: unknown;
}

export interface YankInstance {
  type: 'block-node' | 'chardev' | 'migration' | string;
  'node-name'?: string;
  id?: string;
}

/** A side of a pair, or any connected client (e.g. one through a recorder). */
export type QmpTarget = Pick<ColoSide, 'qmp'> | QmpClient;

function clientOf(target: QmpTarget): QmpClient {
  return target instanceof QmpClient ? target : target.qmp;
}

export function queryColoStatus(target: QmpTarget): Promise<ColoStatusReply> {
  return clientOf(target).execute<ColoStatusReply>('query-colo-status');
}

export function queryStatus(target: QmpTarget): Promise<VmStatusReply> {
  return clientOf(target).execute<VmStatusReply>('query-status');
}

export function queryMigrate(target: QmpTarget): Promise<MigrateInfo> {
  return clientOf(target).execute<MigrateInfo>('query-migrate');
}

/** Ids of the user-created objects (qom-list /objects, children only): filters, iothreads, colo-compare. */
export async function listObjects(target: QmpTarget): Promise<string[]> {
  const props = await clientOf(target).execute<Array<{ name: string; type: string }>>('qom-list', { path: '/objects' });
  return props.filter((p) => p.type.startsWith('child<')).map((p) => p.name);
}

/** Chardev labels (query-chardev), including the QMP monitors' own. */
export async function listChardevs(target: QmpTarget): Promise<string[]> {
  const devs = await clientOf(target).execute<Array<{ label: string; filename: string }>>('query-chardev');
  return devs.map((d) => d.label);
}

/** Named block nodes (query-named-block-nodes, flat). */
export function listBlockNodes(target: QmpTarget): Promise<BlockNodeInfo[]> {
  return clientOf(target).execute<BlockNodeInfo[]>('query-named-block-nodes', { flat: true });
}

/** Yank instances (QEMU >= 6.0): what can be yanked right now. */
export function queryYank(target: QmpTarget): Promise<YankInstance[]> {
  return clientOf(target).execute<YankInstance[]>('query-yank');
}
