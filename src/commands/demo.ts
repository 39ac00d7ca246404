/**
 * `colo-agent demo [--drill kill-primary|kill-secondary|partition] [--arbiter witness|none]`: on
 * this one machine, the documented QEMU COLO pair (TCG) with the primary on 127.0.0.1 and the
 * secondary on 127.0.0.2, one agent per side and (by default) a witness on 127.0.0.3 that both
 * agents use as their arbiter (src/demo/plan.ts lists the processes), then
 * - without --drill: a live view of both agents (redrawn ~4 times a second on a terminal, one line
 *   per change otherwise) until Ctrl-C;
 * - with --drill: the fault, the timeline (injected, detected, started, done, total outage), and
 *   exit 0 when the expected side ends running the guest alone, else 1.
 * Exit 2 when QEMU cannot run here (one line says how to install it).
 *
 * Whatever ends the demo (the end of a drill, Ctrl-C, SIGTERM, a crash, a closed stdout), it stops
 * what it started: agents, witness, QEMUs, proxies, and its temp dir (src/demo/setup.ts, DemoResources).
 */
import { runDrill } from '../demo/drill.js';
import { compactLogLine } from '../demo/log-line.js';
import { watchOutages, type FailoverOutages } from '../demo/outage.js';
import { DEMO_LEASE_MS, DEMO_SIDES, DEMO_WITNESS_HOST, type DemoArbiter } from '../demo/plan.js';
import { bringUp, DemoResources, type DemoRun } from '../demo/setup.js';
import { takeSnapshot, type SnapshotSources } from '../demo/snapshot.js';
import { formatDrillReport, drillVerdict, type DrillKind } from '../demo/timeline.js';
import { lastKnown, renderView, viewChanges, type DemoSnapshot } from '../demo/view.js';
import { coloSupport } from '../qemu/colo-cmdline.js';
import { qemuAvailable, QEMU_INSTALL_HINT } from '../qemu/qemu-process.js';
import { findExecutable } from '../util/find-executable.js';

export const DEMO_NEEDS_QEMU = `colo-agent demo needs QEMU: ${QEMU_INSTALL_HINT}`;

export interface DemoOptions {
  drill?: DrillKind;
  /** witness (default): a witness on 127.0.0.3 arbitrates; none: no arbiter (a partition is a split brain). */
  arbiter?: DemoArbiter;
  /** A line to stdout. */
  out: (line: string) => void;
  /** A line to stderr. */
  err: (line: string) => void;
  /** Redraw the live view in place (stdout is a terminal). */
  tty: boolean;
  /** Raw stdout writes for the redraw, and its width. */
  write?: (text: string) => void;
  columns?: () => number | undefined;
  /** Live view refresh period. Default 250. */
  refreshMs?: number;
}

