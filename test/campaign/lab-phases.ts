/**
 * The campaign's lab: one LabColo (test/lab/lab-colo.ts: the real COLO pair in the lab's
 * namespaces, host a primary and host b secondary at bring-up, the witness on host w) plus what a
 * lifecycle needs on top of it: which host runs the primary now, each host's current QEMU (its
 * agent QMP socket, its pid), every agent process ever started on a host, the QEMU fleet that
 * follows every QEMU (qemu-fleet.ts), and the ways to bring the pair into each phase of the
 * matrix.
 *
 * How a phase is made (each from the one before, as in test/e2e/separate-hosts.test.ts):
 * - steady: both agents started on the pair, peers up, the primary holding the witness's lease;
 * - after-primary-failover: steady, then power loss of b (nft drop, then SIGKILL of all of b):
 *   a runs the primary failover and runs solo; b powered on, its agent started again without
 *   qemu.launch, so b runs an agent and no QEMU;
 * - after-secondary-failover: the same with a lost: b runs the secondary failover;
 * - during-resync: after-primary-failover, the disk given data to copy (qemu-io on a's quorum
 *   drive), then b's agent restarted with qemu.launch: it launches a fresh secondary, a starts the
 *   resume, and a's drive-mirror copies the disk over NBD through a shaper this harness put on a's
 *   replication link (tc htb on the NBD port only: the agent has no speed setting) so that the copy
 *   lasts RESYNC_THROTTLED_MS or so; the fault hits while it runs, the shaper goes when the copy
 *   stops. Not block-job-set-speed once the job runs: QEMU 11.1's mirror puts a whole buffer
 *   (16 MiB) in flight inside the drive-mirror command, before any speed set after it can act, so
 *   the data was copied at full speed in ~60 ms (7.2 copied it throttled);
 * - failback-kept: after-primary-failover, then b back with qemu.launch: COLO resumed, a primary;
 * - failback-swapped: after-secondary-failover, then a back with qemu.launch: COLO, b primary;
 * - second-failover: failback-swapped, then power loss of b (the new primary): a runs the
 *   secondary failover; b powered on, its agent only.
 *
 * A host "comes back" (relaunch) the way a repaired machine does: whatever still runs on it is
 * killed (a reboot), then its agent starts with qemu.launch and a fresh secondary command line
 * (new empty disk and overlays, a harness QMP socket the fleet follows).
 */
import { writeFileSync, readFileSync, chmodSync } from 'node:fs';
import { join } from 'node:path';
import { freshSecondaryCommand } from '../../src/qemu/colo-launch.js';
import type { QmpEvent } from '../../src/qmp/index.js';
import { agentState, logMsg, startAgent, type AgentProcess } from '../helpers/agent-process.js';
import { waitFailoverDone, WITNESS_CONFIG, type AgentStatusJson, type FailoverTiming } from '../helpers/colo-agents.js';
import type { SkippableTest } from '../helpers/colo-pair.js';
import { BRING_UP_HOST, startLabColoOrSkip, peerOf, steadyProblems, waitAgentStatuses, type LabColo, type PairHost } from '../lab/lab-colo.js';
import type { Phase } from './matrix.js';
import { run } from '../lab/netns.js';
import { QemuFleet } from './qemu-fleet.js';

export const WAIT_MS = 20_000;
/** drive-mirror of the disk and migration of the guest's RAM under TCG on 2 busy cores. */
export const RESUME_WAIT_MS = 60_000;
/** The disk: small, the resync copies all of it. */
export const DISK_MB = 32;
/** How much of the disk during-resync fills with data (unallocated clusters cost the mirror nothing). */
const RESYNC_DATA_MB = 16;
/**
 * The throttled copy's speed (the NBD flow's shaped rate): RESYNC_DATA_MB at this rate is the
 * window the fault hits in. 2 MiB/s: an 8 s window, wide enough that a loaded machine still
 * reaches the fault while it runs (4 MiB/s missed it once in CI). Only data is shaped: the
 * mirror's zero writes of the unallocated rest carry no payload over NBD.
 */
