/**
 * The failover sequences as data: exactly the documented commands (COLO-FT.txt, facts §2), with
 * every id and port taken from the topology.
 */
import t from 'tap';
import { profileForVersion } from '../../src/colo/profile.js';
import {
  DOCUMENTED_TOPOLOGY,
  failoverSequence,
  primaryFailover,
  secondaryFailover,
  type ColoTopology,
  type Sequence,
} from '../../src/colo/sequences.js';

const P72 = profileForVersion({ major: 7, minor: 2, micro: 22 });
const P50 = profileForVersion({ major: 5, minor: 2, micro: 0 });

/** The QMP commands of a sequence as {execute, arguments}, yank steps as a marker. */
function wire(seq: Sequence): unknown[] {
  return seq.steps.map((s) => (s.kind === 'yank' ? { yank: s.targets } : s.args === undefined ? { execute: s.command } : { execute: s.command, arguments: s.args }));
}

const sock = (id: string, host: string, port: string, server: boolean) => ({
  execute: 'chardev-add',
  arguments: { id, backend: { type: 'socket', data: { addr: { type: 'inet', data: { host, port } }, server, ...(server && { wait: false }) } } },
});

t.test('primary failover with the documented names', async (t) => {
  const seq = primaryFailover({}, P72);
  t.equal(seq.name, 'primary-failover');
  t.equal(seq.roleBefore, 'primary');
  t.equal(seq.roleAfter, 'primary');
  t.same(wire(seq), [
    { yank: [{ type: 'migration' }, { type: 'block-node', under: 'replication0' }, { type: 'chardev', id: 'mirror0' }, { type: 'chardev', id: 'compare1' }] },
    { execute: 'x-blockdev-change', arguments: { parent: 'colo-disk0', child: 'children.1' } },
    { execute: 'human-monitor-command', arguments: { 'command-line': 'drive_del replication0' } },
    { execute: 'object-del', arguments: { id: 'comp0' } },
    { execute: 'object-del', arguments: { id: 'iothread1' } },
    { execute: 'object-del', arguments: { id: 'm0' } },
    { execute: 'object-del', arguments: { id: 'redire0' } },
    { execute: 'object-del', arguments: { id: 'redire1' } },
    { execute: 'x-colo-lost-heartbeat' },
  ]);
  t.same(seq.steps.map((s) => s.name), [
    'yank', 'x-blockdev-change', 'drive_del', 'object-del comp0', 'object-del iothread1', 'object-del m0', 'object-del redire0', 'object-del redire1', 'x-colo-lost-heartbeat',
  ]);
  const byName = new Map(seq.steps.map((s) => [s.name, s]));
  t.match(byName.get('drive_del'), { hmp: true, onMissing: 'done', target: { kind: 'hmp-drive', id: 'replication0' } });
  t.match(byName.get('yank'), { optional: true });
  t.match(byName.get('x-colo-lost-heartbeat'), { onMissing: 'fail' });
  t.notOk(byName.get('x-colo-lost-heartbeat')?.optional, 'lost-heartbeat is required');
});

t.test('primary failover: blockdev-del on profiles that ask for it; no yank before 6.0', async (t) => {
  const seq = primaryFailover({}, profileForVersion({ major: 10, minor: 0, micro: 7 }, 'config', { nbdNodeRemoval: 'blockdev-del' }));
  t.same(seq.steps[2], {
    kind: 'command', name: 'blockdev-del', command: 'blockdev-del', args: { 'node-name': 'replication0' },
    target: { kind: 'block-node', id: 'replication0' }, onMissing: 'done',
  });
  const old = primaryFailover({}, P50);
  t.equal(old.steps[0]?.name, 'x-blockdev-change', 'no yank step without yank');
  t.equal(old.steps.length, 8, 'the eight documented commands');
});

