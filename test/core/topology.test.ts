/**
 * Where things run, over the whole life of a pair: host A was installed as primary (10.0.0.1),
 * host B as secondary (10.0.0.2). Each row is one node's facts in one phase of that life (and
 * after an agent restart in it, when the QEMU has not answered yet and only the journal and the
 * epoch speak), with what the topology must say: the role, the peer's QEMU probe target, the
 * fence target, this node's NBD export and a resume's target. The rows are the phases the
 * separate-hosts campaign brings a pair into.
 */
import t from 'tap';
import {
  currentTopology,
  ownNbdEndpoint,
  pairAddresses,
  peerQemuEndpoint,
  resumeTargets,
  type PairRole,
  type TopologyFacts,
} from '../../src/core/topology.js';

const COLO = { primaryHost: '10.0.0.1', secondaryHost: '10.0.0.2', mirrorPort: 9003, nbdPort: 9999, migrationPort: 9998 };
const HOST = { A: '10.0.0.1', B: '10.0.0.2' } as const;
type Node = keyof typeof HOST;
const INSTALLED: Record<Node, PairRole> = { A: 'primary', B: 'secondary' };

interface Row {
  phase: string;
  node: Node;
  coloMode: string;
  stale?: boolean;
  journal?: PairRole;
  /** The role this node plays now. */
  role: PairRole;
  source: string;
}

const ROWS: Row[] = [
  // first start
  { phase: 'first start, QEMU not answering yet', node: 'A', coloMode: 'unknown', role: 'primary', source: 'installed' },
  { phase: 'first start, QEMU not answering yet', node: 'B', coloMode: 'unknown', role: 'secondary', source: 'installed' },
  { phase: 'steady COLO', node: 'A', coloMode: 'primary', role: 'primary', source: 'colo-mode' },
  { phase: 'steady COLO', node: 'B', coloMode: 'secondary', role: 'secondary', source: 'colo-mode' },
  // after a primary failover (B lost; A continued)
  { phase: 'after primary failover', node: 'A', coloMode: 'none', journal: 'primary', role: 'primary', source: 'journal' },
  { phase: 'after primary failover, agent restart', node: 'A', coloMode: 'unknown', journal: 'primary', role: 'primary', source: 'journal' },
  { phase: 'after primary failover, B back as fresh secondary', node: 'B', coloMode: 'none', journal: 'secondary', role: 'secondary', source: 'journal' },
  { phase: 'after primary failover, B back, no journal', node: 'B', coloMode: 'none', role: 'secondary', source: 'installed' },
  // after a secondary failover (A lost; B took over)
  { phase: 'after secondary failover', node: 'B', coloMode: 'none', journal: 'primary', role: 'primary', source: 'journal' },
  { phase: 'after secondary failover, agent restart', node: 'B', coloMode: 'unknown', journal: 'primary', role: 'primary', source: 'journal' },
  { phase: 'after secondary failover, A back and stale', node: 'A', coloMode: 'none', stale: true, role: 'secondary', source: 'stale-epoch' },
  { phase: 'after secondary failover, A stale, its old QEMU still says primary', node: 'A', coloMode: 'primary', stale: true, role: 'secondary', source: 'stale-epoch' },
  { phase: 'after secondary failover, A back, journal of its last failover', node: 'A', coloMode: 'unknown', stale: true, journal: 'primary', role: 'secondary', source: 'stale-epoch' },
  // after a resume with the roles kept (A primary again)
  { phase: 'resumed, roles kept', node: 'A', coloMode: 'primary', journal: 'primary', role: 'primary', source: 'colo-mode' },
  { phase: 'resumed, roles kept', node: 'B', coloMode: 'secondary', journal: 'secondary', role: 'secondary', source: 'colo-mode' },
  { phase: 'resumed, roles kept, agent restart', node: 'B', coloMode: 'unknown', journal: 'secondary', role: 'secondary', source: 'journal' },
  // after a resume with the roles swapped (B primary, A secondary): the case the old rules got wrong
  { phase: 'resumed, roles swapped', node: 'B', coloMode: 'primary', journal: 'primary', role: 'primary', source: 'colo-mode' },
  { phase: 'resumed, roles swapped', node: 'A', coloMode: 'secondary', journal: 'secondary', role: 'secondary', source: 'colo-mode' },
  { phase: 'resumed, roles swapped, agent restart', node: 'B', coloMode: 'unknown', journal: 'primary', role: 'primary', source: 'journal' },
  { phase: 'resumed, roles swapped, agent restart', node: 'A', coloMode: 'unknown', journal: 'secondary', role: 'secondary', source: 'journal' },
  // a second failover from the swapped pair
  { phase: 'swapped, then B lost: A ran the secondary failover', node: 'A', coloMode: 'none', journal: 'primary', role: 'primary', source: 'journal' },
  { phase: 'swapped, then A lost: B ran the primary failover', node: 'B', coloMode: 'none', journal: 'primary', role: 'primary', source: 'journal' },
  { phase: 'swapped, then B lost, agent restart', node: 'A', coloMode: 'unknown', journal: 'primary', role: 'primary', source: 'journal' },
  { phase: 'swapped, then B lost, B back stale', node: 'B', coloMode: 'none', stale: true, journal: 'primary', role: 'secondary', source: 'stale-epoch' },
];

