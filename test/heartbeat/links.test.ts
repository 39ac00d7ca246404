/**
 * Two HeartbeatLinks instances on loopback: handshake, heartbeats both ways, RTT, link loss and
 * redial, two paths with one cut, half-open paths, GOODBYE, interval reload, reserved messages,
 * insecure mode, options.
 */
import { randomBytes } from 'node:crypto';
import t from 'tap';
import { HeartbeatOptionsError, InvalidMessageError } from '../../src/heartbeat/errors.js';
import { HeartbeatLinks } from '../../src/heartbeat/links.js';
import { freePort } from '../helpers/free-port.js';
import { key, portOf, Proxy, record, sleep, startLinks, until, summaryOf, waitEvent } from './support.js';

t.test('handshake, heartbeats both ways, RTT, peer sessions', async (t) => {
  const k = key();
  const a = await startLinks(t, { nodeName: 'node-a', role: 'primary', listen: '127.0.0.1:0', key: k });
  const addr = `127.0.0.1:${portOf(a)}`;
  const aSessions = record(a, 'peer-session');
  const aUp = waitEvent(a, 'link-up');
  const aBeat = waitEvent(a, 'heartbeat', (e) => e.seq > 3);
  const aRtt = waitEvent(a, 'rtt');
  const b = new HeartbeatLinks({ nodeName: 'node-b', role: 'secondary', peers: [addr], key: k, intervalMs: 25, summary: summaryOf('secondary') });
  t.teardown(() => b.close({ goodbye: false }));
  const bUp = waitEvent(b, 'link-up');
  const bBeat = waitEvent(b, 'heartbeat');
  const bRtt = waitEvent(b, 'rtt');
  const bSession = waitEvent(b, 'peer-session');
  await b.start();

  const [au, bu] = await Promise.all([aUp, bUp]);
  t.match(au, { link: 'in:127.0.0.1', direction: 'accept', peerName: 'node-b', peerRole: 'secondary', peerSession: b.session });
  t.match(bu, { link: addr, direction: 'dial', peerName: 'node-a', peerRole: 'primary', peerSession: a.session });
  t.same(await bSession, { kind: 'new', name: 'node-a', role: 'primary', session: a.session });
  t.same(aSessions, [{ kind: 'new', name: 'node-b', role: 'secondary', session: b.session }]);

  const hb = await aBeat;
  t.match(hb, { link: 'in:127.0.0.1', peerName: 'node-b', peerSession: b.session });
  t.same(hb.summary, { role: 'secondary', coloMode: 'secondary', qemuReachable: true, agentState: 'healthy', intervalMs: 25 }, 'the links stamp the interval they send at');
  t.type(hb.receivedAt, 'number');
  t.match(await bBeat, { link: addr, peerName: 'node-a', summary: { role: 'primary', coloMode: 'primary' } });
  const [ar, br] = await Promise.all([aRtt, bRtt]);
  t.ok(ar.rttMs >= 0 && br.rttMs >= 0, 'RTT measured on both sides');
  t.equal(br.link, addr);
  t.match(a.links(), [{ link: 'in:127.0.0.1', direction: 'accept', state: 'established', peerName: 'node-b', peerSession: b.session }]);
  t.match(b.links(), [{ link: addr, direction: 'dial', state: 'established', peerName: 'node-a' }]);
});

t.test('link-down when the peer goes away, link-up again after redial (peer restarted)', async (t) => {
  const k = key();
  const a1 = new HeartbeatLinks({ nodeName: 'node-a', role: 'primary', listen: '127.0.0.1:0', key: k, intervalMs: 25, summary: summaryOf('primary') });
  t.teardown(() => a1.close({ goodbye: false }));
  await a1.start();
  const port = portOf(a1);
  const b = await startLinks(t, { nodeName: 'node-b', role: 'secondary', peers: [`127.0.0.1:${port}`], key: k });
  await waitEvent(b, 'link-up');
  const down = waitEvent(b, 'link-down');
  await a1.close({ goodbye: false });
  t.match(await down, { link: `127.0.0.1:${port}`, reason: 'peer-closed', peerName: 'node-a', peerSession: a1.session });

  const changed = waitEvent(b, 'peer-session');
  const up = waitEvent(b, 'link-up');
  const a2 = await startLinks(t, { nodeName: 'node-a', role: 'primary', listen: `127.0.0.1:${port}`, key: k });
  t.match(await up, { link: `127.0.0.1:${port}`, peerSession: a2.session });
  t.same(await changed, { kind: 'changed', name: 'node-a', role: 'primary', session: a2.session, previous: a1.session });
});

