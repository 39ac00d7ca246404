/**
 * Prometheus metrics for colo-agent: the registry (registry.ts), the binding to a running agent
 * (agent-metrics.ts) and the HTTP endpoint (server.ts), plus startAgentMetrics() which puts the
 * three together the way `colo-agent run` needs them.
 */
import { readFileSync } from 'node:fs';
import type { Agent } from '../agent.js';
import type { HostPort } from '../heartbeat/address.js';
import type { Logger } from '../log.js';
import type { Clock } from '../util/clock.js';
import { attachAgentMetrics, type AgentMetricsBinding } from './agent-metrics.js';
import { AgentMetrics } from './registry.js';
import { MetricsServer } from './server.js';

export { METRIC_NAMES, METRIC_TYPES, seriesNames, type MetricName, type MetricType } from './names.js';
export { AgentMetrics, LabelLimiter, setStateSet, type AgentMetricsOptions, type ScrapeSources } from './registry.js';
export {
  attachAgentMetrics,
  bindColoMetrics,
  coloExitReason,
  qmpErrorLabel,
  type AgentMetricsBinding,
  type AttachOptions,
  type ColoMonitorLike,
  type MetricsAgent,
} from './agent-metrics.js';
export { MetricsServer, type ExpositionSource, type MetricsServerOptions } from './server.js';
export { EventLoopLag, healthVerdict, UNHEALTHY_STATES, type HealthReport } from './health.js';
export { MetricsListenError, MetricsOptionsError } from './errors.js';

/** The version in package.json (src/metrics and dist/metrics are both two levels below it). */
export function packageVersion(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version?: unknown };
  return typeof pkg.version === 'string' ? pkg.version : 'unknown';
}

export interface StartAgentMetricsOptions {
  /** metrics.listen: HOST:PORT. */
  listen: string;
  /** node.name, for colo_agent_build_info. */
  node: string;
  /** Default packageVersion(). */
  version?: string;
  /** The clock the agent was given (AgentDeps.clock). */
  clock?: Clock;
  logger?: Logger;
}

export interface RunningAgentMetrics {
  metrics: AgentMetrics;
  binding: AgentMetricsBinding;
  server: MetricsServer;
  /** The bound address. */
  address: HostPort;
  /** Detaches and closes the server. */
  close(): Promise<void>;
}

/**
 * Creates the registry, attaches it to `agent` and serves it. Call after `new Agent()` and before
 * `agent.start()`; close() after `agent.stop()` (so /healthz reports the stop while it lasts).
 */
export async function startAgentMetrics(agent: Agent, opts: StartAgentMetricsOptions): Promise<RunningAgentMetrics> {
  const metrics = new AgentMetrics({ version: opts.version ?? packageVersion(), node: opts.node });
  const binding = attachAgentMetrics(agent, metrics, opts.clock ? { clock: opts.clock } : {});
  const server = new MetricsServer({
    listen: opts.listen,
    metrics,
    agent,
    ...(opts.clock ? { clock: opts.clock } : {}),
    ...(opts.logger ? { logger: opts.logger } : {}),
  });
  try {
    const address = await server.listen();
    return {
      metrics,
      binding,
      server,
      address,
      close: async () => {
        binding.detach();
        await server.close();
      },
    };
  } catch (err) {
    binding.detach();
    await server.close();
    throw err;
  }
}
