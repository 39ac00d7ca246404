/**
 * The QEMU launcher that integration and e2e tests rely on: it must start QEMU with reachable QMP
 * endpoints, report failures with QEMU's own words, and never leave a QEMU behind.
 */
import { spawn } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { qemuAvailable, startQemu } from './qemu.js';
import { processAlive } from './proc.js';
import { shortTempDir } from './short-temp-dir.js';

/** Connect, read the greeting line, disconnect. */
function greeting(endpoint: net.NetConnectOpts): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = net.createConnection(endpoint);
    let text = '';
    s.setEncoding('utf8');
    s.on('data', (d: string) => {
      text += d;
      if (text.includes('\n')) {
        s.destroy();
        resolve(text.trim());
      }
    });
    s.on('error', reject);
  });
}

t.test('qemuAvailable explains how to install when the binary is missing', async (t) => {
  const r = await qemuAvailable('qemu-system-nonexistent-arch');
  t.equal(r.ok, false);
  if (!r.ok) t.match(r.reason, /not found in PATH.*apt-get install qemu-system-x86 qemu-utils/);
});

const avail = await qemuAvailable();

t.test('qemuAvailable reports binary and version', { skip: avail.ok ? false : avail.reason }, async (t) => {
  if (!avail.ok) return;
  t.match(avail.binary, /qemu-system-x86_64$/);
  t.match(avail.version, /^\d+\.\d+\.\d+$/);
  t.ok(avail.major >= 7);
});

t.test('starts QEMU with several QMP endpoints that all greet, and stops it', { skip: avail.ok ? false : avail.reason }, async (t) => {
  const q = await startQemu({ t, qmpSockets: 2, qmpTcp: 1, name: 'helper-test' });
  t.equal(q.qmpPaths.length, 2);
  t.equal(q.qmpTcpPorts.length, 1);
  t.same(q.qmpAddresses, [`unix:${q.qmpPaths[0]}`, `unix:${q.qmpPaths[1]}`, `tcp:127.0.0.1:${q.qmpTcpPorts[0]}`]);
  t.ok(q.args.includes('-S') && q.args.includes('tcg'), 'paused, tcg');
  t.ok(processAlive(q.pid));
  // Both unix sockets at once: each is its own monitor.
  const greetings = await Promise.all([
    ...q.qmpPaths.map((path) => greeting({ path })),
    ...q.qmpTcpPorts.map((port) => greeting({ host: '127.0.0.1', port })),
  ]);
  t.equal(greetings.length, 3);
  for (const g of greetings) t.match(g, /^\{"QMP": \{"version": \{"qemu"/);
  const status = await q.stop();
  t.equal(status.signal ?? 'exited', status.signal ? 'SIGTERM' : 'exited', 'SIGTERM was enough');
  t.notOk(processAlive(q.pid), 'gone');
  t.notOk(existsSync(q.dir), 'its own temp dir removed');
  t.same(await q.stop(), status, 'stop is idempotent');
});

t.test('stop() also ends a SIGSTOPped QEMU', { skip: avail.ok ? false : avail.reason }, async (t) => {
  const q = await startQemu({ t });
  q.kill('SIGSTOP');
  await q.stop();
  t.notOk(processAlive(q.pid));
});

t.test('a bad command line fails with QEMU\'s stderr and leaves no process', { skip: avail.ok ? false : avail.reason }, async (t) => {
  const err = (await startQemu({ t, extraArgs: ['-no-such-option'] }).then(
    () => t.fail('should fail'),
    (e: unknown) => e,
  )) as Error;
  t.match(err.message, /exited during startup/);
  t.match(err.message, /stderr: .*no-such-option/s);
});

t.test('a QEMU started with t is stopped at teardown even if the test never stops it', { skip: avail.ok ? false : avail.reason }, async (t) => {
  let pid = -1;
  await t.test('inner', async (t) => {
    const q = await startQemu({ t });
    pid = q.pid;
    t.ok(processAlive(pid));
  });
  t.ok(pid > 0);
  t.notOk(processAlive(pid), 'killed by the inner test\'s teardown');
});

t.test('a given dir and socket path are reused and left in place', { skip: avail.ok ? false : avail.reason }, async (t) => {
  const dir = shortTempDir(t, 'qh-');
  const path = join(dir, 'agent.sock');
  const a = await startQemu({ t, dir, qmpPaths: [path] });
  a.kill('SIGKILL'); // leaves a stale socket file behind
  await a.exited;
  const b = await startQemu({ t, dir, qmpPaths: [path] });
  t.match(await greeting({ path }), /"QMP"/);
  await b.stop();
  t.ok(existsSync(dir), 'caller\'s dir kept');
});

t.test('the process-wide registry kills QEMUs when the test process exits', { skip: avail.ok ? false : avail.reason }, async (t) => {
  const dir = shortTempDir(t, 'qh-');
  const helper = fileURLToPath(new URL('./qemu.ts', import.meta.url));
  const script = join(dir, 'child.mts');
  writeFileSync(
    script,
    `import { startQemu } from ${JSON.stringify(helper)};
const q = await startQemu({});
console.log(JSON.stringify({ pid: q.pid, dir: q.dir }));
// End without stopping it, as a test file that forgot to would: the process must not hang on QEMU.
process.exitCode = 3;
`,
  );
  const child = spawn(process.execPath, ['--import', 'tsx', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  const watchdog = setTimeout(() => child.kill('SIGKILL'), 20_000);
  t.teardown(() => clearTimeout(watchdog));
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
  const { pid, dir: qemuDir } = JSON.parse(out.trim() || '{}') as { pid: number; dir: string };
  t.ok(pid > 0, `child printed the QEMU pid (${out.trim()})`);
  t.equal(code, 3, 'exited on its own (not by the watchdog)');
  // The kernel reaps QEMU right after SIGKILL; give it a moment rather than racing it.
  for (let i = 0; i < 100 && processAlive(pid); i++) await new Promise((r) => setTimeout(r, 20));
  t.notOk(processAlive(pid), 'QEMU did not outlive the test process');
  t.notOk(existsSync(qemuDir), 'and its temp dir went with it');
  if (processAlive(pid)) process.kill(pid, 'SIGKILL');
});