t.test('two paths: one cut, the other keeps delivering, the cut one comes back', async (t) => {
  const k = key();
  const a = await startLinks(t, { nodeName: 'node-a', listen: ['127.0.0.1:0', '127.0.0.1:0'], key: k });
  const direct = `127.0.0.1:${portOf(a, 0)}`;
  const proxy = await Proxy.start(t, portOf(a, 1));
  const viaProxy = `127.0.0.1:${proxy.port}`;
  const aUps = record(a, 'link-up');
  const b = new HeartbeatLinks({
    nodeName: 'node-b',
    role: 'secondary',
    // a distinct source address keeps the two accepted links apart on the listener (in:<address>)
    peers: [{ address: direct, localAddress: '127.0.0.2' }, viaProxy],
    key: k,
    intervalMs: 25,
    reconnectInitialMs: 20,
    reconnectMaxMs: 60,
    summary: summaryOf('secondary'),
  });
  t.teardown(() => b.close({ goodbye: false }));
  const bUps = record(b, 'link-up');
  await b.start();
  await until(() => bUps.length >= 2 && aUps.length >= 2);
  t.same(new Set(bUps.map((e) => e.link)), new Set([direct, viaProxy]));
  t.same(new Set(aUps.map((e) => e.link)), new Set(['in:127.0.0.2', 'in:127.0.0.1']));

  const bDown = waitEvent(b, 'link-down');
  const aDown = waitEvent(a, 'link-down');
  proxy.cut();
  t.match(await bDown, { link: viaProxy });
  t.match(await aDown, { link: 'in:127.0.0.1' });

  const aBeats = record(a, 'heartbeat');
  const bBeats = record(b, 'heartbeat');
  await until(() => aBeats.length >= 3 && bBeats.length >= 3);
  t.ok(aBeats.every((e) => e.link === 'in:127.0.0.2'), 'A hears B on the remaining path');
  t.ok(bBeats.every((e) => e.link === direct), 'B hears A on the remaining path');

  const back = waitEvent(b, 'link-up', (e) => e.link === viaProxy);
  proxy.restore();
  await back;
  t.same(new Set(b.links().filter((l) => l.state === 'established').map((l) => l.link)), new Set([direct, viaProxy]));
});

t.test('two paths from one source address both stay up, told apart by a suffix', async (t) => {
  const k = key();
  const a = await startLinks(t, { nodeName: 'node-a', listen: ['127.0.0.1:0', '127.0.0.1:0'], key: k });
  const aUps = record(a, 'link-up');
  const aDowns = record(a, 'link-down');
  const b = await startLinks(t, { nodeName: 'node-b', role: 'secondary', peers: [`127.0.0.1:${portOf(a, 0)}`, `127.0.0.1:${portOf(a, 1)}`], key: k });
  const bUps = record(b, 'link-up');
  await until(() => aUps.length >= 2 && bUps.length >= 2);
  const beats = record(a, 'heartbeat');
  await until(() => new Set(beats.map((e) => e.link)).size === 2 && beats.length >= 10);
  t.same(new Set(aUps.map((e) => e.link)), new Set(['in:127.0.0.1', 'in:127.0.0.1#2']));
  t.same(new Set(beats.map((e) => e.link)), new Set(['in:127.0.0.1', 'in:127.0.0.1#2']), 'both deliver');
  t.same(aDowns, [], 'neither displaces the other');
});

