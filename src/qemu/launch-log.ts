/**
 * The log file of a QEMU the agent launched (stdout and stderr), in node.stateDir, size-capped.
 *
 * QEMU writes to the file directly, not through a pipe to the agent: a pipe would break when the
 * agent stops, and QEMU must outlive the agent. So the cap cannot be enforced on each write.
 * Instead the file is opened with O_APPEND, and
 *  - before each launch a file over the cap is renamed to qemu.log.1 (one old generation kept);
 *  - while QEMU runs, capSize() copies a file over the cap to qemu.log.1 and truncates it to zero
 *    ("copytruncate", as logrotate does). With O_APPEND, QEMU's next write lands at the new end, not
 *    past a hole. Lines written between the copy and the truncation are lost: acceptable for a log
 *    that mostly holds QEMU's warnings.
 */
import { closeSync, openSync, renameSync, statSync, writeSync } from 'node:fs';
import { copyFile, stat, truncate } from 'node:fs/promises';
import { join } from 'node:path';

export const LAUNCH_LOG_FILE = 'qemu.log';

export function launchLogPath(stateDir: string): string {
  return join(stateDir, LAUNCH_LOG_FILE);
}

export class LaunchLog {
  readonly path: string;
  readonly rotatedPath: string;

  constructor(stateDir: string, private readonly maxBytes: number) {
    this.path = launchLogPath(stateDir);
    this.rotatedPath = `${this.path}.1`;
  }

  /**
   * Opens the file for QEMU's stdout and stderr (rotating it first when over the cap) and writes
   * `header` as a line of its own. The caller passes the fd to spawn() and closes it right after.
   */
  openForChild(header: string): number {
    if (this.size() > this.maxBytes) renameSync(this.path, this.rotatedPath);
    const fd = openSync(this.path, 'a', 0o640);
    try {
      writeSync(fd, `${header}\n`);
    } catch {
      // a full disk must not stop the launch; QEMU's own writes will fail the same way
    }
    return fd;
  }

  /** Appends a line of the agent's own (a QEMU exit, say); best effort. */
  note(line: string): void {
    try {
      const fd = openSync(this.path, 'a', 0o640);
      try {
        writeSync(fd, `${line}\n`);
      } finally {
        closeSync(fd);
      }
    } catch {
      // best effort
    }
  }

  /** Copy-truncate when over the cap; true when it did. Never throws. */
  async capSize(): Promise<boolean> {
    try {
      if ((await stat(this.path)).size <= this.maxBytes) return false;
      await copyFile(this.path, this.rotatedPath);
      await truncate(this.path, 0);
      return true;
    } catch {
      return false;
    }
  }

  private size(): number {
    try {
      return statSync(this.path).size;
    } catch {
      return 0;
    }
  }
}
