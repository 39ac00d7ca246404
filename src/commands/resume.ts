/**
 * `colo-agent resume --config FILE`: asks the running primary's agent to resume replication to
 * the peer's fresh secondary now (with failover.autoResume false, or to skip the retry backoff
 * after a failed attempt). Like maintenance, a file in node.stateDir rather than an HTTP call:
 * the metrics endpoint is read-only by design, and a file needs no second listening socket. The
 * agent takes the request (removing the file) the next time it may resume: at once when the
 * peer has announced a ready secondary at our epoch, else as soon as it does.
 */
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { MaintenanceStateDirError } from './maintenance.js';
import { statSync } from 'node:fs';

export const RESUME_REQUEST_FILE_NAME = 'resume-request';

export function resumeRequestPath(stateDir: string): string {
  return join(stateDir, RESUME_REQUEST_FILE_NAME);
}

export async function requestResume(stateDir: string): Promise<void> {
  try {
    if (!statSync(stateDir).isDirectory()) throw new MaintenanceStateDirError(stateDir);
  } catch (err) {
    throw err instanceof MaintenanceStateDirError ? err : new MaintenanceStateDirError(stateDir, err);
  }
  const tmp = join(stateDir, `.${RESUME_REQUEST_FILE_NAME}.${randomBytes(4).toString('hex')}.tmp`);
  try {
    await writeFile(tmp, `${JSON.stringify({ at: new Date().toISOString(), by: process.pid })}\n`, { mode: 0o644 });
    await rename(tmp, resumeRequestPath(stateDir));
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
}

/** Whether a request is waiting (cheap: one stat). */
export function resumeRequested(stateDir: string): boolean {
  return existsSync(resumeRequestPath(stateDir));
}

export async function clearResumeRequest(stateDir: string): Promise<void> {
  await rm(resumeRequestPath(stateDir), { force: true });
}
