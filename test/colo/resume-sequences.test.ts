/**
 * The resume sequences as data: the documented commands (COLO-FT.txt "Primary/Secondary resume
 * replication", facts §2) in three parts, ids and ports from the topology, the peer's host by
 * sequence, filters before rew0 for the secondary resume, and the profile differences.
 */
import t from 'tap';
import { profileForVersion } from '../../src/colo/profile.js';
import {
  DEFAULT_NETDEV,
  isResumeSequenceName,
  objectAddArgs,
  primaryResume,
  RESUME_SEQUENCE_NAMES,
  resumeProxyIds,
  resumeRollback,
  resumeSequenceByName,
  RESYNC_JOB_ID,
  secondaryPrepare,
  secondaryResume,
  withResumeDefaults,
  type ResumeStep,
} from '../../src/colo/resume-sequences.js';

const P72 = profileForVersion({ major: 7, minor: 2, micro: 22 });
const P50 = profileForVersion({ major: 5, minor: 2, micro: 0 });
const P81 = profileForVersion({ major: 8, minor: 1, micro: 0 });
const BLOCKDEV = profileForVersion({ major: 10, minor: 0, micro: 7 }, 'config', { nbdNodeRemoval: 'blockdev-del' });

/** Steps as {execute, arguments}; other kinds as {kind, ...what matters}. */
function wire(steps: ResumeStep[]): unknown[] {
  return steps.map((s) => {
    switch (s.kind) {
      case 'command':
        return s.args === undefined ? { execute: s.command } : { execute: s.command, arguments: s.args };
      case 'wait-job-ready':
        return { wait: 'job-ready', job: s.job };
      case 'wait-job-gone':
        return { wait: 'job-gone', job: s.job, requireSynced: s.requireSynced };
      case 'yank':
        return { yank: s.targets, jobTargets: s.jobTargets };
      default:
        return { kind: s.kind };
    }
  });
}

/** The new secondary on the documented hosts: the secondary's (primary resume) or the primary's (secondary resume). */
const AT_SECONDARY = { peerHost: '127.0.0.2' };
const AT_PRIMARY = { peerHost: '127.0.0.1' };

t.test('primary resume with the documented names: prepare, switch-over, peer = secondary host', async (t) => {
  const seq = primaryResume({}, P72, AT_SECONDARY);
  t.match(seq, { name: 'primary-resume', afterSecondaryFailover: false, roleBefore: 'primary', roleAfter: 'primary' });
  t.same(seq.peer, { nbd: { host: '127.0.0.2', port: 9999 }, migration: { host: '127.0.0.2', port: 9998 } });
  t.equal(RESYNC_JOB_ID, 'resync');
  t.same(wire(seq.prepare), [
    { execute: 'drive-mirror', arguments: { device: 'colo-disk0', 'job-id': 'resync', target: 'nbd://127.0.0.2:9999/parent0', mode: 'existing', format: 'raw', sync: 'full' } },
    { wait: 'job-ready', job: 'resync' },
    // Before stop: the NBD connect stays out of the guest's pause (the node is attached after stop).
    {
      execute: 'human-monitor-command',
      arguments: { 'command-line': 'drive_add -n buddy driver=replication,mode=primary,file.driver=nbd,file.host=127.0.0.2,file.port=9999,file.export=parent0,node-name=replication0' },
    },
    { execute: 'migrate-set-capabilities', arguments: { capabilities: [{ capability: 'x-colo', state: true }] } },
    { execute: 'migrate-set-parameters', arguments: { 'x-checkpoint-delay': withResumeDefaults({}).checkpointDelayMs } },
  ]);
  t.same(wire(seq.switchover), [
    { execute: 'stop' },
    { execute: 'block-job-cancel', arguments: { device: 'resync' } },
    { wait: 'job-gone', job: 'resync', requireSynced: true },
    { execute: 'x-blockdev-change', arguments: { parent: 'colo-disk0', node: 'replication0' } },
    { execute: 'object-add', arguments: { 'qom-type': 'filter-mirror', id: 'm0', netdev: 'hn0', queue: 'tx', outdev: 'mirror0' } },
    { execute: 'object-add', arguments: { 'qom-type': 'filter-redirector', id: 'redire0', netdev: 'hn0', queue: 'rx', indev: 'compare_out' } },
    { execute: 'object-add', arguments: { 'qom-type': 'filter-redirector', id: 'redire1', netdev: 'hn0', queue: 'rx', outdev: 'compare0' } },
    { execute: 'object-add', arguments: { 'qom-type': 'iothread', id: 'iothread1' } },
    { execute: 'object-add', arguments: { 'qom-type': 'colo-compare', id: 'comp0', primary_in: 'compare0-0', secondary_in: 'compare1', outdev: 'compare_out0', iothread: 'iothread1' } },
    { execute: 'migrate', arguments: { uri: 'tcp:127.0.0.2:9998' } },
    { kind: 'wait-colo' },
  ]);
  const drive = seq.prepare.find((s) => s.name === 'drive_add');
  t.match(drive, { hmp: true });
  t.equal(seq.switchover[0]?.name, 'stop', 'the switch-over starts with stop');
  for (const part of [seq.prepare, seq.switchover, seq.rollback]) {
    const names = part.map((s) => s.name);
    t.same([...new Set(names)], names, 'step names unique within a part');
  }
  for (const s of [...seq.prepare, ...seq.switchover, ...seq.rollback]) {
    if (s.kind !== 'command' && s.kind !== 'yank') t.ok(s.timeoutMs > 0, `${s.name} has a timeout`);
  }
});

