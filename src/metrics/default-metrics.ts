/**
 * Node's process_* and nodejs_* metrics (prom-client's defaults) on a registry, never exposing NaN.
 *
 * Why: prom-client computes the event-loop lag statistics (nodejs_eventloop_lag_{min,max,mean,
 * stddev,p50,p90,p99}_seconds) over the samples taken since the previous scrape, and resets them at
 * each scrape. A scrape with no sample since the one before (two scrapes within its 10 ms sampling
 * period, or an agent starved of CPU by busy QEMUs while COLO checkpoints run, so that its event
 * loop serves the next scrape before its timers) gets mean and stddev NaN, which prom-client prints
 * as `Nan`: strict parsers reject it, and a NaN is no measurement. Such a scrape leaves that series
 * out instead (it has no value to give); the next scrape with samples exports it again.
 */
import { collectDefaultMetrics, type Registry } from 'prom-client';

export function collectDefinedDefaultMetrics(registry: Registry): void {
  const before = new Set(registry.getMetricsAsArray().map((m) => m.name));
  collectDefaultMetrics({ register: registry });
  for (const { name } of registry.getMetricsAsArray()) {
    const metric = before.has(name) ? undefined : registry.getSingleMetric(name);
    if (!metric) continue;
    const get = metric.get.bind(metric);
    // registry.metrics() reads every metric through get(): the values a scrape sees, minus NaN ones.
    metric.get = (async () => {
      const r = await get();
      return { ...r, values: r.values.filter((v: { value: number }) => !Number.isNaN(v.value)) };
    }) as typeof metric.get;
  }
}
