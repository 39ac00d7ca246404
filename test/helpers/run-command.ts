/**
 * Finding an installed program (QEMU, promtool, ...) and running one to completion, for tests
 * that use a real external binary and skip with an install hint when it is missing.
 */
import { spawn } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { delimiter, isAbsolute, join } from 'node:path';

/** `which`: `name` itself when it is a path, else the first executable `name` on PATH; undefined when none. */
export function findExecutable(name: string): string | undefined {
  const candidates = isAbsolute(name) || name.includes('/') ? [name] : (process.env.PATH ?? '').split(delimiter).filter(Boolean).map((d) => join(d, name));
  for (const c of candidates) {
    try {
      accessSync(c, constants.X_OK);
      return c;
    } catch {
      // next
    }
  }
  return undefined;
}

export interface CommandResult {
  code: number | null;
  /** stdout and stderr interleaved as they arrived. */
  output: string;
}

/** Runs a command to completion (SIGKILLed after timeoutMs); rejects only when it cannot be started. */
export function runCommand(cmd: string, args: string[], timeoutMs = 60_000): Promise<CommandResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr.on('data', (d: Buffer) => (output += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, output });
    });
  });
}
