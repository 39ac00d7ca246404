import t from 'tap';
import { decideTakeover, type TakeoverFacts } from '../../src/arbiter/takeover-rule.js';

const base: TakeoverFacts = { trigger: 'peer-down', qemuReachable: true, coloMode: 'secondary', failoverEnabled: true };

t.test('our own QEMU decides whether there is anything to fail over', async (t) => {
  t.match(decideTakeover({ ...base, probe: 'refused', qemuReachable: false }), { act: false, retry: false, reason: /unreachable/ });
  for (const mode of ['none', 'unknown']) {
    t.match(decideTakeover({ ...base, probe: 'refused', coloMode: mode }), { act: false, reason: /not replicating/ }, mode);
  }
});

t.test('the COLO mode picks the sequence', async (t) => {
  t.match(decideTakeover({ ...base, probe: 'refused', coloMode: 'primary' }), { act: true, sequence: 'primary-failover' });
  t.match(decideTakeover({ ...base, probe: 'refused', coloMode: 'secondary' }), { act: true, sequence: 'secondary-failover' });
});

t.test('a silent peer: the probe of its QEMU tells a crashed agent from a lost host', async (t) => {
  t.match(decideTakeover({ ...base, probe: 'refused' }), { act: true });
  t.match(decideTakeover({ ...base, probe: 'silent' }), { act: true, reason: /host/ });
  t.match(decideTakeover({ ...base, probe: 'alive' }), { act: false, retry: true, reason: /agent is down/ });
  t.match(decideTakeover({ ...base }), { act: false, retry: true });
});

t.test("the peer agent's word that its QEMU is gone is the fast path", async (t) => {
  t.match(decideTakeover({ ...base, trigger: 'peer-qemu-gone', probe: 'refused' }), { act: true, reason: /reports its QEMU gone/ });
  t.match(decideTakeover({ ...base, trigger: 'peer-qemu-gone' }), { act: false, retry: true }, 'confirmed by the probe first');
  t.match(decideTakeover({ ...base, trigger: 'peer-qemu-gone', probe: 'alive' }), { act: false, retry: true }, 'a QEMU that still listens is never replaced');
  t.match(decideTakeover({ ...base, trigger: 'peer-qemu-gone', probe: 'refused', failoverEnabled: false }), { act: false, reason: /disabled/ });
});

t.test('COLO_EXIT(error) acts only when the peer is not reported alive', async (t) => {
  const exit = { ...base, trigger: 'colo-exit-error' as const };
  t.match(decideTakeover({ ...exit, peerReportsQemuReachable: true, probe: 'silent' }), { act: false, retry: false });
  t.match(decideTakeover({ ...exit, peerReportsQemuReachable: false, probe: 'silent' }), { act: true });
  t.match(decideTakeover({ ...exit, peerReportsQemuReachable: true, probe: 'refused' }), { act: true }, 'the kernel beats a heartbeat one interval old');
  t.match(decideTakeover({ ...exit, probe: 'alive' }), { act: false, retry: true });
});

t.test('manual runs even with automatic failover off, never on an unreachable QEMU', async (t) => {
  t.match(decideTakeover({ ...base, trigger: 'manual', failoverEnabled: false }), { act: true });
  t.match(decideTakeover({ ...base, trigger: 'manual', qemuReachable: false }), { act: false });
});
