/**
 * qemu.log: opened for appending, rotated before a launch when over the cap, copy-truncated while QEMU runs.
 */
import { closeSync, existsSync, readFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { LaunchLog } from '../../src/qemu/launch-log.js';

t.test('header, notes, rotation before a launch and copy-truncate while running', async (t) => {
  const dir = t.testdir();
  const log = new LaunchLog(dir, 100);
  t.equal(log.path, join(dir, 'qemu.log'));

  const fd = log.openForChild('--- launch 1');
  writeSync(fd, 'x'.repeat(150));
  log.note('--- exited');
  t.equal(readFileSync(log.path, 'utf8'), `--- launch 1\n${'x'.repeat(150)}--- exited\n`);
  t.notOk(existsSync(log.rotatedPath));

  t.equal(await log.capSize(), true, 'over the cap: rotated');
  t.match(readFileSync(log.rotatedPath, 'utf8'), /^--- launch 1\n/);
  t.equal(readFileSync(log.path, 'utf8'), '');
  writeSync(fd, 'after');
  t.equal(readFileSync(log.path, 'utf8'), 'after', 'O_APPEND: the writer continues at the new end, no hole');
  closeSync(fd);
  t.equal(await log.capSize(), false, 'under the cap: left alone');

  log.note('y'.repeat(200));
  closeSync(log.openForChild('--- launch 2'));
  t.match(readFileSync(log.rotatedPath, 'utf8'), /^afteryyy/, 'over the cap at a launch: renamed to qemu.log.1');
  t.equal(readFileSync(log.path, 'utf8'), '--- launch 2\n');
});