t.test('half-open path: idle timeout tears it down on both sides, redial brings it back', async (t) => {
  const k = key();
  const a = await startLinks(t, { nodeName: 'node-a', listen: '127.0.0.1:0', key: k, idleTimeoutMs: 250 });
  const proxy = await Proxy.start(t, portOf(a));
  const link = `127.0.0.1:${proxy.port}`;
  const aUp = waitEvent(a, 'link-up');
  const b = await startLinks(t, { nodeName: 'node-b', role: 'secondary', peers: [link], key: k, idleTimeoutMs: 250 });
  await Promise.all([aUp, waitEvent(b, 'link-up')]);
  const aDown = waitEvent(a, 'link-down');
  const bDown = waitEvent(b, 'link-down');
  proxy.freeze();
  t.match(await bDown, { link, reason: 'idle-timeout' });
  t.match(await aDown, { reason: 'idle-timeout' });
  const up = waitEvent(b, 'link-up');
  proxy.restore();
  t.match(await up, { link });
});

t.test('peer restart: links of the old session are dropped when the new one comes up', async (t) => {
  const k = key();
  const a = await startLinks(t, { nodeName: 'node-a', listen: ['127.0.0.1:0', '127.0.0.1:0'], key: k, idleTimeoutMs: 10_000 });
  const proxy = await Proxy.start(t, portOf(a, 1));
  const aUps = record(a, 'link-up');
  const b1 = await startLinks(t, {
    nodeName: 'node-b',
    role: 'secondary',
    peers: [{ address: `127.0.0.1:${portOf(a, 0)}`, localAddress: '127.0.0.2' }, `127.0.0.1:${proxy.port}`],
    key: k,
  });
  await until(() => aUps.length >= 2);
  proxy.freeze(); // the proxied link on A now lingers, half-open, for up to its idle timeout
  await b1.close({ goodbye: false });
  const stale = waitEvent(a, 'link-down', (e) => e.reason === 'peer-restarted');
  const changed = waitEvent(a, 'peer-session');
  const b2 = await startLinks(t, { nodeName: 'node-b', role: 'secondary', peers: [{ address: `127.0.0.1:${portOf(a, 0)}`, localAddress: '127.0.0.2' }], key: k });
  t.match(await changed, { kind: 'changed', session: b2.session, previous: b1.session });
  t.match(await stale, { link: 'in:127.0.0.1', peerSession: b1.session });
});

t.test('GOODBYE is observed with its reason', async (t) => {
  const k = key();
  const a = await startLinks(t, { nodeName: 'node-a', listen: '127.0.0.1:0', key: k });
  const aUp = waitEvent(a, 'link-up');
  const b = await startLinks(t, { nodeName: 'node-b', role: 'secondary', peers: [`127.0.0.1:${portOf(a)}`], key: k });
  await Promise.all([aUp, waitEvent(b, 'link-up')]);
  const bye = waitEvent(a, 'goodbye');
  const down = waitEvent(a, 'link-down');
  await b.close({ goodbye: 'planned maintenance' });
  t.same(await bye, { link: 'in:127.0.0.1', peerName: 'node-b', peerSession: b.session, reason: 'planned maintenance' });
  t.match(await down, { link: 'in:127.0.0.1', reason: 'goodbye' });
  t.same(a.links(), [], 'nothing left on A');
});

t.test('updateInterval changes the pace without dropping links', async (t) => {
  const k = key();
  const a = await startLinks(t, { nodeName: 'node-a', listen: '127.0.0.1:0', key: k, intervalMs: 200 });
  const b = await startLinks(t, { nodeName: 'node-b', role: 'secondary', peers: [`127.0.0.1:${portOf(a)}`], key: k, intervalMs: 200 });
  await waitEvent(a, 'link-up');
  const aDowns = record(a, 'link-down');
  const bDowns = record(b, 'link-down');
  b.updateInterval(10);
  a.updateInterval(10);
  const beats = record(a, 'heartbeat');
  await until(() => beats.length >= 20);
  t.same([...aDowns, ...bDowns], [], 'no link went down');
  t.throws(() => a.updateInterval(0), HeartbeatOptionsError);
});