const RESYNC_SPEED_BYTES = 2 * 1024 * 1024;
export const RESYNC_THROTTLED_MS = Math.round((RESYNC_DATA_MB * 1024 * 1024 * 1000) / RESYNC_SPEED_BYTES);

/** The pair's bring-up role of a host (freshSecondaryCommand and the pair's sides name hosts so). */
const BRING_UP: Record<PairHost, 'primary' | 'secondary'> = { [BRING_UP_HOST.primary]: 'primary', [BRING_UP_HOST.secondary]: 'secondary' } as Record<PairHost, 'primary' | 'secondary'>;

export interface TrialLabOptions {
  /** failover.unresponsivePeerMs (a frozen peer is fenced after this much silence). */
  unresponsivePeerMs: number;
  /** Give the agents failover.fenceCommand: kill every process of the peer's namespace. */
  fence: boolean;
}

interface HostNow {
  /** qemu.qmp of the host's agent: its current QEMU's agent socket. */
  qmp: string;
  /** qemu.launch sets, when the host's agent launches its QEMU. */
  launchSets: string[];
  /** The pid of the host's current QEMU, if known. */
  qemuPid: () => number | undefined;
  /** How many agents the host has had. */
  agents: AgentProcess[];
}

export class TrialLab {
  /** The host whose QEMU runs the primary (or the solo guest) now. */
  primary: PairHost = 'a';
  readonly fleet = new QemuFleet();
  private readonly hosts: Record<PairHost, HostNow>;
  private readonly extraSets: string[];
  private witnessProc: AgentProcess | undefined;
  private readonly witnessHistory: AgentProcess[] = [];
  /** during-resync: when the throttled copy started running, by QEMU's stamp. */
  resyncStartedAt: number | undefined;
  /** during-resync: when the throttled copy stopped running (ready, cancelled, failed), by QEMU's stamp. */
  resyncEndedAt: number | undefined;

  private constructor(
    readonly lc: LabColo,
    private readonly t: SkippableTest,
    opts: TrialLabOptions,
  ) {
    const { pair } = lc;
    this.hosts = {
      a: { qmp: pair.side('primary').agentQmpAddress, launchSets: [], qemuPid: () => pair.side('primary').pid, agents: [] },
      b: { qmp: pair.side('secondary').agentQmpAddress, launchSets: [], qemuPid: () => pair.side('secondary').pid, agents: [] },
    };
    this.extraSets = [`failover.unresponsivePeerMs=${opts.unresponsivePeerMs}`];
    if (opts.fence) this.extraSets.push(`failover.fenceCommand=${this.writeFenceScript()}`);
    this.witnessProc = lc.witness;
    this.fleet.follow('a', pair.side('primary').qmp);
    this.fleet.follow('b', pair.side('secondary').qmp);
  }

  /** A fresh lab with the pair in COLO and the witness up (no agents yet); undefined after a skip. */
  static async open(t: SkippableTest, opts: TrialLabOptions): Promise<TrialLab | undefined> {
    const lc = await startLabColoOrSkip(t, { arbiter: 'witness', diskSizeMb: DISK_MB });
    if (!lc) return undefined;
    const tl = new TrialLab(lc, t, opts);
    t.teardown(() => tl.fleet.close());
    return tl;
  }

  get secondary(): PairHost {
    return peerOf(this.primary);
  }

  /** The fence: run by the surviving agent inside its own namespace, where `ip netns pids` still sees the peer's. */
  private writeFenceScript(): string {
    const { lab } = this.lc;
    const path = join(this.lc.dir, 'fence.sh');
    const arm = (h: PairHost) => `  ${lab.addr(h, 'rep')}|${lab.addr(h, 'mgmt')}) ns=${lab.ns(h)} ;;`;
    writeFileSync(
      path,
      [
        '#!/bin/sh',
        '# campaign fence: SIGKILL every process of the peer host (its network namespace)',
        'case "$COLO_AGENT_PEER_HOST" in',
        arm('a'),
        arm('b'),
        '  *) echo "fence: unknown peer host $COLO_AGENT_PEER_HOST" >&2; exit 1 ;;',
        'esac',
        'ip netns pids "$ns" | xargs -r kill -9',
        '',
      ].join('\n'),
    );
    chmodSync(path, 0o755);
    return path;
  }