t.test('secondary failover with the documented names and ports', async (t) => {
  const seq = secondaryFailover({}, P72);
  t.equal(seq.roleBefore, 'secondary');
  t.equal(seq.roleAfter, 'primary');
  t.same(wire(seq), [
    { yank: [{ type: 'migration' }, { type: 'chardev', id: 'red0' }, { type: 'chardev', id: 'red1' }] },
    { execute: 'nbd-server-stop' },
    { execute: 'x-colo-lost-heartbeat' },
    { execute: 'object-del', arguments: { id: 'f2' } },
    { execute: 'object-del', arguments: { id: 'f1' } },
    { execute: 'chardev-remove', arguments: { id: 'red1' } },
    { execute: 'chardev-remove', arguments: { id: 'red0' } },
    sock('mirror0', '0.0.0.0', '9003', true),
    sock('compare1', '0.0.0.0', '9004', true),
    sock('compare0', '127.0.0.1', '9001', true),
    sock('compare0-0', '127.0.0.1', '9001', false),
    sock('compare_out', '127.0.0.1', '9005', true),
    sock('compare_out0', '127.0.0.1', '9005', false),
  ]);
  t.equal(secondaryFailover({}, P50).steps.length, 12, 'the twelve documented commands without yank');
  const names = seq.steps.map((s) => s.name);
  t.equal(new Set(names).size, names.length, 'step names are unique');
  t.match(seq.steps.find((s) => s.name === 'chardev-add mirror0'), { onExists: 'done', target: { kind: 'chardev', id: 'mirror0' } });
  t.match(seq.steps.find((s) => s.name === 'nbd-server-stop'), { onMissing: 'done', target: { kind: 'nbd-server' } });
  const hosts = secondaryFailover({}, P72, { proxyListenHost: '127.0.0.2', loopbackHost: '127.0.0.9' });
  t.match(hosts.steps.find((s) => s.name === 'chardev-add compare1'), { args: { backend: { data: { addr: { data: { host: '127.0.0.2' } } } } } });
  t.match(hosts.steps.find((s) => s.name === 'chardev-add compare_out0'), { args: { backend: { data: { addr: { data: { host: '127.0.0.9' } } } } } });
});

t.test('every id and port comes from the topology', async (t) => {
  const renamed: ColoTopology = {
    disk: 'qdisk',
    replicationNode: 'rep9',
    quorumChild: 'children.7',
    mirrorPort: 19003,
    compare1Port: 19004,
    compare0Port: 19001,
    compareOutPort: 19005,
    ids: Object.fromEntries(Object.entries(DOCUMENTED_TOPOLOGY.ids).map(([k, v]) => [k, `x-${v}`])) as unknown as ColoTopology['ids'],
  };
  const documentedNames = [
    'colo-disk0', 'replication0', 'children.1', ...Object.values(DOCUMENTED_TOPOLOGY.ids),
  ];
  const mentions = (text: string, doc: string) => new RegExp(`"${doc.replace('.', '\\.')}"|[ ']${doc.replace('.', '\\.')}"`).test(text);
  t.ok(mentions(JSON.stringify(primaryFailover({}, P72).steps), 'replication0'), 'control: the check finds a documented name');
  for (const name of ['primary-failover', 'secondary-failover'] as const) {
    const seq = failoverSequence(name, renamed, P72);
    const text = JSON.stringify(seq.steps);
    for (const doc of documentedNames) t.notOk(mentions(text, doc), `${name}: no documented ${doc} left`);
    for (const port of ['9001', '9003', '9004', '9005']) t.notOk(text.includes(`"${port}"`), `${name}: no documented port ${port}`);
  }
  t.same(wire(primaryFailover(renamed, P72)).slice(1, 4), [
    { execute: 'x-blockdev-change', arguments: { parent: 'qdisk', child: 'children.7' } },
    { execute: 'human-monitor-command', arguments: { 'command-line': 'drive_del rep9' } },
    { execute: 'object-del', arguments: { id: 'x-comp0' } },
  ]);
  t.same(primaryFailover(renamed, P72).steps[0], {
    kind: 'yank', name: 'yank', optional: true,
    targets: [{ type: 'migration' }, { type: 'block-node', under: 'rep9' }, { type: 'chardev', id: 'x-mirror0' }, { type: 'chardev', id: 'x-compare1' }],
  });
  const sec = wire(secondaryFailover(renamed, P72));
  t.same(sec.slice(3), [
    { execute: 'object-del', arguments: { id: 'x-f2' } },
    { execute: 'object-del', arguments: { id: 'x-f1' } },
    { execute: 'chardev-remove', arguments: { id: 'x-red1' } },
    { execute: 'chardev-remove', arguments: { id: 'x-red0' } },
    sock('x-mirror0', '0.0.0.0', '19003', true),
    sock('x-compare1', '0.0.0.0', '19004', true),
    sock('x-compare0', '127.0.0.1', '19001', true),
    sock('x-compare0-0', '127.0.0.1', '19001', false),
    sock('x-compare_out', '127.0.0.1', '19005', true),
    sock('x-compare_out0', '127.0.0.1', '19005', false),
  ]);
});

t.test('a partial topology is completed with the documented names; a ColoConfig-shaped object fits', async (t) => {
  const seq = primaryFailover({ ids: { comp0: 'cmp' }, disk: 'd0' }, P72);
  t.match(seq.steps[1], { args: { parent: 'd0', child: 'children.1' } });
  t.match(seq.steps[3], { args: { id: 'cmp' } });
  t.match(seq.steps[4], { args: { id: 'iothread1' } });
  const configLike = { ...DOCUMENTED_TOPOLOGY, primaryHost: '10.0.0.1', secondaryHost: '10.0.0.2', nbdExport: 'parent0', nbdPort: 9999, migrationPort: 9998, checkpointDelayMs: 1 };
  t.same(wire(secondaryFailover(configLike, P72)), wire(secondaryFailover({}, P72)));
});
