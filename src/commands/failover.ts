/**
 * `colo-agent failover --config FILE [--qmp ADDR]`: the operator's failover, run from the command
 * line against this node's QEMU with the same rule, sequence, journal and checks as the agent.
 *
 * It talks to QEMU directly, so run it while the agent is stopped (a QMP socket serves one client,
 * and two writers must never share the journal), or give --qmp another QMP socket of the same
 * QEMU while the agent is in maintenance. The journal keeps it exactly-once: an unfinished
 * failover in node.stateDir is resumed, not repeated.
 */
import { decideTakeover } from '../arbiter/takeover-rule.js';
import { FailoverExecutor, type FailoverOutcome } from '../colo/failover-executor.js';
import { Journal } from '../colo/journal.js';
import type { AgentConfig } from '../config/index.js';
import { ColoAgentError } from '../errors.js';
import type { Logger } from '../log.js';
import { QmpClient } from '../qmp/index.js';

export class FailoverRefusedError extends ColoAgentError {
  constructor(reason: string) {
    super('FAILOVER_REFUSED', reason);
  }
}

export async function manualFailover(cfg: AgentConfig, qmpAddress: string, logger: Logger): Promise<FailoverOutcome> {
  const qmp = new QmpClient({
    address: qmpAddress,
    reconnect: false,
    connectTimeoutMs: cfg.qemu.connectTimeoutMs,
    commandTimeoutMs: cfg.qemu.commandTimeoutMs,
    logger,
  });
  try {
    await qmp.connect();
    const journal = await Journal.open(cfg.node.stateDir, { logger });
    const colo = await qmp.execute<{ mode: string }>('query-colo-status');
    const open = journal.unfinished();
    if (!open) {
      const decision = decideTakeover({ trigger: 'manual', qemuReachable: true, coloMode: colo.mode, failoverEnabled: cfg.failover.enabled });
      if (!decision.act) throw new FailoverRefusedError(decision.reason);
    }
    const executor = new FailoverExecutor({
      qmp,
      journal,
      colo: cfg.colo,
      profile: cfg.qemu.profile,
      stepTimeoutMs: cfg.failover.stepTimeoutMs,
      logger,
    });
    const sequence = colo.mode === 'primary' ? 'primary-failover' : 'secondary-failover';
    return await executor.run({ sequence, reason: 'manual: colo-agent failover' });
  } finally {
    await qmp.close();
  }
}