t.test('reserved message types reach the peer as message events', async (t) => {
  const k = key();
  const a = await startLinks(t, { nodeName: 'node-a', listen: '127.0.0.1:0', key: k });
  const b = await startLinks(t, { nodeName: 'node-b', role: 'secondary', peers: [`127.0.0.1:${portOf(a)}`], key: k });
  t.equal(b.send('peer-qemu-gone', { why: 'early' }), 0, 'no established link yet');
  await waitEvent(b, 'link-up');
  const msg = waitEvent(a, 'message');
  t.equal(b.send('peer-qemu-gone', { event: 'COLO_EXIT', reason: 'error' }), 1);
  t.same(await msg, { link: 'in:127.0.0.1', peerName: 'node-b', peerSession: b.session, type: 'peer-qemu-gone', body: { event: 'COLO_EXIT', reason: 'error' }, epoch: 0 });
  const cyclic: Record<string, unknown> = {};
  cyclic.self = cyclic;
  t.throws(() => b.send('failover-announce', cyclic), InvalidMessageError, 'unsendable body throws to the caller');
});

t.test('every frame carries the sender epoch: epoch events on connect and on each rise; sendTo picks one peer', async (t) => {
  const k = key();
  let aEpoch = 3;
  const a = await startLinks(t, { nodeName: 'node-a', listen: '127.0.0.1:0', key: k, epoch: () => aEpoch });
  const b = await startLinks(t, { nodeName: 'node-b', role: 'secondary', peers: [`127.0.0.1:${portOf(a)}`], key: k });
  const c = await startLinks(t, { nodeName: 'node-c', role: 'witness', peers: [`127.0.0.1:${portOf(a)}`], key: k });
  const bEpochs = record(b, 'epoch');
  const aEpochs = record(a, 'epoch');
  await Promise.all([waitEvent(b, 'heartbeat'), waitEvent(c, 'heartbeat')]);
  t.match(bEpochs, [{ peerName: 'node-a', epoch: 3 }], 'the HELLO epoch is reported once the link is up');
  t.ok(aEpochs.every((e) => e.epoch === 0), 'peers without an epoch source send 0');
  t.equal((await waitEvent(b, 'heartbeat')).epoch, 3, 'heartbeat events carry the link epoch');
  aEpoch = 5;
  await until(() => bEpochs.length >= 2);
  t.match(bEpochs[1], { peerName: 'node-a', epoch: 5 });
  const beat = await waitEvent(b, 'heartbeat');
  t.equal(beat.epoch, 5);
  t.equal(bEpochs.length, 2, 'an unchanged epoch raises no further event');

  const toB = waitEvent(b, 'message');
  const cMessages = record(c, 'message');
  t.equal(a.sendTo('node-b', 'arbitration-grant', { granted: true }), 1, 'one link to node-b');
  t.match(await toB, { type: 'arbitration-grant', body: { granted: true }, epoch: 5 });
  t.equal(a.sendTo('node-x', 'arbitration-grant', { granted: true }), 0, 'no link to an unknown node');
  await sleep(50);
  t.same(cMessages, [], 'the other peer got nothing');
});

t.test('insecure mode: insecure pairs talk, insecure never silently meets keyed', async (t) => {
  const a = await startLinks(t, { nodeName: 'node-a', listen: '127.0.0.1:0', insecure: true });
  const b = await startLinks(t, { nodeName: 'node-b', role: 'secondary', peers: [`127.0.0.1:${portOf(a)}`], insecure: true });
  await Promise.all([waitEvent(a, 'link-up'), waitEvent(b, 'heartbeat')]);

  const keyed = await startLinks(t, { nodeName: 'node-k', listen: '127.0.0.1:0', key: key() });
  const keyedUps = record(keyed, 'link-up');
  const mismatch = waitEvent(keyed, 'rejected');
  const c = await startLinks(t, { nodeName: 'node-c', role: 'secondary', peers: [`127.0.0.1:${portOf(keyed)}`], insecure: true });
  const cUps = record(c, 'link-up');
  const badMac = waitEvent(c, 'rejected');
  t.match(await mismatch, { reason: 'auth-mismatch', link: 'in:127.0.0.1' });
  t.match(await badMac, { reason: 'bad-mac', message: /this node runs insecure/ });
  await sleep(100);
  t.same([...keyedUps, ...cUps], [], 'no link came up');
});

