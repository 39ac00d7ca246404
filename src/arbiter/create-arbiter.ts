/**
 * The arbiter for `arbiter.mode`, from the config. The agent hands in what only it knows: its
 * key, its health summary and epoch (carried to the witness), whether it runs the guest now.
 */
import { isIP } from 'node:net';
import type { AgentConfig } from '../config/index.js';
import { parseHostPort } from '../heartbeat/address.js';
import type { HealthSummary } from '../heartbeat/messages.js';
import type { Logger } from '../log.js';
import type { Clock } from '../util/clock.js';
import type { Arbiter } from './arbiter.js';
import { EtcdArbiter } from './etcd-arbiter.js';
import { NoneArbiter } from './none-arbiter.js';
import { WitnessClient } from './witness-client.js';

export interface ArbiterDeps {
  key: Buffer | undefined;
  summary: () => HealthSummary;
  epoch: () => number;
  isPrimary: () => boolean;
  clock: Clock;
  logger: Logger;
}

export function createArbiter(cfg: AgentConfig, deps: ArbiterDeps): Arbiter {
  const a = cfg.arbiter;
  switch (a.mode) {
    case 'none':
      return new NoneArbiter();
    case 'witness': {
      // Dial from the address we listen on when it is a specific one: the same interface as the
      // peer links, and a source the witness's host (and its firewall) can tell apart.
      const listenHost = parseHostPort(cfg.heartbeat.listen).host;
      const specific = isIP(listenHost) !== 0 && listenHost !== '0.0.0.0' && listenHost !== '::';
      return new WitnessClient({
        ...(specific && { localAddress: listenHost }),
        nodeName: cfg.node.name,
        role: cfg.node.role,
        witness: a.witness,
        ...(deps.key ? { key: deps.key } : { insecure: true }),
        intervalMs: cfg.heartbeat.intervalMs,
        summary: deps.summary,
        epoch: deps.epoch,
        links: {
          helloTimeoutMs: cfg.heartbeat.helloTimeoutMs,
          maxFrameBytes: cfg.heartbeat.maxFrameBytes,
          reconnectInitialMs: cfg.heartbeat.reconnectInitialMs,
          reconnectMaxMs: cfg.heartbeat.reconnectMaxMs,
        },
        clock: deps.clock,
        logger: deps.logger,
      });
    }
    case 'etcd':
      return new EtcdArbiter({
        endpoints: a.etcd.endpoints,
        prefix: a.etcd.prefix,
        nodeName: cfg.node.name,
        leaseTtlSeconds: a.etcd.leaseTtlSeconds,
        isPrimary: deps.isPrimary,
        epoch: deps.epoch,
        dialTimeoutMs: a.requestTimeoutMs,
        clock: deps.clock,
        logger: deps.logger,
      });
  }
}
