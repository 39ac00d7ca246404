/**
 * Where things run: the one definition of which host runs the primary and which the secondary
 * right now, and of every address derived from it (the probe of the peer's QEMU, the fence
 * command's peer host, the resume's NBD and migration targets, this node's NBD export, `plan`,
 * `status`). Pure: facts in, answer out.
 *
 * Two different things are easy to confuse, and the defect this module replaces did:
 * - a HOST's address never moves. `colo.primaryHost` / `colo.secondaryHost` are the addresses of
 *   the host installed as primary and of the host installed as secondary, and `node.role` says
 *   which of the two this node is ("installed as"). So this node's address and its peer's are
 *   fixed for the life of the pair: `pairAddresses()`.
 * - a ROLE moves with every failover and failback. Which role this node plays now comes, in this
 *   order, from its epoch (a stale node was overtaken: the holder of the newer epoch runs the
 *   guest, so this node is at most its future secondary, whatever its QEMU still says), from its
 *   QEMU (the COLO mode, while it replicates), from its journal (the role recorded by the last
 *   failover or rejoin: an unreplicated QEMU, or one not answering yet after an agent restart),
 *   and only when none of those knows, from the installed role: the first start of a pair. The
 *   peer plays the other role. `currentTopology()`.
 *
 * Every address then is "the peer's host" or "our host" with a port picked by the role the peer
 * or we play now: the peer's QEMU listens on mirror0 when it is the primary, on its NBD export
 * when it is the secondary.
 */
import type { ColoConfig } from '../config/types.js';

export type PairRole = 'primary' | 'secondary';

/** The host addresses of the pair as seen from one node: fixed by installation. */
export interface PairAddresses {
  /** This node's host. */
  self: string;
  /** The peer's host. */
  peer: string;
}

/** The two configured host addresses, keyed by the role each host was installed as. */
export type ColoHosts = Pick<ColoConfig, 'primaryHost' | 'secondaryHost'>;

export function otherRole(role: PairRole): PairRole {
  return role === 'primary' ? 'secondary' : 'primary';
}

/** This node's and its peer's host address, from the role this node was installed as (node.role). */
export function pairAddresses(installedAs: PairRole, colo: ColoHosts): PairAddresses {
  return installedAs === 'primary' ? { self: colo.primaryHost, peer: colo.secondaryHost } : { self: colo.secondaryHost, peer: colo.primaryHost };
}

export interface TopologyFacts {
  /** node.role: which configured host is ours. */
  installedAs: PairRole;
  /** Our QEMU's COLO mode as last seen (query-colo-status): primary, secondary, none or unknown. */
  coloMode: string;
  /** Another node holds a newer epoch than ours. */
  stale: boolean;
  /** The journal's role (the last failover's roleAfter, or a rejoin as fresh secondary). */
  recordedRole?: PairRole | undefined;
}

/** Which fact decided our role, for logs and status. */
export type RoleSource = 'stale-epoch' | 'colo-mode' | 'journal' | 'installed';

export interface Topology {
  self: { host: string; role: PairRole };
  peer: { host: string; role: PairRole };
  /** The host that runs (or, unreplicated, would run) the guest as primary now. */
  primaryHost: string;
  /** The host that runs (or is to run) the secondary now. */
  secondaryHost: string;
  source: RoleSource;
}

/** The role this node plays now, and the fact that says so (see the file comment for the order). */
export function currentRole(f: TopologyFacts): { role: PairRole; source: RoleSource } {
  if (f.stale) return { role: 'secondary', source: 'stale-epoch' };
  if (f.coloMode === 'primary' || f.coloMode === 'secondary') return { role: f.coloMode, source: 'colo-mode' };
  if (f.recordedRole) return { role: f.recordedRole, source: 'journal' };
  return { role: f.installedAs, source: 'installed' };
}

export function currentTopology(f: TopologyFacts, colo: ColoHosts): Topology {
  const hosts = pairAddresses(f.installedAs, colo);
  const { role, source } = currentRole(f);
  const self = { host: hosts.self, role };
  const peer = { host: hosts.peer, role: otherRole(role) };
  return {
    self,
    peer,
    primaryHost: role === 'primary' ? self.host : peer.host,
    secondaryHost: role === 'primary' ? peer.host : self.host,
    source,
  };
}

export interface Endpoint {
  host: string;
  port: number;
}

/**
 * Where the peer's QEMU listens for COLO, to probe it: a primary's mirror0 chardev server, a
 * secondary's NBD export. Always on the peer's host.
 */
export function peerQemuEndpoint(t: Topology, colo: Pick<ColoConfig, 'mirrorPort' | 'nbdPort'>): Endpoint & { what: 'mirror0' | 'nbd' } {
  return t.peer.role === 'primary' ? { host: t.peer.host, port: colo.mirrorPort, what: 'mirror0' } : { host: t.peer.host, port: colo.nbdPort, what: 'nbd' };
}

/** Where a fresh secondary on our host exports its disk (secondary-prepare, the ready announcement). */
export function ownNbdEndpoint(t: Topology, colo: Pick<ColoConfig, 'nbdPort'>): Endpoint {
  return { host: t.self.host, port: colo.nbdPort };
}

/** Where a resume on our (primary) QEMU sends the disk and the migration: the peer's host. */
export function resumeTargets(t: Topology, colo: Pick<ColoConfig, 'nbdPort' | 'migrationPort'>): { peerHost: string; nbd: Endpoint; migration: Endpoint } {
  return { peerHost: t.peer.host, nbd: { host: t.peer.host, port: colo.nbdPort }, migration: { host: t.peer.host, port: colo.migrationPort } };
}
