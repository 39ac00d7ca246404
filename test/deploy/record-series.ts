/**
 * `npm run record:series [-- --only NAME[,NAME]] [--jobs N]`: runs the alert scenarios
 * (series-scenarios.ts) on the lab of separate hosts with real QEMU and real agents, scrapes every
 * agent (and the witness) once a second while each runs (series-recorder.ts), and writes the
 * recordings as test/fixtures/series/<scenario>.json, which test/deploy/alerts-recorded.test.ts
 * feeds to promtool. Needs root, ip, nft and a QEMU that can do COLO; exit 2 without them.
 *
 * --jobs 2 runs two scenarios at once (two labs: each claims its own slot and namespaces). On a
 * 2-core machine that load shows in the recordings: a failback recorded beside another lab paused
 * its guest over 1 s in a switch-over (70-80 ms alone), which ColoAgentSwitchoverPauseHigh rightly
 * reported. Record the routine paths with the default --jobs 1 on a machine otherwise idle.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { killAllChildren, sleep } from '../helpers/agent-process.js';
import { METRICS_PORT } from '../lab/lab-colo.js';
import { labAvailable } from '../lab/netns.js';
import { FIXTURE_DIR, ruleMetricNames } from './series-fixture.js';
import { SeriesRecorder } from './series-recorder.js';
import { openScenarioLab, SCENARIOS, type Scenario } from './series-scenarios.js';
import { Scope } from './series-lab.js';

const { values } = parseArgs({ options: { only: { type: 'string' }, jobs: { type: 'string', default: '1' } } });
const wanted = values.only?.split(',') ?? SCENARIOS.map((s) => s.name);
const unknown = wanted.filter((n) => !SCENARIOS.some((s) => s.name === n));
if (unknown.length) {
  process.stderr.write(`record:series: unknown scenario ${unknown.join(', ')} (known: ${SCENARIOS.map((s) => s.name).join(', ')})\n`);
  process.exit(2);
}
const avail = labAvailable();
if (!avail.ok) {
  process.stderr.write(`record:series: ${avail.reason}\n`);
  process.exit(2);
}

const keep = ruleMetricNames();

async function record(s: Scenario): Promise<boolean> {
  const scope = new Scope();
  const started = Date.now();
  const log = (msg: string) => process.stdout.write(`[${s.name} +${Math.round((Date.now() - started) / 1000)} s] ${msg}\n`);
  let rec: SeriesRecorder | undefined;
  try {
    const opened = await openScenarioLab(scope, s);
    if (!opened) {
      log(`skipped: ${scope.skipped}`);
      return false;
    }
    const { lc, tl } = opened;
    // The agents' logs, for reading what they did (kept out of the fixtures: they are not what Prometheus sees).
    scope.teardown(() => {
      const path = join(tmpdir(), `record-series-${s.name}.log`);
      writeFileSync(path, lc.transcript(2000));
      log(`agents' logs: ${path}`);
    });
    const hosts = s.arbiter === 'witness' ? (['a', 'b', 'w'] as const) : (['a', 'b'] as const);
    rec = new SeriesRecorder(
      hosts.map((h) => ({ instance: `${h}:${METRICS_PORT}`, address: `${lc.lab.controlAddr(h)}:${METRICS_PORT}` })),
      keep,
    );
    rec.start();
    const r = rec;
    await s.run({
      lc,
      tl,
      mark: (name) => {
        r.mark(name);
        log(`tick ${r.tick}: ${name}`);
      },
      hold: (sec) => sleep(Math.max(0, sec) * 1000),
      note: log,
    });
    await rec.stop();
    const v = lc.pair.version;
    const fx = rec.fixture({ scenario: s.name, kind: s.kind, description: s.description, qemu: `${v.major}.${v.minor}.${v.micro}` });
    mkdirSync(FIXTURE_DIR, { recursive: true });
    const file = join(FIXTURE_DIR, `${s.name}.json`);
    writeFileSync(file, `${JSON.stringify(fx)}\n`);
    log(`wrote ${file}: ${fx.ticks} ticks, ${Object.keys(fx.series).length} series`);
    return true;
  } catch (err) {
    log(`FAILED: ${(err as Error).stack ?? String(err)}`);
    if (rec) await rec.stop();
    return false;
  } finally {
    await scope.close();
  }
}

const queue = SCENARIOS.filter((s) => wanted.includes(s.name));
const jobs = Math.max(1, Number(values.jobs) || 1);
const t0 = Date.now();
let failed = 0;
await Promise.all(
  Array.from({ length: jobs }, async () => {
    for (let s = queue.shift(); s; s = queue.shift()) if (!(await record(s))) failed++;
  }),
);
killAllChildren();
process.stdout.write(`record:series: ${wanted.length - failed} of ${wanted.length} recorded in ${Math.round((Date.now() - t0) / 1000)} s\n`);
process.exit(failed ? 1 : 0);