  /** The host's current agent (the last started). */
  agent(h: PairHost): AgentProcess | undefined {
    return this.hosts[h].agents.at(-1);
  }

  /** Every agent process the host has had, oldest first. */
  agentsOf(h: PairHost): readonly AgentProcess[] {
    return this.hosts[h].agents;
  }

  get witness(): AgentProcess | undefined {
    return this.witnessProc;
  }

  qemuPid(h: PairHost): number | undefined {
    return this.hosts[h].qemuPid();
  }

  /** Start `h`'s agent on its current QEMU socket (and qemu.launch sets, if it launches). */
  async startAgent(h: PairHost): Promise<AgentProcess> {
    const a = await this.lc.startAgent(h, this.hosts[h].qmp, [...this.extraSets, ...this.hosts[h].launchSets]);
    this.hosts[h].agents.push(a);
    return a;
  }

  /** The host comes back repaired: everything on it killed, then its agent with qemu.launch and a fresh secondary command. */
  async relaunch(h: PairHost): Promise<AgentProcess> {
    await this.lc.lab.crash(h);
    const cmd = await freshSecondaryCommand({ pair: this.lc.pair, host: BRING_UP[h] });
    const stateDir = this.lc.stateDir(h);
    this.hosts[h].qmp = cmd.agentQmpAddress;
    this.hosts[h].launchSets = ['qemu.launch.enabled=true', `qemu.launch.secondaryCommand=${JSON.stringify(cmd.argv)}`, 'qemu.launch.restart=no'];
    this.hosts[h].qemuPid = () => {
      try {
        return (JSON.parse(readFileSync(join(stateDir, 'qemu-launch.json'), 'utf8')) as { pid: number }).pid;
      } catch {
        return undefined;
      }
    };
    this.fleet.followAddress(h, cmd.harnessQmpAddress);
    return this.startAgent(h);
  }

  /** SIGKILL the host's agent only; resolves once it is gone. */
  async killAgent(h: PairHost): Promise<void> {
    const a = this.agent(h);
    if (!a?.alive) return;
    this.lc.lab.killProcess(a.pid);
    await a.exited;
  }

  /** SIGKILL the host's QEMU only. */
  killQemu(h: PairHost): void {
    const pid = this.qemuPid(h);
    if (pid === undefined) throw new Error(`no QEMU pid known on host ${h}`);
    this.lc.lab.killProcess(pid);
  }

  killWitness(): void {
    if (this.witnessProc) this.lc.lab.killProcess(this.witnessProc.pid);
  }

  /** Start the witness again with the same config and state dir (as restartWitness of colo-agents.ts does on loopback). */
  async restartWitness(): Promise<AgentProcess> {
    const old = this.witnessProc;
    if (!old) throw new Error('no witness in this lab');
    if (old.alive) this.killWitness();
    await old.exited;
    const sets = old.args.flatMap((arg, i) => (old.args[i - 1] === '--set' ? [arg] : []));
    const next = await startAgent({ t: this.t, name: 'witness (w)', config: WITNESS_CONFIG, ready: logMsg('witness listening'), wrap: this.lc.lab.wrap('w', []), sets });
    this.witnessHistory.push(next);
    this.witnessProc = next;
    return next;
  }

  /** Every agent's last lines (witness restarts included), for a failure message. */
  transcript(lines = 40): string {
    const later = this.witnessHistory.map((a) => `--- ${a.name}, pid ${a.pid}${a.alive ? '' : ' (ended)'}:\n${a.tail(lines)}`);
    return [this.lc.transcript(lines), ...later].join('\n');
  }

