/**
 * FailoverOutages: where the live view's OUTAGE begins and ends (src/demo/outage.ts), from the
 * demo's sight of a QEMU ending and the agents' records as they log them.
 */
import t from 'tap';
import type { LogRecord } from '../../src/demo/agent-child.js';
import { FailoverOutages } from '../../src/demo/outage.js';

const T = Date.parse('2026-01-01T12:00:00.000Z');

const coloExit = (at: number): LogRecord => ({ level: 'warn', time: at, component: 'colo-monitor', msg: 'COLO_EXIT', mode: 'secondary', reason: 'error' });
const peerDown = (at: number): LogRecord => ({ level: 'info', time: at, component: 'failure-detector', detector: 'peer', from: 'suspect', to: 'down', reason: 'timeout', msg: 'peer suspect -> down (timeout)' });
const peerUp = (at: number): LogRecord => ({ level: 'info', time: at, component: 'failure-detector', detector: 'peer', from: 'down', to: 'up', reason: 'recovered', msg: 'peer down -> up (recovered)' });
const starting = (at: number): LogRecord => ({ level: 'warn', time: at, component: 'failover', msg: 'failover starting', sequence: 'secondary-failover' });
const done = (at: number, durationMs = 50): LogRecord => ({ level: 'warn', time: at, component: 'agent', msg: 'failover done: running solo as primary', sequence: 'secondary-failover', durationMs });
const failed = (at: number): LogRecord => ({ level: 'error', time: at, component: 'agent', msg: 'failover FAILED', sequence: 'secondary-failover' });

t.test('nothing before a failover ends; then from the earliest evidence to done', async (t) => {
  const o = new FailoverOutages();
  t.equal(o.last('secondary'), undefined);
  o.record('secondary', coloExit(T + 5));
  o.record('secondary', starting(T + 400));
  t.equal(o.last('secondary'), undefined, 'under way: no figure yet');
  o.record('secondary', done(T + 450));
  // The demo saw the QEMU end after the agent's record of what followed: still the earliest.
  o.qemuEnded('primary', T);
  t.same(o.last('secondary'), { from: T, fromWhat: "the primary's QEMU ending", to: T + 450, ms: 450, ok: true });
  t.equal(o.last('primary'), undefined, 'the primary ran no failover');
});

t.test('a fault the demo cannot see: from the detection; an operator\'s failover: from its start', async (t) => {
  const o = new FailoverOutages();
  o.record('primary', peerDown(T + 100));
  o.record('primary', starting(T + 900));
  o.record('primary', done(T + 1000));
  t.match(o.last('primary'), { from: T + 100, ms: 900, ok: true, fromWhat: /^detection \(peer down: heartbeats missed/ });
  // A later failover counts only what came after the previous one ended.
  o.record('primary', starting(T + 60_000));
  o.record('primary', done(T + 60_040));
  t.match(o.last('primary'), { from: T + 60_000, ms: 40, fromWhat: /^failover starting/ });
});

t.test('a peer back up ends the evidence; a failed failover says so; no start logged: the sequence\'s own duration', async (t) => {
  const o = new FailoverOutages();
  o.record('secondary', peerDown(T));
  o.record('secondary', peerUp(T + 2000));
  o.record('secondary', coloExit(T + 10_000));
  o.record('secondary', done(T + 10_300));
  t.match(o.last('secondary'), { from: T + 10_000, ms: 300 }, 'the outage healed at +2 s is not counted');
  o.record('secondary', failed(T + 20_000));
  t.match(o.last('secondary'), { ok: false, to: T + 20_000 });
  const bare = new FailoverOutages();
  bare.record('secondary', done(T + 500, 80));
  t.match(bare.last('secondary'), { from: T + 420, ms: 80, fromWhat: 'the failover sequence' });
});