t.test('secondary resume: peer = primary host, the three net filters inserted before rew0', async (t) => {
  const seq = secondaryResume({}, P72, AT_PRIMARY);
  t.match(seq, { name: 'secondary-resume', afterSecondaryFailover: true });
  t.same(seq.peer, { nbd: { host: '127.0.0.1', port: 9999 }, migration: { host: '127.0.0.1', port: 9998 } });
  const byName = new Map([...seq.prepare, ...seq.switchover].map((s) => [s.name, s]));
  const args = (n: string) => {
    const s = byName.get(n);
    return s?.kind === 'command' ? s.args : undefined;
  };
  t.match(seq.prepare[0], { name: 'drive-mirror', args: { target: 'nbd://127.0.0.1:9999/parent0' } });
  t.match(args('drive_add'), { 'command-line': /file\.host=127\.0\.0\.1,file\.port=9999/ });
  t.same(args('object-add m0'), { 'qom-type': 'filter-mirror', id: 'm0', insert: 'before', position: 'id=rew0', netdev: 'hn0', queue: 'tx', outdev: 'mirror0' });
  t.same(args('object-add redire0'), { 'qom-type': 'filter-redirector', id: 'redire0', insert: 'before', position: 'id=rew0', netdev: 'hn0', queue: 'rx', indev: 'compare_out' });
  t.same(args('object-add redire1'), { 'qom-type': 'filter-redirector', id: 'redire1', insert: 'before', position: 'id=rew0', netdev: 'hn0', queue: 'rx', outdev: 'compare0' });
  t.same(args('object-add iothread1'), { 'qom-type': 'iothread', id: 'iothread1' }, 'not a filter: no position');
  t.notOk('insert' in (args('object-add comp0') ?? {}), 'colo-compare is not a net filter');
  t.same(args('migrate'), { uri: 'tcp:127.0.0.1:9998' });
  t.same(seq.rollback, primaryResume({}, P72, AT_SECONDARY).rollback, 'the rollback does not depend on the sequence');
  t.same(resumeSequenceByName('secondary-resume', {}, P72, AT_PRIMARY), seq);
});

