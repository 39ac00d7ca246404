/**
 * `colo-agent run --config FILE`: the daemon. Stops cleanly on SIGTERM/SIGINT (telling the peer it
 * is a planned stop); a second signal forces the exit.
 */
import { Agent } from '../agent.js';
import type { AgentConfig } from '../config/index.js';
import type { Logger } from '../log.js';
import { startAgentMetrics } from '../metrics/index.js';
import { loadHeartbeatKey } from './check-config.js';

export async function runAgent(cfg: AgentConfig, logger: Logger): Promise<Agent> {
  const key = await loadHeartbeatKey(cfg);
  if (!key) logger.warn('heartbeat.insecure is set: heartbeats are NOT authenticated; anyone who reaches the port can fake a live peer');
  const agent = new Agent(cfg, { logger, key });
  // Before start(): no event is missed, and a busy metrics port fails the start early.
  const metrics = cfg.metrics.listen ? await startAgentMetrics(agent, { listen: cfg.metrics.listen, node: cfg.node.name, logger }) : undefined;
  if (metrics) logger.info({ listen: metrics.address }, 'metrics endpoint listening (/metrics, /healthz, /status)');
  let stopping = false;
  const onSignal = (sig: NodeJS.Signals) => {
    if (stopping) {
      logger.warn({ signal: sig }, 'second signal: exiting now');
      process.exit(1);
    }
    stopping = true;
    logger.info({ signal: sig }, 'stopping');
    agent
      .stop(`planned stop (${sig})`)
      .then(() => metrics?.close())
      .then(
        () => process.exit(0),
        (err: unknown) => {
          logger.error({ err }, 'error while stopping');
          process.exit(1);
        },
      );
  };
  // Installed before start(), so a stop during start-up still says goodbye.
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  try {
    await agent.start();
  } catch (err) {
    // Leave nothing running (timers, half-bound listeners) behind a failed start.
    await agent.stop('start failed');
    await metrics?.close();
    throw err;
  }
  return agent;
}
