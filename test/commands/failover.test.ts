/**
 * `colo-agent failover` on a real COLO pair: the operator's failover runs the same sequence and
 * journal as the agent, refuses when there is nothing to fail over, and is exactly-once.
 */
import t from 'tap';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { runCli } from '../helpers/cli.js';
import { coloSets } from '../helpers/colo-agents.js';
import { listObjects, queryColoStatus, startColoPairOrSkip } from '../helpers/colo-pair.js';
import { shortTempDir } from '../helpers/short-temp-dir.js';

const EXAMPLE = new URL('../../config/examples/primary.yaml', import.meta.url).pathname;

t.test('manual primary failover after the secondary died, then a refusal to do it twice', async (t) => {
  const pair = await startColoPairOrSkip(t);
  if (!pair) return;
  const stateDir = shortTempDir(t, 'fo-');
  const args = [
    '--config',
    EXAMPLE,
    '--qmp',
    pair.primary.agentQmpAddress,
    '--set',
    `node.stateDir=${stateDir}`,
    '--set',
    'heartbeat.insecure=true',
    '--set',
    'heartbeat.keyFile=',
    ...coloSets(pair.colo).flatMap((s) => ['--set', s]),
  ];
  pair.secondary.kill('SIGKILL');

  const r = await runCli(['failover', ...args]);
  t.equal(r.code, 0, r.stderr);
  t.match(JSON.parse(r.stdout.trim().split('\n').at(-1)!), { ok: true, sequence: 'primary-failover', resumed: false });
  t.same(await queryColoStatus(pair.primary), { mode: 'none', 'last-mode': 'primary', reason: 'request' });
  const objects = await listObjects(pair.primary);
  for (const id of ['comp0', 'iothread1', 'm0', 'redire0', 'redire1']) t.notOk(objects.includes(id), `${id} removed`);
  const journal = JSON.parse(readFileSync(join(stateDir, 'failover-journal.json'), 'utf8')) as { decision: { status: string }; role: { role: string } };
  t.equal(journal.decision.status, 'finished');
  t.equal(journal.role.role, 'primary');

  const again = await runCli(['failover', ...args]);
  t.equal(again.code, 1, 'nothing left to fail over');
  t.match(again.stderr, /FAILOVER_REFUSED: our QEMU is not replicating \(COLO mode none\)/);
});