  // ---- waiting ----

  /** Both agents peer-up and the witness reachable, the primary holding the lease; '' or why not. */
  async waitSteady(timeoutMs = WAIT_MS): Promise<string> {
    return this.waitAgents(timeoutMs, (st) => steadyProblems('witness', this.primary, st));
  }

  /** Solo: the primary's agent solo with the lease, the other host's agent up and seeing it. */
  async waitSolo(timeoutMs = WAIT_MS): Promise<string> {
    return this.waitAgents(timeoutMs, (st) => {
      const problems: string[] = [];
      if (st[this.primary].state !== 'solo') problems.push(`${this.primary} ${st[this.primary].state}`);
      if (st[this.primary].peer.state !== 'up') problems.push(`${this.primary} sees the peer ${st[this.primary].peer.state}`);
      if (st[this.secondary].peer.state !== 'up') problems.push(`${this.secondary} sees the peer ${st[this.secondary].peer.state}`);
      if (!((st[this.primary].arbiter.leaseRemainingMs ?? 0) > 0)) problems.push(`${this.primary} holds no lease`);
      return problems;
    });
  }

  private waitAgents(timeoutMs: number, problemsOf: (st: Record<PairHost, AgentStatusJson>) => string[]): Promise<string> {
    return waitAgentStatuses(this.lc, timeoutMs, problemsOf);
  }

  /** COLO seen back in QEMU (a primary and a secondary on the two hosts); the time, or undefined. */
  waitColo(timeoutMs = RESUME_WAIT_MS): Promise<number | undefined> {
    return this.fleet.waitFor((f) => f.coloUp(), timeoutMs);
  }

  // ---- phases ----

  /** Lose host `h` for good (power loss), wait for the survivor's failover; the survivor becomes the primary. */
  private async lose(h: PairHost): Promise<FailoverTiming> {
    const survivor = this.agent(peerOf(h))!;
    const since = survivor.cursor();
    const at = Date.now();
    await this.lc.lab.powerLoss(h);
    const fo = await waitFailoverDone(survivor, since, at, WAIT_MS);
    await survivor.waitForLog(agentState('solo'), WAIT_MS, { since });
    this.primary = peerOf(h);
    return fo;
  }

  /** Host `h` powered on with its agent only (no QEMU), a solo primary beside it. */
  private async backWithoutQemu(h: PairHost): Promise<void> {
    await this.lc.lab.powerOn(h);
    await this.startAgent(h);
    must(await this.waitSolo(), `solo with ${h} back (agent only)`);
  }

  /** The returning host `h` gets a fresh secondary; COLO resumed with the current primary. */
  private async failback(h: PairHost): Promise<void> {
    await this.relaunch(h);
    if ((await this.waitColo()) === undefined) throw new PhaseError(`replication did not resume into ${h} within ${RESUME_WAIT_MS} ms`);
    must(await this.waitSteady(), `steady after the failback into ${h}`);
  }

  /** Bring the pair into `phase`; the hosts of the roles then are this.primary / this.secondary. */
  async reach(phase: Phase): Promise<void> {
    await Promise.all([this.startAgent('a'), this.startAgent('b')]);
    must(await this.waitSteady(), 'steady');
    switch (phase) {
      case 'steady':
        return;
      case 'after-primary-failover':
        await this.lose('b');
        return this.backWithoutQemu('b');
      case 'after-secondary-failover':
        await this.lose('a');
        return this.backWithoutQemu('a');
      case 'during-resync':
        await this.lose('b');
        await this.backWithoutQemu('b');
        await this.fillDisk(this.primary);
        return this.startThrottledResync('b');
      case 'failback-kept':
        await this.lose('b');
        await this.backWithoutQemu('b');
        return this.failback('b');
      case 'failback-swapped':
        await this.lose('a');
        await this.backWithoutQemu('a');
        return this.failback('a');
      case 'second-failover':
        await this.lose('a');
        await this.backWithoutQemu('a');
        await this.failback('a');
        await this.lose('b');
        return this.backWithoutQemu('b');
    }
  }