t.test('ids, ports, hosts, netdev, peer override, resync speed and timeouts from the caller', async (t) => {
  const colo = {
    primaryHost: '10.0.0.1',
    secondaryHost: 'fd00::2',
    disk: 'vda',
    replicationNode: 'rep',
    nbdExport: 'exp',
    nbdPort: 10809,
    migrationPort: 4444,
    checkpointDelayMs: 2000,
    ids: { m0: 'mirror-filter', rew0: 'rw', comp0: 'cmp', iothread1: 'io' },
  };
  const seq = secondaryResume(colo, P72, { peerHost: colo.primaryHost, netdev: 'net0', resyncSpeed: 1 << 20, timeouts: { resyncMs: 1234, coloMs: 99 } });
  const cmds = wire([...seq.prepare, ...seq.switchover]) as Array<{ execute?: string; arguments?: Record<string, unknown> }>;
  t.match(cmds[0], { execute: 'drive-mirror', arguments: { device: 'vda', target: 'nbd://10.0.0.1:10809/exp', speed: 1048576 } });
  t.match(cmds.find((c) => c.arguments?.id === 'mirror-filter'), { arguments: { netdev: 'net0', position: 'id=rw' } });
  t.match(cmds.find((c) => c.arguments?.id === 'cmp'), { arguments: { iothread: 'io' } });
  t.match(cmds.find((c) => c.execute === 'migrate-set-parameters'), { arguments: { 'x-checkpoint-delay': 2000 } });
  t.match(seq.prepare[1], { kind: 'wait-job-ready', timeoutMs: 1234 });
  t.match(seq.switchover.at(-1), { kind: 'wait-colo', timeoutMs: 99 });
  const p = primaryResume(colo, P72, { peerHost: colo.secondaryHost });
  t.same(p.peer.nbd, { host: 'fd00::2', port: 10809 });
  t.match(p.prepare[0], { args: { target: 'nbd://[fd00::2]:10809/exp' } }, 'IPv6 in brackets');
  t.match(p.switchover.find((s) => s.name === 'migrate'), { args: { uri: 'tcp:[fd00::2]:4444' } });
  t.notOk(p.prepare[0]?.kind === 'command' && 'speed' in (p.prepare[0].args ?? {}), 'no speed unless asked');
  const routed = primaryResume(colo, P72, { peerHost: '192.0.2.7', migration: { host: '192.0.2.8', port: 1 } });
  t.match(routed.peer, { nbd: { host: '192.0.2.7', port: 10809 }, migration: { host: '192.0.2.8', port: 1 } });
  t.equal(DEFAULT_NETDEV, 'hn0');
  t.match(primaryResume({ netdev: 'cfg-net' }, P72, AT_SECONDARY).switchover.find((s) => s.name === 'object-add m0'), { args: { netdev: 'cfg-net' } }, 'colo.netdev from the config');
  t.same(resumeProxyIds(colo), ['cmp', 'io', 'mirror-filter', 'redire0', 'redire1']);
});

t.test('rollback: idempotent undo steps, cont last, never rew0', async (t) => {
  const rb = resumeRollback({}, P72);
  t.same(rb.map((s) => s.name), [
    'yank', 'cancel-migration', 'block-job-cancel', 'wait-job-gone resync', 'x-blockdev-change', 'drive_del',
    'object-del comp0', 'object-del iothread1', 'object-del m0', 'object-del redire0', 'object-del redire1',
    'leave-colo', 'cont-if-paused',
  ]);
  t.match(rb[0], { kind: 'yank', optional: true, targets: [{ type: 'migration' }, { type: 'block-node', under: 'replication0' }], jobTargets: ['resync'] });
  t.match(rb[2], { args: { device: 'resync', force: true }, target: { kind: 'block-job', id: 'resync' }, onMissing: 'done' });
  t.match(rb[3], { kind: 'wait-job-gone', requireSynced: false });
  t.match(rb[4], { args: { parent: 'colo-disk0', child: 'children.1' }, target: { kind: 'quorum-child' }, onMissing: 'done' });
  t.match(rb[5], { args: { 'command-line': 'drive_del replication0' }, hmp: true, target: { kind: 'hmp-drive', id: 'replication0' }, onMissing: 'done' });
  for (const s of rb) if (s.kind === 'command') t.equal(s.onMissing, 'done', `${s.name}: a missing target counts as done`);
  t.notOk(JSON.stringify(rb).includes('rew0'), 'rew0 is never touched');
  t.equal(rb.at(-1)?.kind, 'cont-if-paused');
});

