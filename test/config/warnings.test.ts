import t from 'tap';
import { loadConfig } from '../../src/config/loader.js';
import { configWarnings } from '../../src/config/warnings.js';

const load = (sets: string[]) => loadConfig({ env: {}, sets: ['heartbeat.peers=127.0.0.2:7410', ...sets] });

t.test('insecure heartbeats and a missing arbiter are warned about', async (t) => {
  const w = configWarnings(load(['heartbeat.insecure=true']));
  t.match(w, [/^heartbeat\.insecure is true: heartbeats are not authenticated; anyone who can reach 0\.0\.0\.0:7410/, /^arbiter\.mode is none/]);
});

t.test('no warnings when an arbiter is configured and heartbeats are authenticated', async (t) => {
  t.same(configWarnings(load(['arbiter.mode=witness', 'arbiter.witness=127.0.0.3:7410'])), []);
  t.same(configWarnings(load(['failover.enabled=false'])), [], 'no failover, no split brain');
});

t.test('a primary told to keep running without its lease is warned about', async (t) => {
  t.match(configWarnings(load(['arbiter.mode=witness', 'arbiter.witness=127.0.0.3:7410', 'arbiter.onLeaseLoss=keep-running'])), [/^arbiter\.onLeaseLoss is keep-running/]);
});
