/**
 * Bringing the demo up and taking it down: a temp dir with a fresh heartbeat key, the documented
 * QEMU COLO pair (src/qemu/colo-launch.ts) with its dirs inside that temp dir, the fault proxies
 * when the partition drill needs them, and the processes of plan.ts (the witness when there is
 * one, the agents), each with its metrics/status endpoint; then a wait until both agents see their
 * peer and their QEMU in COLO (and, with the witness, reach it while it holds the primary's lease).
 *
 * DemoResources owns everything started: stop() ends it in order (agents first, with a planned
 * stop, so they do not react to the QEMUs going; then the witness, the QEMUs, the proxies, the temp
 * dir), and killNow() does the same synchronously with SIGKILL for an exit handler. Every QEMU,
 * agent and witness pid is also given to the reaper (src/util/reaper.ts), which kills them and
 * removes the temp dir if the demo itself is SIGKILLed.
 */
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { fetchStatus } from '../commands/status.js';
import { keygen } from '../commands/keygen.js';
import { ColoAgentError } from '../errors.js';
import { ColoPairStartError, killAllColoPairsNow, pickColoPorts, startColoPair, type ColoPair } from '../qemu/colo-launch.js';
import { killAllQemusNow, type QemuLifecycleHooks } from '../qemu/qemu-process.js';
import { freePort } from '../util/free-port.js';
import { keepDir, reapOnDeath, release, removeDirOnDeath } from '../util/reaper.js';
import { leaseGuardMs } from '../arbiter/witness-server.js';
import { DemoAgent, recordTimeMs, type LogRecord } from './agent-child.js';
import { startPartitionWiring, type PartitionWiring } from './partition.js';
import { DEMO_HOSTS, DEMO_LEASE_MS, DEMO_SIDES, DEMO_WITNESS_HOST, demoProcesses, type DemoArbiter, type DemoLayout, type DemoSide } from './plan.js';
import { fetchWitnessStatus } from './snapshot.js';

const CLI = fileURLToPath(new URL('../cli.js', import.meta.url));

/** The demo's QEMUs and agents die with it, however it ends. */
export const REAP_WITH_DEMO: QemuLifecycleHooks = { spawned: reapOnDeath, exited: release };

export class DemoStartError extends ColoAgentError {
  constructor(message: string, opts: { cause?: unknown } = {}) {
    super('DEMO_START_FAILED', message, opts);
  }
}

export interface DemoRun {
  readonly dir: string;
  readonly pair: ColoPair;
  readonly agents: Readonly<Record<DemoSide, DemoAgent>>;
  readonly layout: DemoLayout;
  readonly partition?: PartitionWiring;
  readonly arbiter: DemoArbiter;
  /** The witness process (with `--arbiter witness`); its addresses are in layout.witness. */
  readonly witness?: DemoAgent;
  /** Date.now() when both agents saw the pair in COLO. */
  readonly since: number;
}

/** Everything the demo started, for an orderly stop or a last-moment kill. */
export class DemoResources {
  private dir: string | undefined;
  private readonly agents = new Set<DemoAgent>();
  /** Stopped after the agents: an agent that loses its arbiter first would only log about it. */
  private readonly witnesses = new Set<DemoAgent>();
  private readonly pairs = new Set<ColoPair>();
  private readonly wirings = new Set<PartitionWiring>();
  private stopping: Promise<void> | undefined;

  makeDir(): string {
    this.dir = mkdtempSync(join(tmpdir(), 'colo-agent-demo-'));
    removeDirOnDeath(this.dir);
    return this.dir;
  }

  addAgent(a: DemoAgent, kind: 'agent' | 'witness' = 'agent'): void {
    (kind === 'witness' ? this.witnesses : this.agents).add(a);
    if (a.pid > 0) {
      reapOnDeath(a.pid);
      void a.exited.then(() => release(a.pid));
    }
  }

