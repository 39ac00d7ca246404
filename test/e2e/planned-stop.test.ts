/**
 * Planned work on a real QEMU COLO pair with real agent processes, on the lab of separate hosts
 * (test/lab/lab-colo.ts: host a the primary QEMU and its agent, host b the secondary and its
 * agent, each a network namespace of its own):
 * - a planned stop (SIGTERM) of the primary's agent alone is not a failure: its GOODBYE, sent
 *   across the hosts' links, keeps the secondary from failing over;
 * - maintenance mode (`colo-agent maintenance on`, a file in the secondary agent's state dir)
 *   suspends automatic failover even when the primary host really dies (a power loss: nft drops
 *   all of a's traffic, then every process of a is SIGKILLed, so no FIN or RST reaches b), and
 *   turning it off lets the waiting failover run.
 * Outcomes are read in QEMU itself (the harness's own QMP socket) and in the agents' logs; nothing
 * here asserts how fast anything went. Skipped with the reason without the lab (root, ip, nft) or
 * where this QEMU cannot do COLO.
 *
 * dist/ must be built (`npm test` does it first).
 */
import t, { type Test } from 'tap';
import { agentState, killAllChildren, logMsg, peerTransition, requireBuiltCli, sleep, type LogPredicate } from '../helpers/agent-process.js';
import { runCli } from '../helpers/cli.js';
import { failoverStarting, noTakeover, waitFailoverDone } from '../helpers/colo-agents.js';
import { queryColoStatus, queryStatus } from '../helpers/colo-pair.js';
import { startLabColoAgentsOrSkip, type LabColo } from '../lab/lab-colo.js';

/** A bound for a loaded 2-core machine, not a target. */
const WAIT_MS = 30_000;
/** How long after the peer was (or would have been) declared down we keep watching for a wrong failover. */
const AFTER_DOWN_MS = 1500;

t.setTimeout(5 * 60_000);
t.teardown(killAllChildren);

/** The lab with the pair (a primary, b secondary) and both agents ready (arbiter none, as the example configs). */
function setup(t: Test): Promise<LabColo | undefined> {
  return startLabColoAgentsOrSkip(t, { arbiter: 'none' });
}

const startedFailover: LogPredicate = (r) => failoverStarting(r) || agentState('failing-over')(r);
const maintenanceRefusal: LogPredicate = (r) => noTakeover(r) && /^maintenance mode: automatic failover suspended \(.*\)$/.test(String(r.reason));

/** `colo-agent maintenance <action>` with the secondary agent's own config (it writes a file in b's state dir: run from here). */
async function maintenance(t: Test, lc: LabColo, action: 'on' | 'off', reason?: string): Promise<void> {
  const opts = lc.agentOptions('b', lc.pair.side('secondary').agentQmpAddress);
  const r = await runCli(['maintenance', action, '--config', opts.config, ...opts.sets.flatMap((s) => ['--set', s]), ...(reason ? ['--reason', reason] : [])]);
  t.equal(r.code, 0, `maintenance ${action}: ${r.stderr}`);
}

if (requireBuiltCli(t)) {
  t.test('SIGTERM of the primary agent alone: the secondary hears goodbye and never fails over', async (t) => {
    const lc = await setup(t);
    if (!lc) return;
    const { pair } = lc;
    const survivor = lc.agents.b!;
    const stopping = lc.agents.a!;
    const since = survivor.cursor();
    stopping.kill('SIGTERM');
    const exit = await Promise.race([stopping.exited, sleep(10_000).then(() => undefined)]);
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
    const lc = await setup(t);
    if (!lc) return;
    const { pair } = lc;
    const survivor = lc.agents.b!;
    const sinceOn = survivor.cursor();
    await maintenance(t, lc, 'on', 'planned switch work');
    const on = await survivor.waitForLog(logMsg('maintenance mode on: automatic failover suspended'), WAIT_MS, { since: sinceOn });
    t.equal(on.record?.reason, 'planned switch work', 'the agent logged maintenance on with the reason');

    const since = survivor.cursor();
    const killed = await lc.lab.powerLoss('a');
    t.comment(`power loss of a: killed ${killed.length} processes`);
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
    await maintenance(t, lc, 'off');
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
