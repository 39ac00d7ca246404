import t from 'tap';
import { percentile, summarize } from './stats.js';

t.test('nearest-rank percentiles pick measured samples', async (t) => {
  const s = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10];
  t.equal(percentile(s, 0.5), 5);
  t.equal(percentile(s, 0.9), 9);
  t.equal(percentile(s, 0.99), 10, 'p99 of fewer than 100 samples is the maximum');
  t.equal(percentile(s, 1), 10);
  t.equal(percentile([42], 0.5), 42);
  t.ok(Number.isNaN(percentile([], 0.5)));
  t.throws(() => percentile(s, 0));
  t.throws(() => percentile(s, 1.5));
});

t.test('summarize sorts a copy and reports every figure', async (t) => {
  const samples = [30, 10, 20, 40];
  const sum = summarize(samples);
  t.same(sum, { n: 4, min: 10, p50: 20, p90: 40, p99: 40, max: 40, mean: 25 });
  t.same(samples, [30, 10, 20, 40], 'input left unsorted');
  t.equal(summarize([]).n, 0);
  t.ok(Number.isNaN(summarize([]).p50));
});
