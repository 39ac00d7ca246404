/**
 * What the demo starts besides QEMU: the list of processes, each with its command line. One place:
 * the two agents and, with arbitration (`--arbiter witness`, the default), the witness, a third
 * `colo-agent run` with node.role witness on 127.0.0.3 that both agents use as their arbiter.
 * Pure: no process is started here (see setup.ts).
 */
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ColoConfig } from '../config/types.js';

export type DemoSide = 'primary' | 'secondary';
export const DEMO_SIDES: readonly DemoSide[] = ['primary', 'secondary'];

/** The documented pair on one machine: the primary on 127.0.0.1, the secondary on 127.0.0.2. */
export const DEMO_HOSTS: Readonly<Record<DemoSide, string>> = { primary: '127.0.0.1', secondary: '127.0.0.2' };

/** Where the witness stands: a third loopback address, as a third host would be. */
export const DEMO_WITNESS_HOST = '127.0.0.3';

/** `--arbiter`: witness (default; no split brain) or none (today's unsafe behaviour, shown as such). */
export type DemoArbiter = 'witness' | 'none';
export const DEMO_ARBITERS: readonly DemoArbiter[] = ['witness', 'none'];

/**
 * The primary's lease with the witness, set explicitly so that the drill's notes can say how long a
 * takeover after a primary host loss waits (the shipped witness example's value).
 */
export const DEMO_LEASE_MS = 500;

export const otherSide = (side: DemoSide): DemoSide => (side === 'primary' ? 'secondary' : 'primary');

/** The shipped example configs of the two-host pair on loopback; the demo overrides what it must. */
export const DEMO_EXAMPLE_CONFIGS: Readonly<Record<DemoSide, string>> = {
  primary: fileURLToPath(new URL('../../config/examples/primary.yaml', import.meta.url)),
  secondary: fileURLToPath(new URL('../../config/examples/secondary.yaml', import.meta.url)),
};

export const DEMO_WITNESS_CONFIG = fileURLToPath(new URL('../../config/examples/witness.yaml', import.meta.url));

/** The witness's addresses, when the demo runs one. */
export interface DemoWitnessLayout {
  /** HOST:PORT the witness listens on for both agents (their arbiter.witness). */
  heartbeatListen: string;
  /** HOST:PORT of its /metrics and /status. */
  metricsListen: string;
}

/** Where everything of one demo run is, and how the sides reach each other. */
export interface DemoLayout {
  /** The run's temp dir (key, state dirs, the QEMUs' dirs); removed on exit. */
  dir: string;
  keyFile: string;
  /** The pair's `colo` section as the launcher resolved it. */
  colo: ColoConfig;
  /** Each agent's own QMP socket on its QEMU. */
  agentQmp: Readonly<Record<DemoSide, string>>;
  /** HOST:PORT each agent's heartbeat listens on. */
  heartbeatListen: Readonly<Record<DemoSide, string>>;
  /** HOST:PORT each agent dials for its peer: the peer's listener, or a fault proxy in front of it. */
  heartbeatPeer: Readonly<Record<DemoSide, string>>;
  /** HOST:PORT of each agent's /metrics and /status. */
  metricsListen: Readonly<Record<DemoSide, string>>;
  /**
   * Per-side changes to the `colo` section, when one machine has to stand in for two hosts (the
   * partition drill: each agent probes the peer's QEMU through the proxy the drill cuts).
   */
  coloFor?: Readonly<Partial<Record<DemoSide, Partial<ColoConfig>>>>;
  /** Set with `--arbiter witness`: the agents use it as their arbiter. */
  witness?: DemoWitnessLayout;
}

interface ProcessSpecBase {
  /** Shown in the view and in messages. */
  name: string;
  /** Arguments after `node dist/cli.js`. */
  args: string[];
}

/** An agent belongs to a side; the witness to neither. */
export type DemoProcessSpec = (ProcessSpecBase & { kind: 'agent'; side: DemoSide }) | (ProcessSpecBase & { kind: 'witness' });

/** Every key of the `colo` section as `colo.KEY=VALUE` (ids as `colo.ids.KEY=VALUE`). */
export function coloConfigSets(colo: ColoConfig): string[] {
  const sets: string[] = [];
  for (const [key, value] of Object.entries(colo)) {
    if (key === 'ids') continue;
    sets.push(`colo.${key}=${String(value)}`);
  }
  for (const [key, value] of Object.entries(colo.ids)) sets.push(`colo.ids.${key}=${value}`);
  return sets;
}

/** The `--set` list of one side's agent. */
export function agentSets(layout: DemoLayout, side: DemoSide): string[] {
  return [
    `node.stateDir=${join(layout.dir, `state-${side}`)}`,
    `qemu.qmp=${layout.agentQmp[side]}`,
    `heartbeat.keyFile=${layout.keyFile}`,
    `heartbeat.listen=${layout.heartbeatListen[side]}`,
    `heartbeat.peers=${layout.heartbeatPeer[side]}`,
    `metrics.listen=${layout.metricsListen[side]}`,
    'log.level=info',
    ...coloConfigSets({ ...layout.colo, ...layout.coloFor?.[side] }),
    ...(layout.witness ? ['arbiter.mode=witness', `arbiter.witness=${layout.witness.heartbeatListen}`] : ['arbiter.mode=none']),
  ];
}

/** The `--set` list of the witness: the same key as the agents, a state dir of its own. */
export function witnessSets(layout: DemoLayout & { witness: DemoWitnessLayout }): string[] {
  return [
    `node.stateDir=${join(layout.dir, 'state-witness')}`,
    `heartbeat.keyFile=${layout.keyFile}`,
    `heartbeat.listen=${layout.witness.heartbeatListen}`,
    `metrics.listen=${layout.witness.metricsListen}`,
    `arbiter.leaseMs=${DEMO_LEASE_MS}`,
    'log.level=info',
  ];
}

const asArgs = (sets: string[]) => sets.flatMap((s) => ['--set', s]);

/**
 * The processes to start, in order: the witness first when there is one (the agents dial it), then
 * the two agents.
 */
export function demoProcesses(layout: DemoLayout): DemoProcessSpec[] {
  const w = layout.witness;
  const witness: DemoProcessSpec[] = w ? [{ kind: 'witness', name: 'witness', args: ['run', '--config', DEMO_WITNESS_CONFIG, ...asArgs(witnessSets({ ...layout, witness: w }))] }] : [];
  return [
    ...witness,
    ...DEMO_SIDES.map((side): DemoProcessSpec => ({ kind: 'agent', side, name: side, args: ['run', '--config', DEMO_EXAMPLE_CONFIGS[side], ...asArgs(agentSets(layout, side))] })),
  ];
}