  /** Whether a witness was started (for the stop message). */
  hasWitness(): boolean {
    return this.witnesses.size > 0;
  }

  addPair(p: ColoPair): void {
    this.pairs.add(p);
  }

  addWiring(w: PartitionWiring): void {
    this.wirings.add(w);
  }

  /** Stop what belongs to one failed bring-up attempt (the dir stays for the next). */
  async discard(parts: { agents?: DemoAgent[]; pair?: ColoPair; wiring?: PartitionWiring }): Promise<void> {
    await Promise.all((parts.agents ?? []).map((a) => a.stop(1000)));
    for (const a of parts.agents ?? []) (this.agents.delete(a), this.witnesses.delete(a));
    if (parts.pair) {
      await parts.pair.stop();
      this.pairs.delete(parts.pair);
    }
    if (parts.wiring) {
      await parts.wiring.close();
      this.wirings.delete(parts.wiring);
    }
  }

  /** Agents (planned stop), then the witness, QEMUs, proxies, the temp dir. Idempotent. */
  stop(): Promise<void> {
    this.stopping ??= (async () => {
      await Promise.all([...this.agents].map((a) => a.stop(3000)));
      await Promise.all([...this.witnesses].map((a) => a.stop(3000)));
      await Promise.all([...this.pairs].map((p) => p.stop()));
      await Promise.all([...this.wirings].map((w) => w.close()));
      if (this.dir) {
        rmSync(this.dir, { recursive: true, force: true });
        keepDir(this.dir); // gone already: nothing for the reaper to do
      }
    })();
    return this.stopping;
  }

  /** SIGKILL everything and remove the temp dir, synchronously (for an 'exit' handler). */
  killNow(): void {
    for (const a of [...this.agents, ...this.witnesses]) a.kill('SIGKILL');
    killAllColoPairsNow();
    killAllQemusNow();
    if (this.dir) rmSync(this.dir, { recursive: true, force: true });
  }
}

export interface BringUpOptions {
  /** Put fault proxies between the sides (the partition drill). */
  withProxies: boolean;
  /** witness: start one on 127.0.0.3 and make it both agents' arbiter. Default 'witness'. */
  arbiter?: DemoArbiter;
  progress: (line: string) => void;
  /** Default 64. */
  diskSizeMb?: number;
  /** For the agents to see the peer up and the pair in COLO. Default 30000. */
  readyTimeoutMs?: number;
}

export type BringUpResult = { ok: true; run: DemoRun } | { ok: false; reason: string };

const IN_USE = /EADDRINUSE|address already in use/i;

/** Up to 3 attempts: a port picked free can be taken by someone else before it is bound. */
export async function bringUp(res: DemoResources, opts: BringUpOptions): Promise<BringUpResult> {
  const dir = res.makeDir();
  const keyFile = join(dir, 'heartbeat.key');
  await keygen(keyFile, false);
  for (const name of [...DEMO_SIDES, 'witness']) mkdirSync(join(dir, `state-${name}`), { recursive: true });
  for (let attempt = 1; ; attempt++) {
    try {
      return await attemptBringUp(res, dir, keyFile, opts);
    } catch (err) {
      const inUse = (err instanceof ColoPairStartError && err.addressInUse) || (err instanceof PortInUse);
      if (!inUse || attempt >= 3) throw err instanceof PortInUse ? new DemoStartError(err.message) : err;
      opts.progress(`a port was taken meanwhile; trying again with new ones (attempt ${attempt + 1} of 3)`);
    }
  }
}

class PortInUse extends Error {}

