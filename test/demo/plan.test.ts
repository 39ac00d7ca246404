/**
 * The demo's process list: each agent's command line carries the layout (state dir, QMP socket,
 * key, heartbeat and metrics addresses, the pair's whole colo section), per-side changes win.
 */
import { existsSync } from 'node:fs';
import t from 'tap';
import { schemaDefaults } from '../../src/config/schema.js';
import { agentSets, coloConfigSets, DEMO_EXAMPLE_CONFIGS, demoProcesses, otherSide, type DemoLayout } from '../../src/demo/plan.js';

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

t.test('the example configs the agents start from exist', async (t) => {
  t.ok(existsSync(DEMO_EXAMPLE_CONFIGS.primary));
  t.ok(existsSync(DEMO_EXAMPLE_CONFIGS.secondary));
});

t.test('coloConfigSets: every key of the colo section, ids included', async (t) => {
  const sets = coloConfigSets(colo);
  const keys = sets.map((s) => s.slice(0, s.indexOf('=')));
  t.same(keys.filter((k) => !k.startsWith('colo.ids.')).sort(), Object.keys(colo).filter((k) => k !== 'ids').map((k) => `colo.${k}`).sort());
  t.same(keys.filter((k) => k.startsWith('colo.ids.')).sort(), Object.keys(colo.ids).map((k) => `colo.ids.${k}`).sort());
  t.ok(sets.includes('colo.mirrorPort=41003'));
});

t.test('demoProcesses: one agent per side, each with its own layout', async (t) => {
  const procs = demoProcesses(layout);
  t.same(procs.map((p) => [p.kind, p.side]), [['agent', 'primary'], ['agent', 'secondary']]);
  for (const p of procs) {
    t.same(p.args.slice(0, 3), ['run', '--config', DEMO_EXAMPLE_CONFIGS[p.side]]);
    const sets = p.args.filter((_, i) => p.args[i - 1] === '--set');
    t.same(sets, agentSets(layout, p.side), 'every other argument is a --set');
    t.ok(sets.includes(`node.stateDir=/tmp/demo-x/state-${p.side}`));
    t.ok(sets.includes(`qemu.qmp=${layout.agentQmp[p.side]}`));
    t.ok(sets.includes(`heartbeat.listen=${layout.heartbeatListen[p.side]}`));
    t.ok(sets.includes(`heartbeat.peers=${layout.heartbeatListen[otherSide(p.side)]}`), 'dials the peer');
    t.ok(sets.includes(`metrics.listen=${layout.metricsListen[p.side]}`));
    t.ok(sets.includes('heartbeat.keyFile=/tmp/demo-x/heartbeat.key'));
  }
});

t.test('per-side colo changes override the pair\'s values for that side only', async (t) => {
  const withProxies: DemoLayout = { ...layout, coloFor: { secondary: { mirrorPort: 50001 } } };
  t.ok(agentSets(withProxies, 'secondary').includes('colo.mirrorPort=50001'));
  t.notOk(agentSets(withProxies, 'secondary').includes('colo.mirrorPort=41003'));
  t.ok(agentSets(withProxies, 'primary').includes('colo.mirrorPort=41003'));
});
