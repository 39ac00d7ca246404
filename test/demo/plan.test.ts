/**
 * The demo's process list: each agent's command line carries the layout (state dir, QMP socket,
 * key, heartbeat and metrics addresses, the pair's whole colo section, the arbiter), per-side
 * changes win; with a witness it comes first, on its own addresses and state dir, with the same key.
 */
import { existsSync } from 'node:fs';
import t from 'tap';
import { schemaDefaults } from '../../src/config/schema.js';
import { loadConfig } from '../../src/config/index.js';
import {
  agentSets,
  coloConfigSets,
  DEMO_EXAMPLE_CONFIGS,
  DEMO_LEASE_MS,
  DEMO_WITNESS_CONFIG,
  DEMO_WITNESS_HOST,
  demoProcesses,
  otherSide,
  witnessSets,
  type DemoLayout,
} from '../../src/demo/plan.js';

const colo = { ...schemaDefaults().colo, mirrorPort: 41003, nbdPort: 41999 };

const layout: DemoLayout = {
  dir: '/tmp/demo-x',
  keyFile: '/tmp/demo-x/heartbeat.key',
  colo,
  agentQmp: { primary: 'unix:/tmp/demo-x/p/qmp0.sock', secondary: 'unix:/tmp/demo-x/s/qmp0.sock' },
  heartbeatListen: { primary: '127.0.0.1:7001', secondary: '127.0.0.2:7002' },
  heartbeatPeer: { primary: '127.0.0.2:7002', secondary: '127.0.0.1:7001' },
  metricsListen: { primary: '127.0.0.1:8001', secondary: '127.0.0.2:8002' },
};

t.test('the example configs the agents and the witness start from exist', async (t) => {
  t.ok(existsSync(DEMO_EXAMPLE_CONFIGS.primary));
  t.ok(existsSync(DEMO_EXAMPLE_CONFIGS.secondary));
  t.ok(existsSync(DEMO_WITNESS_CONFIG));
});

t.test('coloConfigSets: every key of the colo section, ids included', async (t) => {
  const sets = coloConfigSets(colo);
  const keys = sets.map((s) => s.slice(0, s.indexOf('=')));
  t.same(keys.filter((k) => !k.startsWith('colo.ids.')).sort(), Object.keys(colo).filter((k) => k !== 'ids').map((k) => `colo.${k}`).sort());
  t.same(keys.filter((k) => k.startsWith('colo.ids.')).sort(), Object.keys(colo.ids).map((k) => `colo.ids.${k}`).sort());
  t.ok(sets.includes('colo.mirrorPort=41003'));
});

t.test('demoProcesses: one agent per side, each with its own layout; arbiter none without a witness', async (t) => {
  const procs = demoProcesses(layout);
  t.same(procs.map((p) => [p.kind, p.kind === 'agent' ? p.side : undefined]), [['agent', 'primary'], ['agent', 'secondary']]);
  for (const p of procs) {
    if (p.kind !== 'agent') continue;
    t.same(p.args.slice(0, 3), ['run', '--config', DEMO_EXAMPLE_CONFIGS[p.side]]);
    const sets = p.args.filter((_, i) => p.args[i - 1] === '--set');
    t.same(sets, agentSets(layout, p.side), 'every other argument is a --set');
    t.ok(sets.includes(`node.stateDir=/tmp/demo-x/state-${p.side}`));
    t.ok(sets.includes(`qemu.qmp=${layout.agentQmp[p.side]}`));
    t.ok(sets.includes(`heartbeat.listen=${layout.heartbeatListen[p.side]}`));
    t.ok(sets.includes(`heartbeat.peers=${layout.heartbeatListen[otherSide(p.side)]}`), 'dials the peer');
    t.ok(sets.includes(`metrics.listen=${layout.metricsListen[p.side]}`));
    t.ok(sets.includes('heartbeat.keyFile=/tmp/demo-x/heartbeat.key'));
    t.ok(sets.includes('arbiter.mode=none'));
    t.notOk(sets.some((s) => s.startsWith('arbiter.witness=')));
  }
});

const witnessLayout: DemoLayout = { ...layout, witness: { heartbeatListen: `${DEMO_WITNESS_HOST}:7003`, metricsListen: `${DEMO_WITNESS_HOST}:8003` } };

t.test('demoProcesses with a witness: the witness first, both agents pointed at it', async (t) => {
  const procs = demoProcesses(witnessLayout);
  t.same(procs.map((p) => [p.kind, p.name]), [['witness', 'witness'], ['agent', 'primary'], ['agent', 'secondary']]);
  const w = procs[0]!;
  t.same(w.args.slice(0, 3), ['run', '--config', DEMO_WITNESS_CONFIG]);
  const wsets = w.args.filter((_, i) => w.args[i - 1] === '--set');
  t.same(wsets, witnessSets({ ...witnessLayout, witness: witnessLayout.witness! }), 'every other argument is a --set');
  t.ok(wsets.includes('node.stateDir=/tmp/demo-x/state-witness'), 'a state dir of its own');
  t.ok(wsets.includes('heartbeat.keyFile=/tmp/demo-x/heartbeat.key'), 'the same key as the agents');
  t.ok(wsets.includes('heartbeat.listen=127.0.0.3:7003'));
  t.ok(wsets.includes('metrics.listen=127.0.0.3:8003'));
  t.ok(wsets.includes(`arbiter.leaseMs=${DEMO_LEASE_MS}`));
  for (const p of procs) {
    if (p.kind !== 'agent') continue;
    const sets = agentSets(witnessLayout, p.side);
    t.ok(sets.includes('arbiter.mode=witness'), `${p.side}: arbiter.mode witness`);
    t.ok(sets.includes('arbiter.witness=127.0.0.3:7003'), `${p.side}: dials the witness`);
    t.notOk(sets.includes('arbiter.mode=none'));
  }
});

t.test('the witness and the agents load as configs the agent accepts', async (t) => {
  const w = loadConfig({ env: {}, files: [DEMO_WITNESS_CONFIG], sets: witnessSets({ ...witnessLayout, witness: witnessLayout.witness! }) });
  t.match(w, { node: { role: 'witness', stateDir: '/tmp/demo-x/state-witness' }, heartbeat: { listen: '127.0.0.3:7003' }, arbiter: { leaseMs: DEMO_LEASE_MS } });
  for (const side of ['primary', 'secondary'] as const) {
    const a = loadConfig({ env: {}, files: [DEMO_EXAMPLE_CONFIGS[side]], sets: agentSets(witnessLayout, side) });
    t.match(a, { node: { role: side }, arbiter: { mode: 'witness', witness: ['127.0.0.3:7003'] } });
    t.not(a.node.stateDir, w.node.stateDir);
  }
});

t.test('per-side colo changes override the pair\'s values for that side only', async (t) => {
  const withProxies: DemoLayout = { ...layout, coloFor: { secondary: { mirrorPort: 50001 } } };
  t.ok(agentSets(withProxies, 'secondary').includes('colo.mirrorPort=50001'));
  t.notOk(agentSets(withProxies, 'secondary').includes('colo.mirrorPort=41003'));
  t.ok(agentSets(withProxies, 'primary').includes('colo.mirrorPort=41003'));
});
