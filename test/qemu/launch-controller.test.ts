/**
 * The launch policy: a fresh secondary only where this node will not be primary, and never while
 * the agent is busy with a failover, a resume or a decision (launch-controller.ts).
 */
import t from 'tap';
import { launchRefusal } from '../../src/qemu/launch-controller.js';

t.test('a secondary or a stale node may launch; a primary may not; busy always refuses', async (t) => {
  t.equal(launchRefusal({ role: 'secondary', stale: false }), undefined, 'secondary');
  t.equal(launchRefusal({ role: 'primary', stale: true }), undefined, 'stale primary: the peer took the guest, this host comes back as secondary');
  t.match(launchRefusal({ role: 'primary', stale: false }), /this node is primary/, 'a primary never gets a fresh secondary beside (or instead of) its guest');
  t.match(launchRefusal({ role: 'witness', stale: false }), /witness/);
  t.equal(launchRefusal({ role: 'secondary', stale: false, busy: 'a sequence is unfinished in the journal' }), 'a sequence is unfinished in the journal');
  t.equal(launchRefusal({ role: 'primary', stale: true, busy: 'the agent is failed' }), 'the agent is failed', 'busy wins over stale');
});
