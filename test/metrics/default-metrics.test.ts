/**
 * Node's default metrics never expose NaN (src/metrics/default-metrics.ts): prom-client's
 * event-loop lag statistics cover the samples since the previous scrape, so a scrape that follows
 * another with no event-loop sample in between (two at once here; on a real run, an agent starved
 * of CPU by QEMUs busy with checkpoints, seen on 11.1 in test/e2e/metrics.test.ts) would get mean
 * and stddev NaN, printed `Nan`, which the strict exposition parser rejects. Both the agent's and
 * the witness's registries.
 */
import t, { type Test } from 'tap';
import { WitnessServer } from '../../src/arbiter/witness-server.js';
import { AgentMetrics } from '../../src/metrics/registry.js';
import { WitnessMetrics } from '../../src/metrics/witness-metrics.js';
import { parseExposition } from '../helpers/exposition.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Sample lines whose value is NaN in any spelling. */
const nanLines = (text: string): string[] => text.split('\n').filter((l) => l !== '' && !l.startsWith('#') && /\snan$/i.test(l));

/** A real witness, never started (nothing listens): its metrics read its status and listen to its events. */
const idleWitness = (stateDir: string) => new WitnessServer({ nodeName: 'w', listen: ['127.0.0.1:0'], insecure: true, intervalMs: 100, stateDir, leaseMs: 500, bothAskWindowMs: 100 });

const registries = [
  ['agent', () => new AgentMetrics({ version: 't', node: 'n' })],
  ['witness', (t: Test) => new WitnessMetrics(idleWitness(t.testdir()), { version: 't', node: 'w' })],
] as const;

for (const [who, make] of registries) {
  t.test(`${who}: two scrapes at once (no event-loop sample between them): no NaN, a strict parse, the lag mean back once sampled`, async (t) => {
    const m = make(t);
    await sleep(50); // the lag monitor samples every 10 ms
    const [first, second] = await Promise.all([m.text(), m.text()]);
    t.same(nanLines(first), [], 'the first scrape has no NaN sample');
    t.same(nanLines(second), [], 'the second, with no sample since the first, has none either');
    t.doesNotThrow(() => parseExposition(second), 'the second parses as the text format');
    t.notMatch(second, /^nodejs_eventloop_lag_mean_seconds /m, 'the lag mean of an empty window is left out');
    t.match(second, /^nodejs_eventloop_lag_seconds \d/m, 'the plain lag gauge is still there');
    await sleep(50);
    const later = await m.text();
    t.match(later, /^nodejs_eventloop_lag_mean_seconds \d/m, 'with samples again, the lag mean is exported');
    t.same(nanLines(later), []);
  });
}
