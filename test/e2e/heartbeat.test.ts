/**
 * End to end: two real agent processes (`node dist/cli.js run`) heartbeating each other over real
 * loopback sockets, the primary on 127.0.0.1 and the secondary on 127.0.0.2, directly or through
 * fault proxies. Faults are real: signals to the processes, and the proxy's blackhole, cut,
 * half-open, delay and drop.
 *
 * These tests rely on dist/ being built: `npm test` runs `npm run build` before tap. They assert
 * states and the order of log records, never how fast anything happened (test/bench/detect.ts
 * measures that), so a loaded machine makes them slower, not red. Timings are chosen for that:
 * 100 ms heartbeats, suspect after 2 missed, down after 4; where a test asserts that the peer
 * stays up, down needs a full second of silence.
 */
import t, { type Test } from 'tap';
import {
  agentState,
  killAllChildren,
  linkDown,
  linkUp,
  logMsg,
  peerTransition,
  rejected,
  requireBuiltCli,
  sleep,
  startPair,
  type AgentPair,
  type AgentProcess,
  type InlinePairProxy,
  type LogPredicate,
  type PairProxy,
} from '../helpers/agent-process.js';

const TIMINGS = {
  intervalMs: 100,
  missThreshold: 4,
  suspectMisses: 2,
  recoverBeats: 3,
  startupGraceMs: 3000,
  helloTimeoutMs: 1000,
  reconnectInitialMs: 50,
  reconnectMaxMs: 500,
};
/** For "the peer stays up" tests: down only after 1 s of silence, so CPU stalls do not fake one. */
const STEADY = { ...TIMINGS, missThreshold: 10, suspectMisses: 5 };

const WAIT_MS = 15_000;

/** Poll until cond() holds; fails with `what` after timeoutMs. */
async function until(cond: () => boolean, what: string, timeoutMs = WAIT_MS): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

const linkLiveness = (link: string, to: string): LogPredicate => (r) => r.msg === 'link liveness' && r.link === link && r.to === to;
/** `link` went `state` on `a` after entry `since`: its up/down record, then its own liveness detector's transition. */
async function waitLinkState(a: AgentProcess, link: string, state: 'up' | 'down', since: number): Promise<void> {
  await a.waitForLog(state === 'up' ? linkUp(link) : linkDown(link), WAIT_MS, { since });
  await a.waitForLog(linkLiveness(link, state), WAIT_MS, { since });
}
const proxyFrom = (list: readonly PairProxy[], side: 'primary' | 'secondary'): PairProxy => list.find((p) => p.from === side)!;
/** Link names whose last up/down record says up. */
function openLinks(a: AgentProcess): Set<string> {
  const open = new Set<string>();
  for (const e of a.filter((r) => linkUp()(r) || linkDown()(r))) {
    const link = String(e.record?.link);
    if (e.record?.msg === 'heartbeat link up') open.add(link);
    else open.delete(link);
  }
  return open;
}
const both = (pair: AgentPair): AgentProcess[] => [pair.primary, pair.secondary];

/** Nothing the agents logged says they crashed or hit an internal error. */
function assertNoCrash(t: Test, pair: AgentPair): void {
  for (const a of both(pair)) {
    t.ok(a.alive, `${a.name} is still running`);
    const bad = a.filter((r) => r.level === 'fatal' || r.msg === 'heartbeat connection failed internally' || r.msg === 'uncaught exception');
    t.same(bad.map((e) => e.line), [], `${a.name} logged no crash or internal error`);
  }
}

// No agent survives this file, whatever happens to it.
t.teardown(killAllChildren);

