/**
 * An idle pair of real agents for the footprint benchmark: the built CLI (`dist/cli.js run`),
 * each with a config file generated into a temp dir, a key from `colo-agent keygen`, its metrics
 * endpoint on (as deployed: prom-client's collectors run whether or not anyone scrapes), its ports
 * from the bench range, and either no QEMU (the QMP socket is missing and the agent retries in the
 * background) or, with `qemu`, a paused QEMU of its own, so the QMP status polling is measured too.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { AGENT_HOSTS, cliPath, startAgent, type AgentProcess, type Side } from '../helpers/agent-process.js';
import { onProcessEnd } from '../helpers/exit-hooks.js';
import { startQemu, type RunningQemu } from '../helpers/qemu.js';
import { benchPort } from './bench-ports.js';

export interface IdlePair {
  agents: AgentProcess[];
  stop(): Promise<void>;
}

export interface IdlePairOptions {
  intervalMs: number;
  /** A paused QEMU per agent (its QMP socket is the agent's qemu.qmp). */
  qemu: boolean;
}

const SIDES: readonly Side[] = ['primary', 'secondary'];

function agentConfig(side: Side, dir: string, keyFile: string, qmp: string, ports: Record<Side, number>, metricsPort: number, intervalMs: number): object {
  const peer: Side = side === 'primary' ? 'secondary' : 'primary';
  return {
    node: { name: `fp-${side}`, role: side, stateDir: join(dir, side) },
    qemu: { qmp, profile: '7.2' },
    heartbeat: {
      listen: `${AGENT_HOSTS[side]}:${ports[side]}`,
      peers: [`${AGENT_HOSTS[peer]}:${ports[peer]}`],
      keyFile,
      intervalMs,
    },
    colo: { primaryHost: AGENT_HOSTS.primary, secondaryHost: AGENT_HOSTS.secondary },
    arbiter: { mode: 'none' },
    metrics: { listen: `${AGENT_HOSTS[side]}:${metricsPort}` },
    log: { level: 'info' },
  };
}

/** Starts both agents and waits until each sees the other up. */
export async function startIdlePair(opts: IdlePairOptions): Promise<IdlePair> {
  const dir = mkdtempSync(join(tmpdir(), 'fp-agents-'));
  const agents: AgentProcess[] = [];
  const qemus: RunningQemu[] = [];
  const removeDir = () => rmSync(dir, { recursive: true, force: true });
  // Ctrl-C: runBench and the helpers kill the agents and QEMUs; what is left is the dir.
  onProcessEnd(removeDir);
  const stop = async () => {
    await Promise.allSettled(agents.map((a) => a.stop()));
    await Promise.allSettled(qemus.map((q) => q.stop()));
    removeDir();
  };
  try {
    const keyFile = join(dir, 'heartbeat.key');
    execFileSync(process.execPath, [cliPath(), 'keygen', '--out', keyFile], { stdio: ['ignore', 'ignore', 'pipe'] });
    const ports: Record<Side, number> = { primary: await benchPort(AGENT_HOSTS.primary), secondary: await benchPort(AGENT_HOSTS.secondary) };
    for (const side of SIDES) {
      mkdirSync(join(dir, side));
      let qmp = `unix:${join(dir, `${side}-qmp.sock`)}`;
      if (opts.qemu) {
        const q = await startQemu({ name: `fp-${side}`, dir: join(dir, side), memoryMb: 64 });
        qemus.push(q);
        qmp = q.qmpAddresses[0]!;
      }
      const metricsPort = await benchPort(AGENT_HOSTS[side]);
      const file = join(dir, `${side}.yaml`);
      writeFileSync(file, stringify(agentConfig(side, dir, keyFile, qmp, ports, metricsPort, opts.intervalMs)));
      agents.push(await startAgent({ name: side, config: file, sets: [] }));
    }
    await Promise.all(agents.map((a) => a.waitForPeerState('up', 15_000)));
    return { agents, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}
