/**
 * Yank resolution: only instances query-yank lists, block nodes only below the replication node.
 */
import t from 'tap';
import { blockNodesUnder, describeYankTarget, needsBlockGraph, parseYankInstances, resolveYank, type YankTarget } from '../../src/colo/yank.js';

// The block graph real QEMU 7.2 reports for the documented primary (x-debug-query-block-graph).
const GRAPH = {
  nodes: [
    { name: 'replication0', type: 'block-driver', id: 3 },
    { name: '#block376', type: 'block-driver', id: 6 },
    { name: '#block237', type: 'block-driver', id: 4 },
    { name: '#block123', type: 'block-driver', id: 5 },
    { name: '#block082', type: 'block-driver', id: 2 },
    { name: 'colo-disk0', type: 'block-backend', id: 1 },
    { name: 'other-nbd', type: 'block-driver', id: 9 },
  ],
  edges: [
    { name: 'file', parent: 3, child: 6 },
    { name: 'file', parent: 4, child: 5 },
    { name: 'children.0', parent: 2, child: 4 },
    { name: 'children.1', parent: 2, child: 3 },
    { name: 'root', parent: 1, child: 2 },
  ],
};

const PRIMARY: YankTarget[] = [
  { type: 'migration' },
  { type: 'block-node', under: 'replication0' },
  { type: 'chardev', id: 'mirror0' },
  { type: 'chardev', id: 'compare1' },
];

t.test('parseYankInstances keeps known shapes only', async (t) => {
  t.same(
    parseYankInstances([
      { type: 'chardev', id: 'compat_monitor0' },
      { 'node-name': '#block376', type: 'block-node' },
      { type: 'migration' },
      { type: 'future-kind', x: 1 },
      { type: 'chardev' },
      'junk',
    ]),
    [{ type: 'chardev', id: 'compat_monitor0' }, { type: 'block-node', 'node-name': '#block376' }, { type: 'migration' }],
  );
  t.same(parseYankInstances({ not: 'a list' }), []);
});

t.test('blockNodesUnder follows edges down from the named node', async (t) => {
  t.same([...blockNodesUnder(GRAPH, 'replication0')].sort(), ['#block376', 'replication0']);
  t.same([...blockNodesUnder(GRAPH, 'nope')], []);
  t.same([...blockNodesUnder('garbage', 'replication0')], []);
});

t.test('resolveYank intersects with what exists', async (t) => {
  const available = parseYankInstances([
    { type: 'chardev', id: 'compat_monitor0' },
    { type: 'chardev', id: 'mirror0' },
    { type: 'chardev', id: 'compare0' },
    { type: 'block-node', 'node-name': '#block376' },
    { type: 'block-node', 'node-name': 'other-nbd' },
    { type: 'migration' },
  ]);
  t.ok(needsBlockGraph(PRIMARY, available));
  t.same(resolveYank(PRIMARY, available, GRAPH), [
    { type: 'chardev', id: 'mirror0' },
    { type: 'block-node', 'node-name': '#block376' },
    { type: 'migration' },
  ], 'compare1 is not listed so not named; the unrelated NBD node and local chardevs stay');
  t.same(resolveYank(PRIMARY, available), [{ type: 'chardev', id: 'mirror0' }, { type: 'migration' }], 'no graph: no block node on a guess');
  t.same(resolveYank(PRIMARY, []), []);
  t.notOk(needsBlockGraph([{ type: 'migration' }], available), 'no block-node target');
  t.notOk(needsBlockGraph(PRIMARY, [{ type: 'migration' }]), 'no block node listed');
  t.equal(describeYankTarget({ type: 'block-node', under: 'replication0' }), 'block-node under replication0');
  t.equal(describeYankTarget({ type: 'block-node', 'node-name': '#b' }), 'block-node:#b');
});
