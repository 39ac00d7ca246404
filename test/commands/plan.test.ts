/**
 * `colo-agent plan`: the exact QMP lines a failover would send.
 */
import t from 'tap';
import { profileForVersion, resolveQemuProfile } from '../../src/colo/profile.js';
import { isSequenceName, planText, PLAN_SEQUENCES } from '../../src/commands/plan.js';

const P72 = resolveQemuProfile('auto', { major: 7, minor: 2, micro: 22, package: '' });

/** The view from the documented primary host. */
const DOC_HOSTS = { hosts: { self: '127.0.0.1', peer: '127.0.0.2' } };

t.test('primary failover plan: header, resolved yank, then the documented commands', async (t) => {
  const text = planText({}, P72, 'primary-failover', DOC_HOSTS);
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
  const text = planText({ mirrorPort: 19003, ids: { red0: 'r0', mirror0: 'mir' } }, profileForVersion({ major: 9, minor: 2, micro: 0 }, 'config'), 'secondary-failover', DOC_HOSTS);
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
  const text = planText({}, profileForVersion({ major: 5, minor: 2, micro: 0 }, 'config', { nbdNodeRemoval: 'blockdev-del' }), 'primary-failover', DOC_HOSTS);
  t.notMatch(text, /yank"/);
  t.match(text, /yank no \(QEMU < 6\.0\)/);
  t.match(text, /\{"execute":"blockdev-del","arguments":\{"node-name":"replication0"\}\}/);
});

t.test('unknown sequence names are usage errors', async (t) => {
  t.same([...PLAN_SEQUENCES], ['primary-failover', 'secondary-failover', 'primary-resume', 'secondary-resume', 'secondary-prepare']);
  t.ok(isSequenceName('secondary-failover'));
  t.notOk(isSequenceName('primary-resume'), 'isSequenceName stays the failover names');
  t.throws(() => planText({}, P72, 'tertiary-resume', DOC_HOSTS), { code: 'CLI_USAGE', message: /expected one of primary-failover, .*secondary-prepare/ });
});

t.test('primary resume plan: the three parts, waits and conditional steps as comments', async (t) => {
  const text = planText({}, P72, 'primary-resume', DOC_HOSTS);
  const lines = text.trimEnd().split('\n');
  t.match(lines[0], /^# colo-agent plan primary-resume: QEMU profile 7\.2\.22 .*new secondary: NBD 127\.0\.0\.2:9999, migration 127\.0\.0\.2:9998; filters appended; object-add flat$/);
  const part = (name: string) => lines.findIndex((l) => l.startsWith(`# ${name} `));
  t.ok(part('prepare') < part('switchover') && part('switchover') < part('rollback'), 'prepare, switchover, rollback in order');
  const cmds = lines.filter((l) => !l.startsWith('#'));
  for (const l of cmds) t.doesNotThrow(() => JSON.parse(l), 'each command line is JSON');
  t.same(cmds.slice(0, 6), [
    '{"execute":"drive-mirror","arguments":{"device":"colo-disk0","job-id":"resync","target":"nbd://127.0.0.2:9999/parent0","mode":"existing","format":"raw","sync":"full"}}',
    '{"execute":"human-monitor-command","arguments":{"command-line":"drive_add -n buddy driver=replication,mode=primary,file.driver=nbd,file.host=127.0.0.2,file.port=9999,file.export=parent0,node-name=replication0"}}',
    '{"execute":"migrate-set-capabilities","arguments":{"capabilities":[{"capability":"x-colo","state":true}]}}',
    '{"execute":"migrate-set-parameters","arguments":{"x-checkpoint-delay":20000}}',
    '{"execute":"stop"}',
    '{"execute":"block-job-cancel","arguments":{"device":"resync"}}',
  ]);
  t.ok(lines.includes('{"execute":"migrate","arguments":{"uri":"tcp:127.0.0.2:9998"}}'));
  t.match(text, /# wait until BLOCK_JOB_READY of resync/);
  t.match(text, /# wait until query-colo-status says mode primary/);
  t.match(text, /# if query-status says the guest is not running:\n\{"execute":"cont"\}/);
  t.match(text, /\{"execute":"block-job-cancel","arguments":\{"device":"resync","force":true\}\}/);
  t.equal(lines.at(-2), '{"execute":"cont"}');
});

t.test('secondary resume plan: peer on the primary host, filters before rew0; secondary-prepare', async (t) => {
  const text = planText({ ids: { rew0: 'rw' } }, P72, 'secondary-resume', { hosts: { self: '127.0.0.2', peer: '127.0.0.1' }, netdev: 'net0' });
  t.match(text, /new secondary: NBD 127\.0\.0\.1:9999, migration 127\.0\.0\.1:9998; filters inserted before rew0/);
  t.match(text, /\{"execute":"object-add","arguments":\{"qom-type":"filter-mirror","id":"m0","insert":"before","position":"id=rw","netdev":"net0","queue":"tx","outdev":"mirror0"\}\}/);
  const prep = planText({}, profileForVersion({ major: 8, minor: 1, micro: 0 }, 'config'), 'secondary-prepare', { hosts: { self: '0.0.0.0', peer: '127.0.0.1' } });
  t.same(prep.trimEnd().split('\n').slice(1), [
    '{"execute":"migrate-set-capabilities","arguments":{"capabilities":[{"capability":"x-colo","state":true}]}}',
    '{"execute":"nbd-server-start","arguments":{"addr":{"type":"inet","data":{"host":"0.0.0.0","port":"9999"}}}}',
    '{"execute":"nbd-server-add","arguments":{"device":"parent0","writable":true}}',
  ]);
  t.match(prep, /^# colo-agent plan secondary-prepare: .*NBD server on 0\.0\.0\.0; x-colo yes/);
  t.match(planText({}, P72, 'secondary-prepare', { hosts: { self: '127.0.0.2', peer: '127.0.0.1' } }), /NBD server on 127\.0\.0\.2; x-colo no/);
});
