/**
 * `colo-agent run --config FILE`: the daemon. Stops cleanly on SIGTERM/SIGINT (telling the peer it
 * is a planned stop); a second signal forces the exit. SIGHUP re-reads the config (see reloadConfig).
 */
import { Agent } from '../agent.js';
import { ConfigError, formatProblem, type AgentConfig } from '../config/index.js';
import type { Logger } from '../log.js';
import { startAgentMetrics } from '../metrics/index.js';
import { loadFromSources, loadHeartbeatKey, type ConfigSources } from './check-config.js';

/**
 * SIGHUP: loads the config again from the same sources (the --config files, the environment, the
 * --set arguments) and hands it to Agent.reload(), which applies what can change live and logs the
 * rest as needing a restart. An invalid config changes nothing: each problem is logged on its own
 * line, worded as check-config prints it, and the agent runs on with the config it had.
 *
 * The environment is this process's own, fixed at its start: a changed Environment= in a unit
 * file needs a restart, as with any process.
 */
export function reloadConfig(agent: Agent, sources: ConfigSources, logger: Logger): void {
  logger.info({ files: sources.files, sets: sources.sets }, 'SIGHUP: reloading the config');
  let next: AgentConfig;
  try {
    next = loadFromSources(sources, (warning) => logger.warn({ warning }, 'config warning'));
  } catch (err) {
    if (!(err instanceof ConfigError)) {
      logger.error({ err }, 'config reload failed: keeping the running config');
      return;
    }
    for (const p of err.problems) logger.error({ problem: formatProblem(p), configKey: p.key }, 'config reload: invalid configuration');
    logger.error({ problems: err.problems.length }, 'config reload rejected: keeping the running config');
    return;
  }
  try {
    agent.reload(next);
  } catch (err) {
    logger.error({ err }, 'config reload failed: keeping the running config');
  }
}

/**
 * SIGTERM/SIGINT: a planned stop (`stop`), then exit 0 (1 if stopping failed); a second signal
 * exits at once. SIGHUP: `reload` (ignored while stopping). Install before start(), so a stop
 * during start-up still says goodbye, and a SIGHUP there (whose default action would kill the
 * process) reloads instead.
 */
export function installSignalHandlers(logger: Logger, stop: (reason: string) => Promise<void>, reload: () => void): void {
  let stopping = false;
  const onSignal = (sig: NodeJS.Signals) => {
    if (stopping) {
      logger.warn({ signal: sig }, 'second signal: exiting now');
      process.exit(1);
    }
    stopping = true;
    logger.info({ signal: sig }, 'stopping');
    stop(`planned stop (${sig})`).then(
      () => process.exit(0),
      (err: unknown) => {
        logger.error({ err }, 'error while stopping');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  process.on('SIGHUP', () => {
    if (stopping) logger.info('SIGHUP ignored: stopping');
    else reload();
  });
}

export async function runAgent(cfg: AgentConfig, logger: Logger, sources: ConfigSources): Promise<Agent> {
  const key = await loadHeartbeatKey(cfg);
  const agent = new Agent(cfg, { logger, key });
  // Before start(): no event is missed, and a busy metrics port fails the start early.
  const metrics = cfg.metrics.listen ? await startAgentMetrics(agent, { listen: cfg.metrics.listen, node: cfg.node.name, logger }) : undefined;
  if (metrics) logger.info({ listen: metrics.address }, 'metrics endpoint listening (/metrics, /healthz, /status)');
  installSignalHandlers(
    logger,
    async (reason) => {
      await agent.stop(reason);
      await metrics?.close();
    },
    () => reloadConfig(agent, sources, logger),
  );
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
