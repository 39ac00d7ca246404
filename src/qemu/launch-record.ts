/**
 * Which QEMU the agent launched, remembered in node.stateDir so that a restarted agent adopts it
 * instead of launching a second one, and the /proc reads that tell whether it still lives.
 *
 * A pid alone is not an identity: after the QEMU exits, the kernel may hand its pid to anything.
 * The record therefore also keeps the process's start time (field 22 of /proc/PID/stat, clock
 * ticks since boot, fixed for the life of a process and kept across exec): pid and start time
 * together name one process. On top of that the command line must still look like the QEMU we
 * launched (as src/arbiter/self-fence.ts checks), so a record from another boot can never make
 * the agent watch, or kill, an unrelated process. The /proc reads are src/util/proc.ts.
 */
import { readFile, rename, rm, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { readProc, type ProcInfo } from '../util/proc.js';

export const LAUNCH_RECORD_FILE = 'qemu-launch.json';

export interface LaunchRecord {
  pid: number;
  /** Field 22 of /proc/PID/stat when it was launched. */
  startTime: string;
  /** The command it was launched with. */
  argv: string[];
  /** Wall-clock time of the launch, ms since the epoch (for how long an adopted QEMU ran). */
  launchedAt: number;
  /** The agent process that launched it. */
  agentPid: number;
}

export function launchRecordPath(stateDir: string): string {
  return join(stateDir, LAUNCH_RECORD_FILE);
}

function isRecord(v: unknown): v is LaunchRecord {
  if (typeof v !== 'object' || v === null) return false;
  const r = v as Record<string, unknown>;
  return (
    Number.isSafeInteger(r.pid) && (r.pid as number) > 1 &&
    typeof r.startTime === 'string' && /^\d+$/.test(r.startTime) &&
    Array.isArray(r.argv) && r.argv.length > 0 && r.argv.every((a) => typeof a === 'string') &&
    typeof r.launchedAt === 'number' && Number.isFinite(r.launchedAt) &&
    Number.isSafeInteger(r.agentPid)
  );
}

/** The record, or undefined when there is none or it is unreadable (a damaged record names no process). */
export async function readLaunchRecord(stateDir: string): Promise<LaunchRecord | undefined> {
  let text: string;
  try {
    text = await readFile(launchRecordPath(stateDir), 'utf8');
  } catch {
    return undefined;
  }
  try {
    const parsed: unknown = JSON.parse(text);
    return isRecord(parsed) ? parsed : undefined;
  } catch {
    return undefined;
  }
}

/** Written to a temporary file and renamed, so a crash never leaves half a record. */
export async function writeLaunchRecord(stateDir: string, record: LaunchRecord): Promise<void> {
  const path = launchRecordPath(stateDir);
  const tmp = `${path}.${process.pid}.tmp`;
  await writeFile(tmp, `${JSON.stringify(record)}\n`, { mode: 0o644 });
  await rename(tmp, path);
}

/** Removes the record, but only while it still names `pid` (a newer launch's record stays). */
export async function removeLaunchRecord(stateDir: string, pid: number): Promise<void> {
  const current = await readLaunchRecord(stateDir);
  if (current && current.pid !== pid) return;
  await rm(launchRecordPath(stateDir), { force: true });
}

/**
 * Does this command line belong to the QEMU we launched? Either it names a qemu binary (argv[0],
 * or argv[1] when an interpreter runs a script), or it is our command, possibly behind an
 * interpreter (a wrapper script: "/bin/sh /opt/vm/start-secondary ...").
 */
export function looksLikeLaunchedQemu(cmdline: readonly string[], launched: readonly string[]): boolean {
  const names = cmdline.slice(0, 2).map((a) => basename(a));
  if (names.some((n) => /qemu/i.test(n))) return true;
  const program = basename(launched[0] ?? '');
  if (program === '' || !names.includes(program)) return false;
  const args = launched.slice(1);
  const tail = cmdline.slice(cmdline.length - args.length);
  return cmdline.length > args.length && args.every((a, i) => tail[i] === a);
}

/** The live process the record names, or undefined when it is gone or the pid now belongs to another process. */
export async function recordedQemu(record: LaunchRecord): Promise<ProcInfo | undefined> {
  const info = await readProc(record.pid);
  if (!info || info.startTime !== record.startTime) return undefined;
  return looksLikeLaunchedQemu(info.argv, record.argv) ? info : undefined;
}