async function attemptBringUp(res: DemoResources, dir: string, keyFile: string, opts: BringUpOptions): Promise<BringUpResult> {
  const heartbeatPort: Record<DemoSide, number> = { primary: await freePort(DEMO_HOSTS.primary), secondary: await freePort(DEMO_HOSTS.secondary) };
  const metricsListen: Record<DemoSide, string> = {
    primary: `${DEMO_HOSTS.primary}:${await freePort(DEMO_HOSTS.primary)}`,
    secondary: `${DEMO_HOSTS.secondary}:${await freePort(DEMO_HOSTS.secondary)}`,
  };
  const arbiter = opts.arbiter ?? 'witness';
  const witnessLayout =
    arbiter === 'witness'
      ? { heartbeatListen: `${DEMO_WITNESS_HOST}:${await freePort(DEMO_WITNESS_HOST)}`, metricsListen: `${DEMO_WITNESS_HOST}:${await freePort(DEMO_WITNESS_HOST)}` }
      : undefined;
  let wiring: PartitionWiring | undefined;
  let pair: ColoPair | undefined;
  const agents: DemoAgent[] = [];
  try {
    const ports = opts.withProxies ? await pickColoPorts() : undefined;
    if (ports) {
      wiring = await startPartitionWiring(ports, heartbeatPort);
      res.addWiring(wiring);
      opts.progress(`fault proxies on every link between the sides (${wiring.proxies.length} proxies)`);
    }
    opts.progress('starting the QEMU COLO pair (TCG) ...');
    const r = await startColoPair({
      colo: { primaryHost: DEMO_HOSTS.primary, secondaryHost: DEMO_HOSTS.secondary, ...ports },
      ...(wiring && { dial: wiring.dial }),
      workDir: dir,
      diskSizeMb: opts.diskSizeMb ?? 64,
      lifecycle: REAP_WITH_DEMO,
    });
    if (!r.ok) {
      await res.discard({ wiring });
      return { ok: false, reason: r.reason };
    }
    pair = r.pair;
    res.addPair(pair);
    opts.progress(`QEMU ${r.pair.version.major}.${r.pair.version.minor}.${r.pair.version.micro} pair in COLO after ${Math.round(r.pair.timings.totalMs)} ms`);

    const p = pair;
    const layout: DemoLayout = {
      dir,
      keyFile,
      colo: p.colo,
      agentQmp: { primary: p.primary.agentQmpAddress, secondary: p.secondary.agentQmpAddress },
      heartbeatListen: { primary: `${DEMO_HOSTS.primary}:${heartbeatPort.primary}`, secondary: `${DEMO_HOSTS.secondary}:${heartbeatPort.secondary}` },
      heartbeatPeer: wiring?.heartbeatPeer ?? {
        primary: `${DEMO_HOSTS.secondary}:${heartbeatPort.secondary}`,
        secondary: `${DEMO_HOSTS.primary}:${heartbeatPort.primary}`,
      },
      metricsListen,
      ...(wiring && { coloFor: wiring.coloFor }),
      ...(witnessLayout && { witness: witnessLayout }),
    };
    // One line either way (the pair line above no longer announces the agents as well).
    opts.progress(witnessLayout ? `starting the witness on ${witnessLayout.heartbeatListen} and the agents ...` : 'starting the agents ...');
    const started: Partial<Record<DemoSide, DemoAgent>> = {};
    let witness: DemoAgent | undefined;
    for (const spec of demoProcesses(layout)) {
      const a = new DemoAgent(spec.name, CLI, spec.args);
      agents.push(a);
      res.addAgent(a, spec.kind);
      if (spec.kind === 'witness') witness = a;
      else started[spec.side] = a;
    }
    const ready = (r: LogRecord) => r.msg === 'heartbeat links started' || r.msg === 'witness listening';
    await Promise.all(
      agents.map(async (a) => {
        try {
          await a.waitFor('start', ready, 15_000);
        } catch (err) {
          const stderr = a.entries().filter((e) => e.stream === 'stderr').map((e) => e.line).join('\n');
          if (IN_USE.test(stderr) || IN_USE.test((err as Error).message)) throw new PortInUse(`the ${a.name} agent could not bind its port`);
          throw new DemoStartError(`the ${a.name} agent did not start: ${(err as Error).message}`, { cause: err });
        }
      }),
    );
    const run: DemoRun = {
      dir,
      pair: p,
      agents: started as Record<DemoSide, DemoAgent>,
      layout,
      ...(wiring && { partition: wiring }),
      arbiter,
      ...(witness && { witness }),
      since: 0,
    };
    await waitReady(run, opts.readyTimeoutMs ?? 30_000);
    return { ok: true, run: { ...run, since: Date.now() } };
  } catch (err) {
    await res.discard({ agents, pair, wiring });
    throw err;
  }
}