function facts(r: Row): TopologyFacts {
  return { installedAs: INSTALLED[r.node], coloMode: r.coloMode, stale: r.stale ?? false, recordedRole: r.journal };
}

for (const r of ROWS) {
  t.test(`${r.phase}: node ${r.node}`, async (t) => {
    const topo = currentTopology(facts(r), COLO);
    const self = HOST[r.node];
    const peer = HOST[r.node === 'A' ? 'B' : 'A'];
    t.equal(topo.self.role, r.role, 'our role');
    t.equal(topo.source, r.source, 'the fact that said so');
    t.equal(topo.self.host, self, 'our host never moves');
    t.equal(topo.peer.host, peer, "the peer's host never moves");
    t.equal(topo.peer.role, r.role === 'primary' ? 'secondary' : 'primary', 'the peer plays the other role');
    t.equal(topo.primaryHost, r.role === 'primary' ? self : peer);
    t.equal(topo.secondaryHost, r.role === 'primary' ? peer : self);
    // The probe always targets the PEER's host; the port is the one its QEMU listens on in its role.
    t.same(peerQemuEndpoint(topo, COLO), r.role === 'primary' ? { host: peer, port: 9999, what: 'nbd' } : { host: peer, port: 9003, what: 'mirror0' });
    t.same(ownNbdEndpoint(topo, COLO), { host: self, port: 9999 }, 'a fresh secondary here exports on our host');
    t.same(resumeTargets(topo, COLO), { peerHost: peer, nbd: { host: peer, port: 9999 }, migration: { host: peer, port: 9998 } }, 'a resume dials the peer');
  });
}

t.test('the two nodes of a phase always agree: one primary host, one secondary host', async (t) => {
  const byPhase = new Map<string, Row[]>();
  for (const r of ROWS) byPhase.set(r.phase, [...(byPhase.get(r.phase) ?? []), r]);
  let pairs = 0;
  for (const [phase, rows] of byPhase) {
    const a = rows.find((r) => r.node === 'A');
    const b = rows.find((r) => r.node === 'B');
    if (!a || !b) continue;
    pairs++;
    const ta = currentTopology(facts(a), COLO);
    const tb = currentTopology(facts(b), COLO);
    t.equal(ta.primaryHost, tb.primaryHost, `${phase}: same primary host`);
    t.equal(ta.secondaryHost, tb.secondaryHost, `${phase}: same secondary host`);
    t.not(ta.primaryHost, ta.secondaryHost, `${phase}: two hosts`);
  }
  t.ok(pairs >= 4, 'several phases list both nodes');
});

t.test('pairAddresses: a node lives on its installed side of the pair, whatever runs there now', async (t) => {
  t.same(pairAddresses('primary', COLO), { self: HOST.A, peer: HOST.B });
  t.same(pairAddresses('secondary', COLO), { self: HOST.B, peer: HOST.A });
});
