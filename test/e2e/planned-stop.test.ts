/**
 * Planned work on a real QEMU COLO pair with real agent processes (test/helpers/colo-agents.ts):
 * - a planned stop (SIGTERM) of the primary's agent alone is not a failure: its GOODBYE keeps the
 *   secondary from failing over;
 * - maintenance mode (`colo-agent maintenance on`) suspends automatic failover even when the primary
 *   host really dies, and turning it off lets the waiting failover run.
 * Outcomes are read in QEMU itself (the harness's own QMP socket) and in the agents' logs; nothing
 * here asserts how fast anything went.
 *
 * dist/ must be built (`npm test` does it first).
 */
import t, { type Test } from 'tap';
import { agentState, killAllChildren, logMsg, peerTransition, requireBuiltCli, sleep, type LogPredicate } from '../helpers/agent-process.js';
import { runCli } from '../helpers/cli.js';
import { failoverStarting, noTakeover, startColoAgents, waitFailoverDone, type ColoAgents } from '../helpers/colo-agents.js';
import { queryColoStatus, queryStatus, startColoPairOrSkip, type ColoPair } from '../helpers/colo-pair.js';

const WAIT_MS = 20_000;
/** How long after the peer was (or would have been) declared down we keep watching for a wrong failover. */
const AFTER_DOWN_MS = 1500;

t.teardown(killAllChildren);

async function setup(t: Test): Promise<{ pair: ColoPair; agents: ColoAgents } | undefined> {
  const pair = await startColoPairOrSkip(t);
  if (!pair) return undefined;
  const agents = await startColoAgents(pair, { t });
  return { pair, agents };
}

const startedFailover: LogPredicate = (r) => failoverStarting(r) || agentState('failing-over')(r);
const maintenanceRefusal: LogPredicate = (r) => noTakeover(r) && /^maintenance mode: automatic failover suspended \(.*\)$/.test(String(r.reason));

/** `colo-agent maintenance <action>` with the secondary agent's own config. */
async function maintenance(t: Test, agents: ColoAgents, action: 'on' | 'off', reason?: string): Promise<void> {
  const opts = agents.startOptions('secondary');
  const r = await runCli(['maintenance', action, '--config', opts.config, ...opts.sets.flatMap((s) => ['--set', s]), ...(reason ? ['--reason', reason] : [])]);
  t.equal(r.code, 0, `maintenance ${action}: ${r.stderr}`);
}

if (requireBuiltCli(t)) {
  t.test('SIGTERM of the primary agent alone: the secondary hears goodbye and never fails over', async (t) => {
    const s = await setup(t);
    if (!s) return;
    const { pair, agents } = s;
    const survivor = agents.secondary;
    const since = survivor.cursor();
    agents.primary.kill('SIGTERM');
    const exit = await Promise.race([agents.primary.exited, sleep(10_000).then(() => undefined)]);
    t.same(exit, { code: 0, signal: null }, 'the primary agent stopped cleanly');
    await survivor.waitForLog(logMsg('peer said goodbye (planned stop)'), WAIT_MS, { since });
    t.pass('the secondary logged the goodbye');
    await survivor.waitForLog(peerTransition('down'), WAIT_MS, { since });
    await sleep(AFTER_DOWN_MS);
    const premature = survivor.find(startedFailover, since);
    t.equal(premature, undefined, `no failover started${premature ? `: ${String(premature.record?.reason)}` : ''}`);
    t.ok(survivor.find(agentState('peer-down'), since)?.record?.reason === 'peer stopped (planned: it said goodbye)', 'the secondary knows the stop was planned');
    t.equal((await queryColoStatus(pair.secondary)).mode, 'secondary', 'the secondary QEMU is still in COLO mode secondary');
    t.ok(survivor.alive, 'the secondary agent still runs');
  });

  t.test('maintenance on: a lost primary host is not taken over; maintenance off: the failover runs', async (t) => {
    const s = await setup(t);
    if (!s) return;
    const { pair, agents } = s;
    const survivor = agents.secondary;
    const sinceOn = survivor.cursor();
    await maintenance(t, agents, 'on', 'planned switch work');
    const on = await survivor.waitForLog(logMsg('maintenance mode on: automatic failover suspended'), WAIT_MS, { since: sinceOn });
    t.equal(on.record?.reason, 'planned switch work', 'the agent logged maintenance on with the reason');

    const since = survivor.cursor();
    pair.primary.kill('SIGKILL');
    agents.primary.kill('SIGKILL');
    const refused = await survivor.waitForLog(maintenanceRefusal, WAIT_MS, { since });
    t.match(String(refused.record?.reason), /planned switch work/, 'no takeover: maintenance mode, with the reason');
    await survivor.waitForLog(peerTransition('down'), WAIT_MS, { since });
    await sleep(AFTER_DOWN_MS);
    const premature = survivor.find(startedFailover, since);
    t.equal(premature, undefined, `no failover started during maintenance${premature ? `: ${String(premature.record?.reason)}` : ''}`);
    const triggers = new Set(survivor.filter(maintenanceRefusal, since).map((e) => String(e.record?.trigger)));
    t.ok(triggers.has('peer-down'), `the peer-down trigger was refused too (refused: ${[...triggers].join(', ')})`);
    t.equal((await queryColoStatus(pair.secondary)).mode, 'secondary', 'the secondary QEMU is still in COLO mode secondary');

    const sinceOff = survivor.cursor();
    const offAt = Date.now();
    await maintenance(t, agents, 'off');
    await survivor.waitForLog(logMsg('maintenance mode off: automatic failover resumed'), WAIT_MS, { since: sinceOff });
    const timing = await waitFailoverDone(survivor, sinceOff, offAt, WAIT_MS);
    t.equal(timing.sequence, 'secondary-failover', 'maintenance off: the secondary fails over');
    t.equal(timing.trigger, 'peer-down', 'on the peer-down it still sees');
    await survivor.waitForLog(agentState('solo'), WAIT_MS, { since: sinceOff });
    const st = await queryStatus(pair.secondary);
    t.equal(st.status, 'running', 'the survivor QEMU runs the VM');
    t.same(await queryColoStatus(pair.secondary), { mode: 'none', 'last-mode': 'secondary', reason: 'request' }, 'COLO exited on request');
  });
}
