/**
 * Valid but risky settings. They do not stop the agent; the agent logs them at warn level on start and
 * `check-config` prints them, so that nobody runs an unsafe setup without having been told.
 */
import type { AgentConfig } from './types.js';

export function configWarnings(cfg: AgentConfig): string[] {
  const warnings: string[] = [];
  if (cfg.heartbeat.insecure) {
    warnings.push(
      'heartbeat.insecure is true: heartbeats are not authenticated; anyone who can reach ' +
        `${cfg.heartbeat.listen} can fake a live peer and prevent a failover`,
    );
  }
  if (cfg.arbiter.mode === 'none' && cfg.node.role !== 'witness' && cfg.failover.enabled) {
    warnings.push(
      'arbiter.mode is none: after a network partition both nodes can take over and the VM runs twice (split brain)',
    );
  }
  if (cfg.arbiter.mode !== 'none' && cfg.node.role !== 'witness' && cfg.arbiter.onLeaseLoss === 'keep-running') {
    warnings.push(
      'arbiter.onLeaseLoss is keep-running: a primary cut off from both its peer and the arbiter keeps its guest running ' +
        'while the arbiter may give it to the peer (split brain)',
    );
  }
  return warnings;
}
