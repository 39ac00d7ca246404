/**
 * The campaign's eyes: every QEMU process of a trial (the pair's two, and every fresh secondary an
 * agent launches through qemu.launch, on the harness QMP socket its command line carries), each
 * followed from QEMU itself: its own stamped STOP / RESUME / COLO_EXIT events, and a poll of
 * query-status + query-colo-status every POLL_MS (50 ms).
 *
 * The state that matters is the verdict's "running primary": running AND COLO mode not
 * `secondary`. Every change is recorded as [time, running primary] on the host's wall clock
 * (QEMU stamps events with it, so events and polls share one clock), and the timeline handed to
 * judge() is sorted by time. Stamps lean towards finding overlaps, never hiding one:
 * - an event's change is stamped with QEMU's own stamp, however late the event arrives (an
 *   isolated 7.2 primary's main loop can hold its QMP output for seconds);
 * - a change only a poll shows (a mode change without an event) is stamped, when it makes the
 *   QEMU a running primary, at the previous poll's send time (the earliest it can have
 *   happened), and when it ends one, at the reply (the latest);
 * - a poll in flight is never doubled: a stalled QEMU keeps its last known state (a frozen or
 *   stuck QEMU cannot change it) until its events or a reply say otherwise;
 * - a RESUME of a QEMU that was not seen running before (a fresh secondary coming out of its
 *   incoming migration, which enters COLO secondary) is held until the next poll says the mode;
 *   if that poll says it is not `secondary`, it ran as primary from the RESUME's stamp on;
 * - a QEMU whose QMP connection drops is dead from the moment this process saw the drop (later
 *   than its real death: an overlap is only ever over-reported).
 * One QMP connection carries both the events and the replies in the order QEMU wrote them, so
 * the points are kept in that order (never sorted: a poll's early stamp must not jump ahead of a
 * change that came before it), each stamp at least the previous one; and a reply that an event
 * followed on the wire is stale and dropped (the event is newer): which reply came before which
 * event is read from the client's synchronous `command` record, not from the promise (a promise
 * settles after the rest of the data chunk, events included, has been handled).
 */
import { QmpClient, type QmpCommandRecord, type QmpEvent, type QmpStatusChange } from '../../src/qmp/index.js';
import type { HostName, QemuTimeline } from './verdict.js';

export const POLL_MS = 50;
/** The mode poll after a COLO_EXIT(error), for up to FAST_POLL_FOR_MS. */
const FAST_POLL_MS = 10;
const FAST_POLL_FOR_MS = 10_000;

export interface QemuNow {
  id: string;
  host: HostName;
  alive: boolean;
  /** Seen answering at least once. */
  connected: boolean;
  running: boolean | undefined;
  status: string | undefined;
  mode: string | undefined;
  runningPrimary: boolean;
}

type Point = [number, boolean];

class WatchedQemu {
  readonly points: Point[] = [];
  readonly events: string[] = [];
  alive = true;
  connected = false;
  running: boolean | undefined;
  status: string | undefined;
  mode: string | undefined;
  private rp = false;
  private everRunning = false;
  /** A RESUME stamp whose meaning (COLO secondary or not) the next poll decides. */
  private pendingResumeAt: number | undefined;
  private lastAskedAt: number | undefined;
  private inFlight = false;
  private timer: NodeJS.Timeout | undefined;
  private fastTimer: NodeJS.Timeout | undefined;
  private readonly offs: Array<() => void> = [];
  /** Bumped by every event that changes the state: a reply that an event followed is stale. */
  private seq = 0;
  /** Per query, FIFO: the seq at each reply (the client records a command synchronously as its reply is read). */
  private readonly replySeq: Record<string, number[]> = {};

  constructor(
    readonly id: string,
    readonly host: HostName,
    readonly client: QmpClient,
    private readonly ownsClient: boolean,
  ) {
    const onEvent = (e: QmpEvent) => this.onEvent(e);
    const onStatus = (s: QmpStatusChange) => this.onStatus(s);
    const onCommand = (r: QmpCommandRecord) => {
      if (r.command === 'query-status' || r.command === 'query-colo-status') (this.replySeq[r.command] ??= []).push(this.seq);
    };
    client.on('event', onEvent);
    client.on('status', onStatus);
    client.on('command', onCommand);
    this.offs.push(() => client.off('event', onEvent), () => client.off('status', onStatus), () => client.off('command', onCommand));
    if (client.status === 'ready' || client.status === 'unhealthy') this.connected = true;
    this.timer = setInterval(() => this.poll(), POLL_MS);
    this.poll();
  }