t.test('profiles: object-add props before 6.0, no yank before 6.0, blockdev-add/-del when asked', async (t) => {
  const old = primaryResume({}, P50, AT_SECONDARY);
  t.same(old.switchover.find((s) => s.name === 'object-add m0'), {
    kind: 'command', name: 'object-add m0', command: 'object-add', args: { 'qom-type': 'filter-mirror', id: 'm0', props: { netdev: 'hn0', queue: 'tx', outdev: 'mirror0' } },
  }, 'the 2019 document\'s shape');
  t.same(objectAddArgs(P50, 'iothread', 'iothread1', {}), { 'qom-type': 'iothread', id: 'iothread1' });
  t.notOk(old.rollback.some((s) => s.kind === 'yank'), 'no yank before 6.0');
  const oldSecondary = secondaryResume({}, P50, AT_PRIMARY);
  t.match(oldSecondary.switchover.find((s) => s.name === 'object-add m0'), { args: { props: { insert: 'before', position: 'id=rew0' } } });

  const bd = primaryResume({}, BLOCKDEV, AT_SECONDARY);
  t.same(bd.prepare.find((s) => s.name === 'blockdev-add'), {
    kind: 'command', name: 'blockdev-add', command: 'blockdev-add',
    args: { driver: 'nbd', 'node-name': 'replication0', server: { type: 'inet', host: '127.0.0.2', port: '9999' }, export: 'parent0', 'detect-zeroes': 'on' },
  });
  t.notOk([...bd.prepare, ...bd.switchover].some((s) => s.name === 'drive_add'));
  t.match(bd.rollback.find((s) => s.name === 'blockdev-del'), { args: { 'node-name': 'replication0' }, target: { kind: 'block-node', id: 'replication0' }, onMissing: 'done' });
});

t.test('secondaryPrepare: x-colo from 8.1, NBD server on the own host, writable export; idempotent', async (t) => {
  const p72 = secondaryPrepare({}, P72, { ownHost: '127.0.0.2' });
  t.equal(p72.name, 'secondary-prepare');
  t.same(wire(p72.steps), [
    { execute: 'nbd-server-start', arguments: { addr: { type: 'inet', data: { host: '127.0.0.2', port: '9999' } } } },
    { execute: 'nbd-server-add', arguments: { device: 'parent0', writable: true } },
  ]);
  t.match(p72.steps[0], { target: { kind: 'nbd-server' }, onExists: 'done' });
  t.match(p72.steps[1], { target: { kind: 'nbd-export', id: 'parent0' }, onExists: 'done' });
  const p81 = secondaryPrepare({ nbdPort: 1234, nbdExport: 'e' }, P81, { ownHost: '0.0.0.0' });
  t.same(wire(p81.steps), [
    { execute: 'migrate-set-capabilities', arguments: { capabilities: [{ capability: 'x-colo', state: true }] } },
    { execute: 'nbd-server-start', arguments: { addr: { type: 'inet', data: { host: '0.0.0.0', port: '1234' } } } },
    { execute: 'nbd-server-add', arguments: { device: 'e', writable: true } },
  ]);
});

t.test('names', async (t) => {
  t.same([...RESUME_SEQUENCE_NAMES], ['primary-resume', 'secondary-resume']);
  t.ok(isResumeSequenceName('secondary-resume'));
  t.notOk(isResumeSequenceName('primary-failover'));
});