t.test('dialling ourselves is refused as self-connection', async (t) => {
  const port = await freePort();
  const a = await startLinks(t, { nodeName: 'node-a', listen: `127.0.0.1:${port}`, peers: [`127.0.0.1:${port}`], key: key() });
  const rej = await waitEvent(a, 'rejected');
  t.equal(rej.reason, 'self-connection');
  t.same(a.links().filter((l) => l.state === 'established'), []);
});

t.test('options are validated', async (t) => {
  const base = { nodeName: 'n', role: 'primary', listen: '127.0.0.1:0', intervalMs: 50, summary: summaryOf('primary') };
  const bad: Array<[string, object]> = [
    ['neither key nor insecure', {}],
    ['both key and insecure', { key: key(), insecure: true }],
    ['short key', { key: randomBytes(16) }],
    ['zero key', { key: Buffer.alloc(32) }],
    ['bad node name', { key: key(), nodeName: 'no spaces' }],
    ['bad role', { key: key(), role: 'Primary' }],
    ['nothing to do', { key: key(), listen: undefined }],
    ['bad listen', { key: key(), listen: 'nope' }],
    ['bad peer', { key: key(), peers: ['127.0.0.1:0'] }],
    ['duplicate peer', { key: key(), peers: ['127.0.0.1:1', '127.0.0.1:1'] }],
    ['bad localAddress', { key: key(), peers: [{ address: '127.0.0.1:1', localAddress: 'eth0' }] }],
    ['zero interval', { key: key(), intervalMs: 0 }],
    ['tiny maxFrameBytes', { key: key(), maxFrameBytes: 100 }],
    ['backoff upside down', { key: key(), reconnectInitialMs: 100, reconnectMaxMs: 10 }],
    ['bad replay window', { key: key(), replayWindow: 33 }],
  ];
  for (const [what, o] of bad) {
    t.throws(() => new HeartbeatLinks({ ...base, ...o } as ConstructorParameters<typeof HeartbeatLinks>[0]), what);
  }
});

t.test('start fails cleanly on a busy port; close is idempotent and prompt', async (t) => {
  const k = key();
  const a = await startLinks(t, { nodeName: 'node-a', listen: '127.0.0.1:0', key: k });
  const clash = new HeartbeatLinks({ nodeName: 'node-x', role: 'primary', listen: `127.0.0.1:${portOf(a)}`, key: k, intervalMs: 50, summary: summaryOf('primary') });
  await t.rejects(clash.start(), { code: 'EADDRINUSE' });
  await t.rejects(clash.start(), HeartbeatOptionsError, 'no second start');
  const b = await startLinks(t, { nodeName: 'node-b', role: 'secondary', peers: [`127.0.0.1:${portOf(a)}`], key: k });
  await waitEvent(b, 'link-up');
  const p1 = a.close();
  const p2 = a.close();
  t.equal(p1, p2, 'same promise');
  await p1;
  t.same(a.listenAddresses(), [], 'listener gone');
  t.same(a.links(), []);
});

t.test('a throwing event listener does not break the link', async (t) => {
  const k = key();
  const a = await startLinks(t, { nodeName: 'node-a', listen: '127.0.0.1:0', key: k });
  const beats = record(a, 'heartbeat');
  a.on('heartbeat', () => {
    throw new Error('listener bug');
  });
  const downs = record(a, 'link-down');
  await startLinks(t, { nodeName: 'node-b', role: 'secondary', peers: [`127.0.0.1:${portOf(a)}`], key: k });
  await until(() => beats.length >= 5);
  t.same(downs, [], 'link stayed up');
});
