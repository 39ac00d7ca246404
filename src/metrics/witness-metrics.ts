/**
 * The witness's metrics: a small registry of its own with the colo_agent_* series that mean
 * something on a node without QEMU (build info, epoch, arbitration verdicts, links). Names come
 * from names.ts, the same contract as the agents'.
 */
import { Counter, Gauge, Registry } from 'prom-client';
import type { WitnessServer } from '../arbiter/witness-server.js';
import { collectDefinedDefaultMetrics } from './default-metrics.js';
import { ARBITRATION_ACTIONS, ARBITRATION_RESULTS, LabelLimiter } from './registry.js';

export class WitnessMetrics {
  readonly registry = new Registry();
  private readonly links = new LabelLimiter(32);

  constructor(witness: WitnessServer, opts: { version: string; node: string; defaultMetrics?: boolean }) {
    const registers = [this.registry];
    new Gauge({ name: 'colo_agent_build_info', help: 'Always 1; the labels carry the agent version and node name.', labelNames: ['version', 'node'], registers }).set(
      { version: opts.version, node: opts.node },
      1,
    );
    new Gauge({
      name: 'colo_agent_epoch',
      help: "The witness's epoch: the last one it granted (persisted).",
      registers,
      collect() {
        this.set(witness.status().epoch);
      },
    });
    const arbitrations = new Counter({
      name: 'colo_agent_arbitrations_total',
      help: 'Verdicts the witness gave, by action (takeover, continue) and result (granted, denied, unavailable: the witness could not decide now).',
      labelNames: ['action', 'result'],
      registers,
    });
    for (const action of ARBITRATION_ACTIONS) for (const result of ARBITRATION_RESULTS) arbitrations.inc({ action, result }, 0);
    witness.on('verdict', (v) => arbitrations.inc({ action: v.action, result: v.granted ? 'granted' : v.retryable ? 'unavailable' : 'denied' }));
    const linkUp = new Gauge({ name: 'colo_agent_link_up', help: 'Witness side: 1 while the heartbeat link from an agent is established.', labelNames: ['link'], registers });
    witness.links.on('link-up', (e) => linkUp.set({ link: this.links.label(e.link) }, 1));
    witness.links.on('link-down', (e) => linkUp.set({ link: this.links.label(e.link) }, 0));
    if (opts.defaultMetrics !== false) collectDefinedDefaultMetrics(this.registry);
  }

  text(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}
