/**
 * `colo-agent plan`: the exact QMP lines a failover would send.
 */
import t from 'tap';
import { profileForVersion, resolveQemuProfile } from '../../src/colo/profile.js';
import { isSequenceName, planText, PLAN_SEQUENCES } from '../../src/commands/plan.js';

const P72 = resolveQemuProfile('auto', { major: 7, minor: 2, micro: 22, package: '' });

t.test('primary failover plan: header, resolved yank, then the documented commands', async (t) => {
  const text = planText({}, P72, 'primary-failover');
  t.ok(text.endsWith('\n'));
  const lines = text.trimEnd().split('\n');
  t.match(lines[0], /^# colo-agent plan primary-failover: QEMU profile 7\.2\.22 \(from the QMP greeting\); 9 steps;/);
  t.match(lines[1], /^# yank: out-of-band .* migration, block-node under replication0, chardev:mirror0, chardev:compare1$/);
  t.same(lines.slice(2), [
    '{"exec-oob":"query-yank"}',
    '{"execute":"x-debug-query-block-graph"}',
    '{"exec-oob":"yank","arguments":{"instances":[{"type":"migration"},{"type":"block-node","node-name":"<NBD node under replication0>"},{"type":"chardev","id":"mirror0"},{"type":"chardev","id":"compare1"}]}}',
    '{"execute":"x-blockdev-change","arguments":{"parent":"colo-disk0","child":"children.1"}}',
    '{"execute":"human-monitor-command","arguments":{"command-line":"drive_del replication0"}}',
    '{"execute":"object-del","arguments":{"id":"comp0"}}',
    '{"execute":"object-del","arguments":{"id":"iothread1"}}',
    '{"execute":"object-del","arguments":{"id":"m0"}}',
    '{"execute":"object-del","arguments":{"id":"redire0"}}',
    '{"execute":"object-del","arguments":{"id":"redire1"}}',
    '{"execute":"x-colo-lost-heartbeat"}',
  ]);
  for (const l of lines.filter((l) => !l.startsWith('#'))) t.doesNotThrow(() => JSON.parse(l), 'each command line is JSON');
});

t.test('secondary failover plan with renamed ids and ports', async (t) => {
  const text = planText({ mirrorPort: 19003, ids: { red0: 'r0', mirror0: 'mir' } }, profileForVersion({ major: 9, minor: 2, micro: 0 }, 'config'), 'secondary-failover');
  const cmds = text.trimEnd().split('\n').filter((l) => !l.startsWith('#')).map((l) => JSON.parse(l) as Record<string, unknown>);
  t.same(cmds.map((c) => c.execute ?? `oob:${String(c['exec-oob'])}`), [
    'oob:query-yank', 'oob:yank', 'nbd-server-stop', 'x-colo-lost-heartbeat', 'object-del', 'object-del', 'chardev-remove', 'chardev-remove',
    'chardev-add', 'chardev-add', 'chardev-add', 'chardev-add', 'chardev-add', 'chardev-add',
  ]);
  t.same(cmds[1]?.arguments, { instances: [{ type: 'migration' }, { type: 'chardev', id: 'r0' }, { type: 'chardev', id: 'red1' }] });
  t.same(cmds[8]?.arguments, { id: 'mir', backend: { type: 'socket', data: { addr: { type: 'inet', data: { host: '0.0.0.0', port: '19003' } }, server: true, wait: false } } });
  t.match(text, /^# colo-agent plan secondary-failover: QEMU profile 9\.2\.0 \(from config\); 13 steps; role secondary -> primary/);
});

t.test('without yank (QEMU < 6.0) and with blockdev-del', async (t) => {
  const text = planText({}, profileForVersion({ major: 5, minor: 2, micro: 0 }, 'config', { nbdNodeRemoval: 'blockdev-del' }), 'primary-failover');
  t.notMatch(text, /yank"/);
  t.match(text, /yank no \(QEMU < 6\.0\)/);
  t.match(text, /\{"execute":"blockdev-del","arguments":\{"node-name":"replication0"\}\}/);
});

t.test('unknown sequence names are usage errors', async (t) => {
  t.same([...PLAN_SEQUENCES], ['primary-failover', 'secondary-failover']);
  t.ok(isSequenceName('secondary-failover'));
  t.notOk(isSequenceName('primary-resume'));
  t.throws(() => planText({}, P72, 'primary-resume'), { code: 'CLI_USAGE' });
});
