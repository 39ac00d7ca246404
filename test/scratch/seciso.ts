import t from 'tap';
import { sleep } from '../helpers/agent-process.js';
import { failoverDone } from '../helpers/colo-agents.js';
import { startRig, describeObservation } from '../helpers/split-brain.js';
t.setTimeout(600000);
const N = Number(process.env.N ?? 6);
for (let i = 0; i < N; i++) {
  t.test('seciso ' + i, async (t) => {
    const rig = await startRig(t, { arbiter: 'witness' });
    if (!rig) return;
    await rig.isolate(process.env.SIDE === 'primary' ? 'primary' : 'secondary');
    try {
      await rig.agents.primary.waitForLog(failoverDone, 10000);
      console.log(i, 'ok', describeObservation(await rig.observe()));
    } catch {
      console.log(i, 'FAILED', describeObservation(await rig.observe()));
      for (const a of [rig.agents.primary, rig.agents.witness!]) for (const e of a.entries) console.log(`[${a.name}] ${e.line.replace(/"pid":\d+,"node":"[^"]+",/, '').slice(0, 420)}`);
    }
  });
}
