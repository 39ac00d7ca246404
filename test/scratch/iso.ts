import t from 'tap';
import { sleep } from '../helpers/agent-process.js';
import { startRig, describeObservation } from '../helpers/split-brain.js';
import { queryStatus } from '../helpers/colo-pair.js';
t.setTimeout(300000);
t.test('iso', async (t) => {
  const rig = await startRig(t, { arbiter: 'witness' });
  if (!rig) return;
  const t0 = Date.now();
  await rig.isolate('primary');
  for (let i = 0; i < 12; i++) {
    await sleep(500);
    const q = await Promise.race([queryStatus(rig.pair.primary).then((s) => JSON.stringify(s), (e) => 'err ' + e.message), sleep(400).then(() => 'HUNG')]);
    console.log(Date.now() - t0, 'primary harness query-status:', q);
  }
  console.log('events', rig.watch.describe());
  await rig.heal();
  console.log(Date.now() - t0, 'healed');
  for (let i = 0; i < 10; i++) {
    await sleep(1000);
    const o = await rig.observe();
    console.log(Date.now() - t0, describeObservation(o));
  }
  console.log('events', rig.watch.describe());
  console.log(rig.agents.primary.tail(25));
});
