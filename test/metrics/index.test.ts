import t from 'tap';
import { readFileSync } from 'node:fs';
import { packageVersion, startAgentMetrics } from '../../src/metrics/index.js';
import { shortTempDir } from '../helpers/short-temp-dir.js';
import { httpRequest, loneAgentConfig, makeAgent } from './support.js';

t.test('packageVersion reads package.json', async (t) => {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
  t.equal(packageVersion(), pkg.version);
});

t.test('startAgentMetrics: attached and served; close() detaches and stops serving', async (t) => {
  const dir = shortTempDir(t, 'midx-');
  const cfg = await loneAgentConfig('secondary', dir);
  const agent = makeAgent(t, cfg);
  const running = await startAgentMetrics(agent, { listen: '127.0.0.1:0', node: cfg.node.name });
  t.teardown(() => running.close());
  await agent.start();
  const r = await httpRequest(running.address.port, '/metrics');
  t.equal(r.status, 200);
  t.match(r.body, new RegExp(`^colo_agent_build_info\\{version="${packageVersion().replace(/\./g, '\\.')}",node="colo-b"\\} 1$`, 'm'));
  t.match(r.body, /^colo_agent_role\{role="secondary"\} 1$/m);
  t.match(r.body, /^colo_agent_state\{state="waiting-for-peer"\} 1$/m);
  await running.close();
  await t.rejects(httpRequest(running.address.port, '/metrics'), { code: 'ECONNREFUSED' });
  t.equal(agent.listenerCount('state'), 0, 'detached');
});

t.test('startAgentMetrics: a busy port fails startup with ERR_METRICS_LISTEN and leaves nothing attached', async (t) => {
  const dir = shortTempDir(t, 'midx-');
  const cfg = await loneAgentConfig('primary', dir);
  const agent = makeAgent(t, cfg);
  const first = await startAgentMetrics(agent, { listen: '127.0.0.1:0', node: 'a' });
  t.teardown(() => first.close());
  await t.rejects(startAgentMetrics(agent, { listen: `127.0.0.1:${first.address.port}`, node: 'a' }), { code: 'ERR_METRICS_LISTEN' });
  t.equal(agent.listenerCount('state'), 1, "only the first binding's listener");
});