  now(): QemuNow {
    return { id: this.id, host: this.host, alive: this.alive, connected: this.connected, running: this.running, status: this.status, mode: this.mode, runningPrimary: this.alive && this.rp };
  }

  timeline(): QemuTimeline {
    const pts: Point[] = [...this.points];
    // Still undecided at the end: count it as having run as primary (never hide an overlap).
    if (this.pendingResumeAt !== undefined && this.alive && !this.rp) pts.push([Math.max(this.pendingResumeAt, pts.at(-1)?.[0] ?? 0), true]);
    const changes: Point[] = [];
    for (const p of pts) {
      const last = changes.at(-1);
      if (last && last[0] === p[0]) last[1] = p[1];
      else if (!last || last[1] !== p[1]) changes.push([p[0], p[1]]);
    }
    return { id: this.id, host: this.host, changes: changes.filter((c, i) => i === 0 || c[1] !== changes[i - 1]![1]) };
  }

  stop(): void {
    this.stopFast();
    clearInterval(this.timer);
    this.timer = undefined;
    for (const f of this.offs.splice(0)) f();
    if (this.ownsClient) void this.client.close();
  }

  private set(at: number, rp: boolean, why: string): void {
    this.events.push(`${at.toFixed(1)} ${why}${rp !== this.rp ? ` => running primary ${rp}` : ''}`);
    if (rp === this.rp && this.points.length > 0) return;
    this.rp = rp;
    this.points.push([Math.max(at, this.points.at(-1)?.[0] ?? at), rp]);
  }

  private runningPrimaryNow(): boolean {
    return this.alive && this.running === true && this.mode !== undefined && this.mode !== 'secondary';
  }

  private onEvent(e: QmpEvent): void {
    if (!this.alive) return;
    const at = e.timestampMs;
    if (e.event === 'STOP') {
      this.running = false;
      this.pendingResumeAt = undefined;
    } else if (e.event === 'RESUME') {
      this.running = true;
      if (!this.everRunning && this.mode !== 'secondary') {
        // Out of an incoming migration: COLO secondary (the poll will say), or not.
        this.seq++;
        this.pendingResumeAt = at;
        this.events.push(`${at.toFixed(1)} RESUME (first: held until the mode is known)`);
        return;
      }
      this.everRunning = true;
    } else if (e.event === 'COLO_EXIT') {
      if (e.data.reason === 'request') this.mode = 'none';
      else this.pollModeFast();
    } else return;
    this.seq++;
    this.set(at, this.runningPrimaryNow(), `${e.event}${e.event === 'COLO_EXIT' ? ` ${JSON.stringify(e.data)}` : ''}`);
  }

  private onStatus(s: QmpStatusChange): void {
    if (s.to === 'ready' || s.to === 'unhealthy') {
      this.connected = true;
      return;
    }
    if (this.connected && this.alive && (s.to === 'reconnecting' || s.to === 'disconnected' || s.to === 'closed')) {
      if (s.to === 'closed' && this.ownsClient && this.timer === undefined) return; // our own stop()
      this.alive = false;
      this.pendingResumeAt = undefined;
      this.set(Date.now(), false, `QMP ${s.to}: the process is gone (${s.reason})`);
      clearInterval(this.timer);
      this.timer = undefined;
      this.stopFast();
      if (this.ownsClient) void this.client.close();
    }
  }

  /**
   * After COLO_EXIT(error) a secondary stays in mode secondary until a failover command ends it,
   * with no event of its own: ask for the mode every FAST_POLL_MS meanwhile, so that the change's
   * stamp (the last send that still saw `secondary`) is that tight.
   */
  private pollModeFast(): void {
    if (this.fastTimer || this.mode !== 'secondary') return;
    let inFlight = false;
    const until = Date.now() + FAST_POLL_FOR_MS;
    this.fastTimer = setInterval(() => {
      if (inFlight) return;
      if (!this.alive || this.mode !== 'secondary' || Date.now() > until) return this.stopFast();
      inFlight = true;
      const askedAt = Date.now();
      const prevAskedAt = this.lastAskedAt ?? askedAt;
      this.ask<{ mode: string }>('query-colo-status')
        .then(({ value: colo, fresh }) => {
          if (!this.alive || this.mode !== 'secondary' || !fresh) return;
          this.lastAskedAt = Math.max(this.lastAskedAt ?? 0, askedAt);
          if (colo.mode === 'secondary') return;
          this.mode = colo.mode;
          this.stopFast();
          const rp = this.runningPrimaryNow();
          if (rp !== this.rp) this.set(rp ? prevAskedAt : Date.now(), rp, `polled mode ${colo.mode} (fast, after COLO_EXIT)`);
        })
        .catch(() => undefined)
        .finally(() => (inFlight = false));
    }, FAST_POLL_MS);
  }