/** When the witness logged that it listens (its grants' clock started just before). */
function witnessStartedAt(w: DemoAgent): number {
  const r = w.records().find((x) => x.msg === 'witness listening');
  return r ? recordTimeMs(r) : Date.now();
}

/**
 * Both agents see the peer up and their own QEMU in its COLO mode (asked over /status); with the
 * witness, both also reach it, it names the primary as the holder of the current epoch, the
 * primary holds a lease, and the witness's start-up window is over, so a drill starts from the
 * protected steady state.
 */
async function waitReady(run: DemoRun, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = '';
  for (;;) {
    const states = await Promise.all(
      DEMO_SIDES.map(async (side) => {
        const a = run.agents[side];
        if (!a.alive) throw new DemoStartError(`the ${side} agent exited (${a.describeExit()}) while the demo started\n${a.tail()}`);
        const st = await fetchStatus(run.layout.metricsListen[side], 1000).catch(() => undefined);
        const arbiterOk = !run.witness || (st?.arbiter?.reachable === true && (side === 'secondary' || (st.arbiter.leaseRemainingMs ?? 0) > 0));
        return { side, st, ok: st?.peer.state === 'up' && st.qemu.colo.mode === side && arbiterOk };
      }),
    );
    const w = run.witness;
    let witnessOk = true;
    let witnessLine = '';
    if (w && run.layout.witness) {
      if (!w.alive) throw new DemoStartError(`the witness exited (${w.describeExit()}) while the demo started\n${w.tail()}`);
      const ws = await fetchWitnessStatus(run.layout.witness.metricsListen, 1000);
      const primaryNode = states.find((s) => s.side === 'primary')?.st?.node;
      // A witness that has just started grants nothing to a node it has no file record of
      // within leaseMs + guard of its start (it cannot know which leases its previous
      // incarnation gave): a drill in that window would measure the window, not the steady state.
      const windowEnds = witnessStartedAt(w) + DEMO_LEASE_MS + leaseGuardMs(DEMO_LEASE_MS);
      const inWindow = Date.now() < windowEnds;
      witnessOk = !inWindow && ws !== undefined && primaryNode !== undefined && ws.holder === primaryNode && (ws.leaseRemainingMs ?? 0) > 0;
      witnessLine = `; witness: ${ws ? `epoch ${ws.epoch}, holder ${ws.holder ?? 'none'}, lease ${ws.leaseRemainingMs ?? '-'} ms` : 'no /status'}${inWindow ? ', in its start-up window' : ''}`;
    }
    if (states.every((s) => s.ok) && witnessOk) return;
    last =
      states
        .map((s) => `${s.side}: ${s.st ? `state ${s.st.state}, peer ${s.st.peer.state}, COLO ${s.st.qemu.colo.mode}${run.witness ? `, arbiter ${s.st.arbiter?.reachable ? 'reachable' : 'unreachable'}${s.st.arbiter?.leaseRemainingMs !== undefined ? ` (lease ${Math.round(s.st.arbiter.leaseRemainingMs)} ms)` : ''}` : ''}` : 'no /status'}`)
        .join('; ') + witnessLine;
    if (Date.now() > deadline) throw new DemoStartError(`the agents did not see the pair in COLO within ${timeoutMs} ms (${last})`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
