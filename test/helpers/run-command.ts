/**
 * Finding an installed program (QEMU, promtool, ...) and running one to completion, for tests
 * that use a real external binary and skip with an install hint when it is missing.
 */
import { spawn } from 'node:child_process';

/** `which` (src/util/find-executable.ts): re-exported for the tests that look for a binary. */
export { findExecutable } from '../../src/util/find-executable.js';

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
