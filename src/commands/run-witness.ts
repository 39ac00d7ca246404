/**
 * `colo-agent run` with node.role witness: the third node of arbiter.mode witness. It runs no
 * QEMU; it listens on heartbeat.listen for both agents and grants epochs (WitnessServer). Its
 * state (epoch, holder) lives in node.stateDir. SIGHUP is logged only: none of the witness's keys
 * can change live (its lease is what both agents were promised).
 */
import { WitnessServer } from '../arbiter/witness-server.js';
import type { AgentConfig } from '../config/index.js';
import type { Logger } from '../log.js';
import { MetricsServer, packageVersion } from '../metrics/index.js';
import { WitnessMetrics } from '../metrics/witness-metrics.js';
import { loadHeartbeatKey } from './check-config.js';
import { installSignalHandlers } from './run.js';

export async function runWitness(cfg: AgentConfig, logger: Logger): Promise<WitnessServer> {
  const key = await loadHeartbeatKey(cfg);
  const hb = cfg.heartbeat;
  const witness = new WitnessServer({
    nodeName: cfg.node.name,
    listen: [hb.listen],
    ...(key ? { key } : { insecure: true }),
    intervalMs: hb.intervalMs,
    stateDir: cfg.node.stateDir,
    leaseMs: cfg.arbiter.leaseMs,
    bothAskWindowMs: cfg.arbiter.bothAskWindowMs,
    links: { helloTimeoutMs: hb.helloTimeoutMs, maxFrameBytes: hb.maxFrameBytes, maxConnectionsPerSource: hb.maxConnectionsPerSource },
    logger,
  });
  const server = cfg.metrics.listen
    ? new MetricsServer({ listen: cfg.metrics.listen, metrics: new WitnessMetrics(witness, { version: packageVersion(), node: cfg.node.name }), agent: witness, logger })
    : undefined;
  if (server) logger.info({ listen: await server.listen() }, 'metrics endpoint listening (/metrics, /healthz, /status)');
  installSignalHandlers(
    logger,
    async (reason) => {
      await witness.close(reason);
      await server?.close();
    },
    () => logger.info('SIGHUP: a witness has no live-reloadable settings; restart it to change its config'),
  );
  try {
    await witness.start();
  } catch (err) {
    await witness.close('start failed');
    await server?.close();
    throw err;
  }
  return witness;
}
