import t from 'tap';
import { loadConfig } from '../../src/config/loader.js';
import { CROSS_KEY_RULES, checkCrossKeyRules } from '../../src/config/rules.js';
import { leafSpec } from '../../src/config/schema.js';
import type { AgentConfig } from '../../src/config/types.js';

function valid(): AgentConfig {
  return loadConfig({ env: {}, sets: ['heartbeat.peers=127.0.0.2:7410', 'node.name=colo-a'] });
}

t.test('a valid config breaks no rule', async (t) => {
  t.same(checkCrossKeyRules(valid()), []);
});

t.test('every rule names real keys, is documented, and blames one of its keys', async (t) => {
  const broken = valid();
  broken.heartbeat.suspectMisses = 9;
  broken.qemu.reconnectInitialMs = 9999;
  broken.heartbeat.reconnectInitialMs = 9999;
  broken.heartbeat.peers = [];
  broken.heartbeat.keyFile = '';
  broken.colo.nbdPort = broken.colo.migrationPort;
  broken.colo.ids.f1 = broken.colo.ids.f2;
  broken.arbiter.mode = 'witness';
  broken.arbiter.leaseMs = broken.heartbeat.intervalMs;
  broken.failover.selfFence = true;
  broken.failover.resumeRetryInitialMs = broken.failover.resumeRetryMaxMs + 1;
  broken.qemu.launch.enabled = true;
  const witness = valid();
  witness.node.role = 'witness';
  witness.qemu.launch.enabled = true;
  witness.qemu.launch.secondaryCommand = ['qemu-system-x86_64', '-daemonize'];
  witness.heartbeat.peers = [witness.heartbeat.listen];
  witness.arbiter.mode = 'etcd';
  for (const [i, rule] of CROSS_KEY_RULES.entries()) {
    t.ok(rule.doc.length > 20, `rule ${i} documented`);
    for (const key of rule.keys) t.ok(leafSpec(key), `rule ${i}: ${key} is a key`);
    const problems = [...rule.check(broken), ...rule.check(witness)];
    t.ok(problems.length > 0, `rule ${i} can fail: ${rule.doc}`);
    for (const p of problems) t.ok(rule.keys.includes(p.key), `rule ${i} blames ${p.key}, one of its keys`);
  }
});

t.test('rules over a key that is already invalid are skipped', async (t) => {
  const cfg = valid();
  cfg.heartbeat.suspectMisses = 9;
  t.equal(checkCrossKeyRules(cfg).length, 1);
  t.same(checkCrossKeyRules(cfg, new Set(['heartbeat.missThreshold'])), []);
});