if (requireBuiltCli(t)) {
  t.test('a pair comes up: each agent sees the peer up on both links', async (t) => {
    const pair = await startPair({ t, heartbeat: TIMINGS });
    for (const a of both(pair)) {
      const up = a.find(peerTransition('up', 'unknown'));
      t.ok(up, `${a.name}: peer unknown -> up`);
      t.equal(up?.record?.reason, 'first-contact');
      const state = await a.waitForLog(agentState('peer-up'), WAIT_MS);
      t.ok(up && state.index > up.index, `${a.name}: agent state peer-up follows the detector`);
      // One path, two connections: the one this side dialled and the one it accepted.
      await until(() => a.filter(linkUp()).length >= 2, `${a.name} to have two links up`);
      t.same(new Set(a.filter(linkUp()).map((e) => e.record?.direction)), new Set(['dial', 'accept']));
    }
  });

  t.test('peer SIGKILLed: the survivor logs suspect, then down; a restarted peer is a new session', async (t) => {
    const pair = await startPair({ t, heartbeat: TIMINGS });
    const since = pair.primary.cursor();
    pair.secondary.kill('SIGKILL');
    const down = await pair.primary.waitForLog(peerTransition('down'), WAIT_MS, { since });
    const suspect = pair.primary.find(peerTransition('suspect'), since);
    t.ok(suspect, 'suspect was logged');
    t.ok(suspect && suspect.index < down.index, 'suspect came before down');
    t.equal(suspect?.record?.reason, 'suspect-timeout');
    t.equal(down.record?.from, 'suspect');
    t.equal(down.record?.reason, 'timeout');
    await pair.primary.waitForLog(agentState('peer-down'), WAIT_MS, { since });
    t.ok(pair.primary.find(linkDown(), since), 'the dead peer\'s links went down');
    t.equal((await pair.secondary.exited).signal, 'SIGKILL');

    const beforeRestart = pair.primary.cursor();
    await pair.restart('secondary');
    await pair.primary.waitForLog(logMsg('peer restarted (new session)'), WAIT_MS, { since: beforeRestart });
    const up = await pair.primary.waitForLog(peerTransition('up'), WAIT_MS, { since: beforeRestart });
    t.equal(up.record?.from, 'down');
    t.equal(up.record?.reason, 'recovered', 'back up after recoverBeats beats');
    await pair.secondary.waitForPeerState('up');
  });

  t.test('peer SIGSTOPped: down, links torn down by the idle timeout; SIGCONT: up again after recoverBeats', async (t) => {
    const pair = await startPair({ t, heartbeat: TIMINGS });
    const since = pair.primary.cursor();
    pair.secondary.kill('SIGSTOP');
    const down = await pair.primary.waitForLog(peerTransition('down'), WAIT_MS, { since });
    t.equal(down.record?.reason, 'timeout');
    // A frozen peer's kernel keeps its sockets open: only our idle timeout ends them.
    const idle = await pair.primary.waitForLog((r) => linkDown()(r) && r.reason === 'idle-timeout', WAIT_MS, { since });
    t.ok(idle.index > down.index, 'the peer was declared down before its idle links were dropped');

    const thawed = pair.primary.cursor();
    pair.secondary.kill('SIGCONT');
    const up = await pair.primary.waitForLog(peerTransition('up'), WAIT_MS, { since: thawed });
    t.equal(up.record?.from, 'down');
    t.equal(up.record?.reason, 'recovered');
    await pair.primary.waitForLog(linkUp(), WAIT_MS, { since: thawed });
    // The thawed agent's own timers ran late: it may have declared us down too; it comes back up.
    await pair.secondary.waitForPeerState('up');
    assertNoCrash(t, pair);
  });

  t.test('two paths, one cut: the peer stays up, the cut path\'s links go down and come back on heal', async (t) => {
    const pair = await startPair({ t, wiring: 'proxy', paths: 2, heartbeat: STEADY });
    for (const a of both(pair)) await until(() => a.filter(linkUp()).length >= 4, `${a.name} to have 4 links up`);
    const cutPath = pair.proxiesOfPath(0);
    const keptPath = pair.proxiesOfPath(1);
    const since = { primary: pair.primary.cursor(), secondary: pair.secondary.cursor() };
    await Promise.all(cutPath.map((p) => p.cut()));

    for (const a of both(pair)) {
      // The link's own liveness detector gives up on it; the peer-wide one does not.
      await waitLinkState(a, proxyFrom(cutPath, a.name as 'primary' | 'secondary').address, 'down', since[a.name as 'primary']);
    }
    await sleep(500); // redials keep being refused meanwhile
    for (const a of both(pair)) {
      const s = since[a.name as 'primary'];
      const dialled = proxyFrom(cutPath, a.name as 'primary' | 'secondary').address;
      const kept = proxyFrom(keptPath, a.name as 'primary' | 'secondary').address;
      t.equal(a.find(peerTransition('down'), s), undefined, `${a.name}: the peer never went down`);
      t.equal(a.peerState(), 'up', `${a.name}: the peer is up`);
      t.equal(a.find(linkDown(kept), s), undefined, `${a.name}: the other path's link stayed up`);
      t.equal(a.find(linkUp(dialled), s), undefined, `${a.name}: no link came up through the cut path`);
    }

    const healed = { primary: pair.primary.cursor(), secondary: pair.secondary.cursor() };
    await Promise.all(cutPath.map((p) => p.heal()));
    for (const a of both(pair)) {
      await waitLinkState(a, proxyFrom(cutPath, a.name as 'primary' | 'secondary').address, 'up', healed[a.name as 'primary']);
    }
    t.equal(pair.primary.find(peerTransition('down'), since.primary), undefined, 'primary: the peer never went down');
    t.equal(pair.secondary.find(peerTransition('down'), since.secondary), undefined, 'secondary: the peer never went down');
  });

  t.test('silent partition (every path blackholed): both sides declare the peer down with the links still open; heal: up', async (t) => {
    const pair = await startPair({ t, wiring: 'proxy', heartbeat: TIMINGS });
    const since = [pair.primary.cursor(), pair.secondary.cursor()];
    await Promise.all(pair.proxies.map((p) => p.blackhole()));
    for (const [i, a] of both(pair).entries()) {
      const down = await a.waitForLog(peerTransition('down'), WAIT_MS, { since: since[i] });
      const suspect = a.find(peerTransition('suspect'), since[i]);
      t.ok(suspect && suspect.index < down.index, `${a.name}: suspect, then down`);
      // No FIN, no RST: detection came from silence, before any link was given up.
      const firstLinkDown = a.find(linkDown(), since[i]);
      t.ok(!firstLinkDown || firstLinkDown.index > down.index, `${a.name}: no link went down before the peer did`);
    }
    const healed = [pair.primary.cursor(), pair.secondary.cursor()];
    await Promise.all(pair.proxies.map((p) => p.heal()));
    for (const [i, a] of both(pair).entries()) {
      const up = await a.waitForLog(peerTransition('up'), WAIT_MS, { since: healed[i] });
      t.equal(up.record?.reason, 'recovered', `${a.name}: recovered after the partition healed`);
    }
    assertNoCrash(t, pair);
  });

  t.test('half-open (the primary\'s bytes stop, the secondary\'s still flow): deaf side goes down and drops the links; the primary redials; heal: up', async (t) => {
    const pair = await startPair({ t, wiring: 'proxy', heartbeat: TIMINGS });
    const dialledByPrimary = proxyFrom(pair.proxies, 'primary');
    const dialledBySecondary = proxyFrom(pair.proxies, 'secondary');
    const sinceP = pair.primary.cursor();
    const sinceS = pair.secondary.cursor();
    // The primary's writes back up on both connections: c2s where it dialled, s2c where it was dialled.
    await dialledByPrimary.halfOpen('c2s');
    await dialledBySecondary.halfOpen('s2c');

    const sDown = await pair.secondary.waitForLog(peerTransition('down'), WAIT_MS, { since: sinceS });
    const sIdle = await pair.secondary.waitForLog((r) => linkDown()(r) && r.reason === 'idle-timeout', WAIT_MS, { since: sinceS });
    t.ok(sIdle.index > sDown.index, 'secondary: peer down first, then its silent links dropped by the idle timeout');
    // The primary kept hearing the secondary until those links were dropped; then its redials cannot
    // complete a handshake (its HELLO never arrives), so it loses the peer too.
    const pLinkDown = await pair.primary.waitForLog(linkDown(), WAIT_MS, { since: sinceP });
    const pDown = await pair.primary.waitForLog(peerTransition('down'), WAIT_MS, { since: sinceP });
    t.ok(pDown.index > pLinkDown.index, 'primary: the peer went down only after its links were torn down');
    await pair.secondary.waitForLog(rejected, WAIT_MS, { since: sinceS }); // handshakes time out

    const healed = [pair.primary.cursor(), pair.secondary.cursor()];
    await Promise.all(pair.proxies.map((p) => p.heal()));
    await pair.primary.waitForLog(linkUp(dialledByPrimary.address), WAIT_MS, { since: healed[0] });
    for (const a of both(pair)) await a.waitForPeerState('up');
    assertNoCrash(t, pair);
  });

  t.test('30 ms of delay each way: the peer stays up and the RTT log shows the delay', async (t) => {
    const pair = await startPair({ t, wiring: 'proxy', heartbeat: STEADY });
    const since = [pair.primary.cursor(), pair.secondary.cursor()];
    await Promise.all(pair.proxies.map((p) => p.delay(30)));
    // The agent logs an RTT summary per link every 10 s; most of its first window is delayed.
    const link = proxyFrom(pair.proxies, 'primary').address;
    const rtt = await pair.primary.waitForLog(logMsg('link RTT', { link }), 20_000, { since: since[0] });
    const p50 = Number(rtt.record?.p50Ms);
    // A heartbeat and its ACK each wait 30 ms in the proxy (less a little timer rounding).
    t.ok(p50 >= 55, `median RTT ${p50} ms reflects 2 x 30 ms of delay`);
    for (const [i, a] of both(pair).entries()) {
      t.equal(a.find(peerTransition('down'), since[i]), undefined, `${a.name}: the peer never went down`);
      t.equal(a.peerState(), 'up');
      t.equal(a.find(linkDown(), since[i]), undefined, `${a.name}: no link went down`);
    }
  });

  t.test('20% of chunks dropped, handshakes under loss: corrupt handshakes are rejected, links come back, nothing crashes', async (t) => {
    const pair = await startPair({ t, wiring: 'proxy', heartbeat: { ...TIMINGS, helloTimeoutMs: 500 } });
    const proxies = pair.proxies as readonly InlinePairProxy[];
    const since = [pair.primary.cursor(), pair.secondary.cursor()];

    // Steady loss. Each heartbeat is one write, so a dropped chunk is usually a whole lost frame,
    // which the protocol tolerates (sequence gaps are allowed); the peer sees a lossy link.
    await Promise.all(proxies.map((p) => p.drop(0.2)));
    await sleep(2000);
    const dropped = proxies.reduce((n, p) => n + p.fault.stats().c2s.droppedChunks + p.fault.stats().s2c.droppedChunks, 0);
    t.ok(dropped > 0, `the proxies dropped ${dropped} chunks`);

    // Force handshakes under loss: a lost HELLO leaves one side in `hello` while the other already
    // sends under the connection key (bad-mac), or both wait (hello-timeout).
    const seen = () => both(pair).flatMap((a, i) => a.filter(rejected, since[i]));
    for (let cycle = 0; cycle < 12 && seen().length === 0; cycle++) {
      await Promise.all(proxies.map((p) => p.cut()));
      await sleep(150);
      for (const p of proxies) {
        p.fault.heal();
        p.fault.drop(0.3);
      }
      await sleep(900);
    }
    const reasons = new Set(seen().map((e) => String(e.record?.reason)));
    t.ok(reasons.size > 0, `connections were rejected: ${[...reasons].join(', ')}`);
    for (const r of reasons) t.ok(['bad-mac', 'hello-timeout', 'malformed', 'truncated', 'unexpected-message'].includes(r), `rejection reason ${r}`);

    await Promise.all(proxies.map((p) => p.heal()));
    for (const a of both(pair)) {
      // Links may have come back already under loss; either way both connections end up open.
      await until(() => openLinks(a).size >= 2, `${a.name} to have both links open again`);
      await a.waitForPeerState('up');
    }
    assertNoCrash(t, pair);
  });

  t.test('SIGTERM: a planned stop says GOODBYE, and the peer logs it', async (t) => {
    const pair = await startPair({ t, heartbeat: TIMINGS });
    const since = pair.primary.cursor();
    pair.secondary.kill('SIGTERM');
    const bye = await pair.primary.waitForLog(logMsg('peer said goodbye (planned stop)'), WAIT_MS, { since });
    t.equal(bye.record?.reason, 'planned stop (SIGTERM)');
    t.equal(bye.record?.peerName, 'colo-b');
    const exit = await pair.secondary.exited;
    t.equal(exit.code, 0, 'the stopped agent exits 0');
    const stopping = pair.secondary.find(agentState('stopping'));
    const stopped = pair.secondary.find(agentState('stopped'));
    t.ok(stopping && stopped && stopping.index < stopped.index, 'stopping, then stopped');
    const firstDoubt = pair.primary.find((r) => peerTransition('suspect')(r) || peerTransition('down')(r), since);
    t.ok(!firstDoubt || firstDoubt.index > bye.index, 'the goodbye arrived before any suspicion');
    // What follows the goodbye is not asserted: today the agent only logs it, and the peer
    // detector still times out to down as after a crash (reported; failover must tell the two apart).
  });
}