/** Exit codes: 0 done (drill passed), 1 failure (drill failed), 2 QEMU missing or unable to do COLO. */
export async function demo(opts: DemoOptions): Promise<number> {
  const avail = await qemuAvailable();
  if (!avail.ok || !findExecutable('qemu-img')) {
    opts.err(DEMO_NEEDS_QEMU);
    return 2;
  }
  const support = coloSupport(avail);
  if (!support.ok) {
    opts.err(`colo-agent demo cannot run a COLO pair on this QEMU: ${support.reason}`);
    return 2;
  }

  const res = new DemoResources();
  // Stays installed: after a signal, a step still in flight may start something after stop().
  process.once('exit', () => res.killNow());
  let signalled: NodeJS.Signals | undefined;
  let stopRequested!: () => void;
  const stopSignal = new Promise<void>((resolve) => (stopRequested = resolve));
  const onSignal = (sig: NodeJS.Signals) => {
    if (signalled) {
      // A second Ctrl-C: no more waiting.
      res.killNow();
      process.exit(130);
    }
    signalled = sig;
    stopRequested();
  };
  const signals: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];
  for (const s of signals) process.on(s, onSignal);
  // e.g. piped into `head`: nobody reads any more, so stop.
  const onStdoutError = () => onSignal('SIGPIPE');
  process.stdout.on('error', onStdoutError);

  try {
    // Once a signal came, the step still running says nothing more: the stop messages are the last.
    const quiet = (f: (l: string) => void) => (l: string) => {
      if (!signalled) f(l);
    };
    const wopts: DemoOptions = { ...opts, out: quiet(opts.out), err: quiet(opts.err) };
    const work = (async (): Promise<number> => {
      const up = await bringUp(res, { withProxies: opts.drill === 'partition', arbiter: opts.arbiter ?? 'witness', progress: wopts.out });
      if (!up.ok) {
        wopts.err(/not found/.test(up.reason) ? DEMO_NEEDS_QEMU : `colo-agent demo: ${up.reason}`);
        return 2;
      }
      const run = up.run;
      for (const line of describeRun(run)) wopts.out(line);
      if (opts.drill) return await drill(run, opts.drill, wopts);
      await liveView(run, wopts, stopSignal);
      return 0;
    })();
    // A signal ends whatever step is running: stop() below cuts it off.
    const code = await Promise.race([work, stopSignal.then(() => undefined)]);
    work.catch(() => undefined); // its rejection after a signal is expected (processes gone)
    if (code === undefined) {
      opts.out(`${signalled}: stopping everything the demo started ...`);
      await res.stop();
      opts.out(`stopped: agents, ${res.hasWitness() ? 'witness, ' : ''}QEMUs and proxies ended, temp dir removed`);
      return opts.drill ? 130 : 0;
    }
    await res.stop();
    return code;
  } catch (err) {
    await res.stop();
    throw err;
  } finally {
    for (const s of signals) process.off(s, onSignal);
    process.stdout.off('error', onStdoutError);
  }
}

/** What was started, with the pids and the work dir (for `kill -9`, and for tests). */
export function describeRun(run: DemoRun): string[] {
  const v = run.pair.version;
  const lines = [`colo-agent demo: QEMU ${v.major}.${v.minor}.${v.micro} COLO pair and agents up (work dir ${run.dir})`];
  for (const side of DEMO_SIDES) {
    const a = run.agents[side];
    lines.push(
      `  ${`${side}:`.padEnd(11)} host ${run.pair.side(side).host}, QEMU pid ${run.pair.side(side).pid}, agent pid ${a.pid}, ` +
        `status http://${run.layout.metricsListen[side]}/status`,
    );
  }
  const w = run.layout.witness;
  if (run.witness && w) {
    lines.push(
      `  ${'witness:'.padEnd(11)} host ${DEMO_WITNESS_HOST}, pid ${run.witness.pid}, listens on ${w.heartbeatListen} (both agents' arbiter.witness), ` +
        `lease ${DEMO_LEASE_MS} ms, status http://${w.metricsListen}/status`,
    );
  } else {
    lines.push('  arbiter:    none (--arbiter none): nothing prevents a split brain when the sides are cut from each other');
  }
  return lines;
}

function sources(run: DemoRun, outages: FailoverOutages): SnapshotSources {
  const w = run.layout.witness;
  return {
    pair: run.pair,
    agents: run.agents,
    metricsListen: run.layout.metricsListen,
    arbiter: run.arbiter,
    since: run.since,
    outages,
    ...(run.witness && w && { witness: { agent: run.witness, heartbeatListen: w.heartbeatListen, metricsListen: w.metricsListen } }),
  };
}

