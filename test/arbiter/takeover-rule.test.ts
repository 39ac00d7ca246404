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

t.test('a frozen host (gray failure): QEMU and agent ports accept, the agent says nothing: fenced, then taken over', async (t) => {
  const frozen = { ...base, probe: 'alive' as const, peerAgentPort: 'alive' as const, unresponsivePeerMs: 2000, fenceConfigured: true };
  t.match(decideTakeover({ ...frozen, peerSilentForMs: 2000 }), { act: true, sequence: 'secondary-failover', fenceRequired: true, reason: /frozen or hung; fencing it/ });
  t.match(decideTakeover({ ...frozen, coloMode: 'primary', peerSilentForMs: 5000 }), { act: true, sequence: 'primary-failover', fenceRequired: true }, 'a frozen secondary host too');
  t.match(decideTakeover({ ...frozen, peerSilentForMs: 1400 }), { act: false, retry: true, recheckInMs: 600, reason: /frozen after 2000 ms of silence, now 1400/ }, 'not yet: ask again exactly when it would count');
  t.match(decideTakeover({ ...frozen, peerSilentForMs: 3000, fenceConfigured: false }), { act: false, retry: true, reason: /no failover\.fenceCommand/ }, 'never without a fence: a thaw would run the guest twice');
  t.notOk('recheckInMs' in decideTakeover({ ...frozen, peerSilentForMs: 3000, fenceConfigured: false }), 'nothing changes by waiting without a fence');
  t.match(decideTakeover({ ...frozen, peerSilentForMs: 9000, peerAgentPort: 'refused' }), { act: false, retry: true, reason: /agent is down/ }, "a crashed agent's port refuses: its living QEMU is left alone");
  t.match(decideTakeover({ ...frozen, peerSilentForMs: 9000, peerAgentPort: 'silent' }), { act: false, retry: true }, 'agent ports unanswered: nothing proves a freeze');
  t.match(decideTakeover({ ...frozen, peerSilentForMs: 9000, unresponsivePeerMs: 0 }), { act: false, retry: true }, '0 turns it off');
  t.match(decideTakeover({ ...frozen, peerSilentForMs: undefined }), { act: false, retry: true }, 'a peer never heard is not frozen');
  t.match(decideTakeover({ ...frozen, peerSilentForMs: 9000, failoverEnabled: false }), { act: false, reason: /disabled/ });
});
