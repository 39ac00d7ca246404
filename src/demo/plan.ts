/**
 * What the demo starts besides QEMU: the list of processes, each with its command line. One place,
 * so that adding a process (the witness, once arbitration exists) is one entry here plus the
 * `arbiter.*` keys of the agents. Pure: no process is started here (see commands/demo.ts).
 */
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ColoConfig } from '../config/types.js';

export type DemoSide = 'primary' | 'secondary';
export const DEMO_SIDES: readonly DemoSide[] = ['primary', 'secondary'];

/** The documented pair on one machine: the primary on 127.0.0.1, the secondary on 127.0.0.2. */
export const DEMO_HOSTS: Readonly<Record<DemoSide, string>> = { primary: '127.0.0.1', secondary: '127.0.0.2' };

export const otherSide = (side: DemoSide): DemoSide => (side === 'primary' ? 'secondary' : 'primary');

/** The shipped example configs of the two-host pair on loopback; the demo overrides what it must. */
export const DEMO_EXAMPLE_CONFIGS: Readonly<Record<DemoSide, string>> = {
  primary: fileURLToPath(new URL('../../config/examples/primary.yaml', import.meta.url)),
  secondary: fileURLToPath(new URL('../../config/examples/secondary.yaml', import.meta.url)),
};

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
}

export interface DemoProcessSpec {
  /** 'witness' joins with arbitration. */
  kind: 'agent';
  /** Which side it belongs to (a witness will belong to neither). */
  side: DemoSide;
  /** Shown in the view and in messages. */
  name: string;
  /** Arguments after `node dist/cli.js`. */
  args: string[];
}

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
  ];
}

/**
 * The processes to start, in order: today the two agents. The witness goes here once arbitration
 * exists (`{ kind: 'witness', ... }` with its own listen address), and the agents' sets gain
 * `arbiter.mode=witness` and the witness's address.
 */
export function demoProcesses(layout: DemoLayout): DemoProcessSpec[] {
  return DEMO_SIDES.map((side) => ({
    kind: 'agent' as const,
    side,
    name: side,
    args: ['run', '--config', DEMO_EXAMPLE_CONFIGS[side], ...agentSets(layout, side).flatMap((s) => ['--set', s])],
  }));
}
