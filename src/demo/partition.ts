/**
 * The partition drill's wiring: a fault proxy on every connection between the sides, so that one
 * machine can cut "the network" between 127.0.0.1 and 127.0.0.2.
 *
 * - heartbeats: one proxy per direction (each agent dials its peer through one);
 * - replication: the secondary's red0/red1 reach the primary's mirror0/compare1, and the primary's
 *   NBD client and migration reach the secondary, each through its own proxy (the launcher's `dial`);
 * - the takeover probe: each agent's `colo` section names the proxy as the peer QEMU's port, so the
 *   probe crosses the cut too.
 *
 * cut(): every proxy blackholes its open connections (nothing passes, nothing is closed, as on a
 * dead link) and stops listening. On one machine a new connection is then refused (the kernel
 * answers for the closed port) where a real partition would drop it silently; the agents' probes
 * say `refused` instead of `silent`, and without an arbiter both verdicts lead to a takeover.
 *
 * The secondary agent's compare0/compare_out ports are its own: after a takeover its QEMU binds
 * them on 127.0.0.1, where the primary's QEMU (alive in a partition) already holds the pair's.
 */
import type { ColoConfig } from '../config/types.js';
import type { ColoDialRoutes, ColoPorts } from '../qemu/colo-cmdline.js';
import { FaultProxy } from '../util/fault-proxy.js';
import { freePort } from '../util/free-port.js';
import { DEMO_HOSTS, type DemoSide } from './plan.js';

export interface PartitionWiring {
  readonly proxies: readonly FaultProxy[];
  /** For the launcher: where the cross-side QEMU connections dial. */
  readonly dial: ColoDialRoutes;
  /** HOST:PORT each agent dials for its peer's heartbeat. */
  readonly heartbeatPeer: Readonly<Record<DemoSide, string>>;
  /** Per-side `colo` changes for the agents (probe targets through the proxies, own compare ports). */
  readonly coloFor: Readonly<Record<DemoSide, Partial<ColoConfig>>>;
  /** Cut every link between the sides (see the file comment). */
  cut(): Promise<void>;
  /** Close every proxy. Idempotent. */
  close(): Promise<void>;
}

/**
 * Start the proxies in front of the pair's listeners (`ports`, picked before the pair starts) and
 * the agents' heartbeat listeners. Proxies bind port 0 (the kernel picks), so only the QEMU ports
 * can be lost to a race, which the caller's bring-up retry covers.
 */
export async function startPartitionWiring(ports: ColoPorts, heartbeatListen: Readonly<Record<DemoSide, number>>): Promise<PartitionWiring> {
  const proxies: FaultProxy[] = [];
  const proxy = async (name: string, host: string, targetPort: number): Promise<FaultProxy> => {
    // The proxy stands on the target's address, as a router on the way to it would.
    const p = await FaultProxy.start({ name, listenHost: host, targetHost: host, targetPort });
    proxies.push(p);
    return p;
  };
  try {
    const p = DEMO_HOSTS.primary;
    const s = DEMO_HOSTS.secondary;
    const hbToSecondary = await proxy('heartbeat primary->secondary', s, heartbeatListen.secondary);
    const hbToPrimary = await proxy('heartbeat secondary->primary', p, heartbeatListen.primary);
    const mirror = await proxy('mirror0', p, ports.mirrorPort);
    const compare1 = await proxy('compare1', p, ports.compare1Port);
    const nbd = await proxy('nbd', s, ports.nbdPort);
    const migration = await proxy('migration', s, ports.migrationPort);
    const ownCompare0 = await freePort(p);
    const ownCompareOut = await freePort(p);
    let closing: Promise<void> | undefined;
    return {
      proxies,
      dial: {
        mirror: { host: p, port: mirror.port },
        compare1: { host: p, port: compare1.port },
        nbd: { host: s, port: nbd.port },
        migration: { host: s, port: migration.port },
      },
      heartbeatPeer: { primary: hbToSecondary.address, secondary: hbToPrimary.address },
      coloFor: {
        primary: { nbdPort: nbd.port },
        secondary: { mirrorPort: mirror.port, compare1Port: compare1.port, compare0Port: ownCompare0, compareOutPort: ownCompareOut },
      },
      cut: async () => {
        for (const x of proxies) x.blackhole();
        await Promise.all(proxies.map((x) => x.stopAccepting()));
      },
      close: () => (closing ??= Promise.all(proxies.map((x) => x.close())).then(() => undefined)),
    };
  } catch (err) {
    await Promise.all(proxies.map((x) => x.close()));
    throw err;
  }
}