  /** Data on the solo primary's disk, so that the resync has something to copy. */
  private async fillDisk(h: PairHost): Promise<void> {
    const client = this.primaryClient(h);
    const line = `qemu-io ${this.lc.pair.colo.disk} "write -P 0x5a 0 ${RESYNC_DATA_MB}M"`;
    const out = await client.execute<string>('human-monitor-command', { 'command-line': line }, { timeoutMs: 30_000 });
    if (/error|fail/i.test(out)) throw new PhaseError(`qemu-io on ${h}: ${out.trim()}`);
  }

  /** The harness's own client of `h`'s QEMU (only the pair's: a launched QEMU's is the fleet's). */
  private primaryClient(h: PairHost) {
    return this.lc.pair.side(BRING_UP[h]).qmp;
  }

  /** Relaunch `h` with the NBD flow to it shaped; resolves once the primary's first drive-mirror job runs. */
  private async startThrottledResync(h: PairHost): Promise<void> {
    const client = this.primaryClient(this.primary);
    const unshape = await this.shapeNbd(this.primary);
    this.t.teardown(unshape);
    let job: unknown;
    const running = new Promise<void>((resolve) => {
      const onEvent = (e: QmpEvent) => {
        if (e.event !== 'JOB_STATUS_CHANGE') return;
        if (job === undefined && e.data.status === 'running') {
          job = e.data.id;
          this.resyncStartedAt = e.timestampMs;
          resolve();
        } else if (e.data.id === job && e.data.status !== 'running') {
          // ready (copied), or aborting / concluded: the copy the fault was meant to hit is over.
          client.off('event', onEvent);
          this.resyncEndedAt = e.timestampMs;
          void unshape();
        }
      };
      client.on('event', onEvent);
      this.t.teardown(() => client.off('event', onEvent));
    });
    await this.relaunch(h);
    await withTimeout(running, RESUME_WAIT_MS, `no drive-mirror job started on ${this.primary} within ${RESUME_WAIT_MS} ms`);
  }

  /**
   * Shape what `from` sends to the NBD port (the drive-mirror's writes, later the replication's)
   * to RESYNC_SPEED_BYTES on its replication link; everything else passes unshaped. Returns the
   * undo (idempotent, never throws: the namespace may be gone).
   */
  private async shapeNbd(from: PairHost): Promise<() => Promise<void>> {
    const { lab, pair } = this.lc;
    const dev = ['dev', 'rep0'];
    const tc = (...args: string[]) => run(['tc', '-n', lab.ns(from), ...args]);
    const steps = [
      ['qdisc', 'add', ...dev, 'root', 'handle', '1:', 'htb'],
      ['class', 'add', ...dev, 'parent', '1:', 'classid', '1:10', 'htb', 'rate', `${RESYNC_SPEED_BYTES * 8}bit`, 'ceil', `${RESYNC_SPEED_BYTES * 8}bit`],
      ['filter', 'add', ...dev, 'parent', '1:', 'protocol', 'ip', 'prio', '1', 'u32', 'match', 'ip', 'dport', String(pair.colo.nbdPort), '0xffff', 'flowid', '1:10'],
    ];
    let shaped = true;
    const undo = async () => {
      if (!shaped) return;
      shaped = false;
      await tc('qdisc', 'del', ...dev, 'root');
    };
    for (const step of steps) {
      const r = await tc(...step);
      if (r.code !== 0) {
        await undo();
        throw new PhaseError(`tc ${step.join(' ')} in ${from}: ${r.stderr.trim()}`);
      }
    }
    return undo;
  }
}

/** The harness could not bring the pair where it wanted: not a verdict on the agents. */
export class PhaseError extends Error {}

function must(why: string, what: string): void {
  if (why !== '') throw new PhaseError(`${what}: ${why}`);
}

async function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([p, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new PhaseError(what)), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}
