/**
 * The launch record (qemu-launch.json) and the /proc checks that decide whether it still names our QEMU.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import {
  looksLikeLaunchedQemu,
  readLaunchRecord,
  recordedQemu,
  removeLaunchRecord,
  writeLaunchRecord,
  type LaunchRecord,
} from '../../src/qemu/launch-record.js';
import { readProc } from '../../src/util/proc.js';

const QEMU = ['/usr/bin/qemu-system-x86_64', '-incoming', 'tcp:0.0.0.0:9998'];

t.test('a QEMU command line, or ours behind an interpreter, is recognised; anything else is not', async (t) => {
  t.ok(looksLikeLaunchedQemu(QEMU, QEMU), 'the command itself');
  t.ok(looksLikeLaunchedQemu(['qemu-system-aarch64', '-S'], QEMU), 'a qemu binary (a wrapper exec\'d it)');
  t.ok(looksLikeLaunchedQemu(['/bin/sh', '/opt/vm/start-qemu.sh'], ['/opt/vm/start-qemu.sh']), 'qemu in the script name');
  t.ok(looksLikeLaunchedQemu(['/bin/bash', '/opt/vm/secondary', '-x'], ['/opt/vm/secondary', '-x']), 'our script under its interpreter');
  t.notOk(looksLikeLaunchedQemu(['/usr/bin/node', 'agent.js'], QEMU), 'another program');
  t.notOk(looksLikeLaunchedQemu(['/bin/bash', '/opt/vm/secondary', '-y'], ['/opt/vm/secondary', '-x']), 'other arguments');
  t.notOk(looksLikeLaunchedQemu([], QEMU), 'no command line (unreadable)');
});

t.test('write, read, and remove only while it names the pid', async (t) => {
  const dir = t.testdir();
  t.equal(await readLaunchRecord(dir), undefined, 'none yet');
  const record: LaunchRecord = { pid: 4242, startTime: '123', argv: QEMU, launchedAt: 1_700_000_000_000, agentPid: 99 };
  await writeLaunchRecord(dir, record);
  t.same(await readLaunchRecord(dir), record);
  await removeLaunchRecord(dir, 1111);
  t.same(await readLaunchRecord(dir), record, 'a removal for another pid leaves a newer record alone');
  await removeLaunchRecord(dir, 4242);
  t.equal(await readLaunchRecord(dir), undefined);
  for (const bad of ['{', '{"pid":1}', JSON.stringify({ ...record, pid: 1 }), JSON.stringify({ ...record, startTime: 'x' }), JSON.stringify({ ...record, argv: [] })]) {
    writeFileSync(join(dir, 'qemu-launch.json'), bad);
    t.equal(await readLaunchRecord(dir), undefined, `damaged: ${bad}`);
  }
});

t.test('readProc and recordedQemu on real processes', async (t) => {
  const self = await readProc(process.pid);
  t.ok(self, 'this process');
  t.match(self!.startTime, /^\d+$/);
  t.ok(self!.argv.length > 0);
  t.equal(await readProc(2 ** 22 + 1), undefined, 'beyond pid_max: no such process');
  const asRecord = { pid: process.pid, startTime: self!.startTime, argv: self!.argv, launchedAt: Date.now(), agentPid: process.pid };
  t.ok(await recordedQemu(asRecord), 'same pid, start time and command line');
  t.equal(await recordedQemu({ ...asRecord, startTime: String(Number(self!.startTime) + 1) }), undefined, 'another start time: a reused pid');
  t.equal(await recordedQemu({ ...asRecord, argv: QEMU }), undefined, 'not the command we launched, and not a QEMU');
});