  private stopFast(): void {
    clearInterval(this.fastTimer);
    this.fastTimer = undefined;
  }

  /** One query, and whether its reply is fresh (no state-changing event came after it on the wire). */
  private ask<T>(command: 'query-status' | 'query-colo-status'): Promise<{ value: T; fresh: boolean }> {
    const taken = () => this.replySeq[command]?.shift();
    return this.client.execute<T>(command, undefined, { timeoutMs: 60_000 }).then(
      (value) => ({ value, fresh: taken() === this.seq }),
      (err: unknown) => {
        taken();
        throw err;
      },
    );
  }

  private poll(): void {
    if (this.inFlight || !this.alive || !(this.client.status === 'ready' || this.client.status === 'unhealthy')) return;
    this.inFlight = true;
    const askedAt = Date.now();
    const prevAskedAt = this.lastAskedAt ?? askedAt;
    Promise.all([this.ask<{ running: boolean; status: string }>('query-status'), this.ask<{ mode: string }>('query-colo-status')])
      .then(([st, colo]) => {
        if (!this.alive) return;
        const repliedAt = Date.now();
        if (!st.fresh && !colo.fresh) return;
        if (st.fresh && colo.fresh) this.lastAskedAt = Math.max(this.lastAskedAt ?? 0, askedAt);
        if (st.fresh) {
          this.running = st.value.running;
          this.status = st.value.status;
          if (st.value.running) this.everRunning = true;
        }
        if (colo.fresh) this.mode = colo.value.mode;
        const what = `polled ${st.fresh ? st.value.status : '(stale)'}/${colo.fresh ? colo.value.mode : '(stale)'}`;
        const rp = this.runningPrimaryNow();
        if (this.pendingResumeAt !== undefined && colo.fresh) {
          const resumeAt = this.pendingResumeAt;
          this.pendingResumeAt = undefined;
          if (rp) {
            this.set(resumeAt, true, `RESUME held, then ${what}: ran as primary since the RESUME`);
            return;
          }
        }
        if (rp !== this.rp || this.points.length === 0) this.set(rp ? prevAskedAt : repliedAt, rp, what);
      })
      .catch(() => undefined) // gone or stuck: the status change or the next reply tells
      .finally(() => (this.inFlight = false));
  }
}

/** Every QEMU of one trial. */
export class QemuFleet {
  private readonly qemus: WatchedQemu[] = [];
  private readonly counters: Record<HostName, number> = { a: 0, b: 0 };

  /** Follow a QEMU through a connected client someone else owns (the pair's own clients). */
  follow(host: HostName, client: QmpClient): string {
    return this.add(host, client, false);
  }

  /** Follow the QEMU that will listen on `address` (a harness socket of a launched QEMU): dialled until it appears. */
  followAddress(host: HostName, address: string): string {
    const client = new QmpClient({ address, reconnect: { initialMs: 50, maxMs: 100 }, commandTimeoutMs: 60_000 });
    client.connect().catch(() => undefined);
    return this.add(host, client, true);
  }

  private add(host: HostName, client: QmpClient, owns: boolean): string {
    const id = `${host}#${++this.counters[host]}`;
    this.qemus.push(new WatchedQemu(id, host, client, owns));
    return id;
  }

  now(): QemuNow[] {
    return this.qemus.map((q) => q.now());
  }

  /** COLO seen on both hosts right now: a live QEMU in mode primary and one in mode secondary, on different hosts. */
  coloUp(): boolean {
    const live = this.now().filter((q) => q.alive);
    const p = live.find((q) => q.mode === 'primary');
    const s = live.find((q) => q.mode === 'secondary');
    return p !== undefined && s !== undefined && p.host !== s.host;
  }

  /** Resolves with the time `predicate` first held (polled every POLL_MS), or undefined after timeoutMs. */
  async waitFor(predicate: (f: QemuFleet) => boolean, timeoutMs: number): Promise<number | undefined> {
    const end = Date.now() + timeoutMs;
    for (;;) {
      if (predicate(this)) return Date.now();
      if (Date.now() >= end) return undefined;
      await new Promise((r) => setTimeout(r, POLL_MS));
    }
  }

  timelines(): QemuTimeline[] {
    return this.qemus.map((q) => q.timeline());
  }

  /** What each QEMU did, for a failure message. */
  describe(): string {
    return this.qemus.map((q) => `${q.id}:\n${q.events.map((e) => `    ${e}`).join('\n')}`).join('\n');
  }

  close(): void {
    for (const q of this.qemus) q.stop();
  }
}
