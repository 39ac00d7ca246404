import t from 'tap';
import { ReplayError } from '../../src/heartbeat/errors.js';
import { PeerSessions } from '../../src/heartbeat/peer-sessions.js';

const S1 = '1111111111111111';
const S2 = '2222222222222222';
const S3 = '3333333333333333';

t.test('new, same and changed sessions', async (t) => {
  const p = new PeerSessions({ windowSize: 64 });
  t.same(p.establish('b', 'secondary', S1, 1), { kind: 'new', name: 'b', role: 'secondary', session: S1 });
  p.accept(S1, 2);
  t.same(p.establish('b', 'secondary', S1, 3), { kind: 'same', name: 'b', role: 'secondary', session: S1 }, 'a second link of the same session');
  t.same(p.establish('b', 'primary', S2, 1), { kind: 'changed', name: 'b', role: 'primary', session: S2, previous: S1 }, 'restart');
  t.same(p.current('b'), { session: S2, role: 'primary' });
  t.ok(p.isRetired(S1));
});

t.test('window per session, shared by all its links', async (t) => {
  const p = new PeerSessions({ windowSize: 64 });
  p.establish('b', 'secondary', S1, 1);
  p.accept(S1, 3); // link 1
  p.accept(S1, 2); // link 2, a little behind
  t.throws(() => p.accept(S1, 2), ReplayError, 'duplicate');
  p.accept(S1, 100);
  t.throws(() => p.accept(S1, 10), ReplayError, 'too old');
  t.throws(() => p.accept(S3, 1), ReplayError, 'unknown session');
});

t.test('HELLO checks: replayed seq and retired sessions', async (t) => {
  const p = new PeerSessions({ windowSize: 64 });
  t.doesNotThrow(() => p.checkHello(S1, 1), 'unknown session: nothing to compare with');
  p.establish('b', 'secondary', S1, 1);
  t.throws(() => p.checkHello(S1, 1), ReplayError, 'old HELLO of the current session');
  t.doesNotThrow(() => p.checkHello(S1, 2), 'new connection of the current session');
  p.establish('b', 'secondary', S2, 1);
  const err = t.throws(() => p.checkHello(S1, 500), ReplayError) as ReplayError;
  t.equal(err.reason, 'replay');
  t.throws(() => p.establish('b', 'secondary', S1, 501), ReplayError, 'a retired session never comes back');
  t.same(p.current('b')?.session, S2);
});

t.test('the retired list is bounded', async (t) => {
  const p = new PeerSessions({ retiredLimit: 2 });
  const ids = ['a', 'b', 'c', 'd'].map((c) => c.repeat(16));
  for (const id of ids) p.establish('peer', 'secondary', id, 1);
  t.notOk(p.isRetired(ids[0]!), 'oldest forgotten');
  t.ok(p.isRetired(ids[1]!));
  t.ok(p.isRetired(ids[2]!));
  t.notOk(p.isRetired(ids[3]!), 'current');
});