/** Prints one line per change until stop() is called; `first` settles once the first snapshot is printed. */
function changePrinter(run: DemoRun, out: (l: string) => void, periodMs: number): { first: Promise<void>; stop(final?: boolean): Promise<void> } {
  const watch = watchOutages(run.pair, run.agents);
  let prev: DemoSnapshot | undefined;
  let busy: Promise<void> = Promise.resolve();
  let running = false;
  const tick = () => {
    running = true;
    busy = takeSnapshot(sources(run, watch.outages))
      .then((taken) => {
        const snap = lastKnown(prev, taken);
        for (const l of viewChanges(prev, snap)) out(l);
        prev = snap;
      })
      .catch(() => undefined) // a view that misses one look is no reason to stop the demo
      .finally(() => (running = false));
  };
  tick();
  const first = busy;
  // A slow snapshot skips a period rather than queueing another behind it.
  const timer = setInterval(() => running || tick(), periodMs);
  return {
    first,
    stop: async (final = true) => {
      clearInterval(timer);
      await busy;
      if (final) {
        tick(); // the end state
        await busy;
      }
      watch.stop();
    },
  };
}

async function drill(run: DemoRun, kind: DrillKind, opts: DemoOptions): Promise<number> {
  const changes = changePrinter(run, opts.out, 100);
  await changes.first; // the state before the fault
  opts.out(`drill ${kind}: injecting the fault now`);
  const report = await runDrill(kind, {
    pair: run.pair,
    agents: run.agents,
    arbiter: run.arbiter,
    ...(run.partition && { partition: run.partition }),
    ...(run.witness && { witness: run.witness }),
  });
  await changes.stop();
  for (const line of formatDrillReport(report)) opts.out(line);
  return drillVerdict(report).ok ? 0 : 1;
}

/** Warnings and errors the agents and the witness log, shown under the view (their full logs are JSON). */
function notableLines(run: DemoRun, keep: number): { lines: string[]; stop(): void } {
  const lines: string[] = [];
  const processes = [...DEMO_SIDES.map((side) => run.agents[side]), ...(run.witness ? [run.witness] : [])];
  const offs = processes.map((p) =>
    p.onEntry((e) => {
      const level = e.record?.level;
      if (e.seq >= 0 && (level === 'warn' || level === 'error' || level === 'fatal')) {
        lines.push(compactLogLine(e.line));
        if (lines.length > keep) lines.shift();
      }
    }),
  );
  return { lines, stop: () => offs.forEach((off) => off()) };
}

async function liveView(run: DemoRun, opts: DemoOptions, stop: Promise<void>): Promise<void> {
  const period = opts.refreshMs ?? 250;
  if (!opts.tty || !opts.write) {
    opts.out('live view: one line per change (stdout is not a terminal); Ctrl-C stops everything');
    const printed = new Set<string>();
    const notable = notableLines(run, 50);
    const changes = changePrinter(run, opts.out, period);
    const logTimer = setInterval(() => {
      for (const l of notable.lines) if (!printed.has(l)) (printed.add(l), opts.out(`  log ${l}`));
    }, period);
    await stop;
    clearInterval(logTimer);
    notable.stop();
    await changes.stop(false).catch(() => undefined); // the agents are being stopped: no more changes to show
    return;
  }
  const write = opts.write;
  const notable = notableLines(run, 6);
  const watch = watchOutages(run.pair, run.agents);
  let drawn = 0;
  let busy = false;
  let ended = false;
  const draw = async () => {
    if (busy) return;
    busy = true;
    try {
      const snap = await takeSnapshot(sources(run, watch.outages));
      if (ended) return; // stopped while the agents were asked
      const width = Math.max(40, opts.columns?.() ?? 120);
      const lines = [...renderView(snap), ...(notable.lines.length ? ['recent warnings:', ...notable.lines.map((l) => `  ${l}`)] : [])].map((l) =>
        l.length > width ? `${l.slice(0, width - 1)}…` : l,
      );
      // Back to the top of the last frame, clear it, draw the new one.
      write(`${drawn > 0 ? `\x1b[${drawn}F\x1b[J` : ''}${lines.join('\n')}\n`);
      drawn = lines.length;
    } finally {
      busy = false;
    }
  };
  write('\x1b[?25l'); // hide the cursor while redrawing
  try {
    await draw();
    const timer = setInterval(() => void draw(), period);
    await stop;
    ended = true;
    clearInterval(timer);
  } finally {
    notable.stop();
    watch.stop();
    write('\x1b[?25h');
  }
}
