/**
 * "Already done" recognition for the resume sequences' steps, on top of already-done.ts (which the
 * failover sequences use and which stays as it is). Same rule: exact error class AND QEMU's exact
 * text for exactly this target, anchored at both ends; anything else is a real failure.
 * Texts as QEMU 7.2.22 prints them (checked against real QEMU in test/colo/resume.real.test.ts):
 *
 * | step | reply meaning "already done" |
 * |---|---|
 * | block-job-cancel JOB | DeviceNotActive `Block job 'JOB' not found` (missing) |
 * | nbd-server-start | GenericError `NBD server already running` (exists) |
 * | nbd-server-add EXPORT | GenericError `Block export id 'EXPORT' is already in use` (exists) |
 *
 * For the record (not used as "done", because a forward resume step is never repeated: an
 * interrupted resume is rolled back, never continued): object-add of a present id says GenericError
 * `attempt to add duplicate property 'ID' to object (type 'container')`, HMP drive_add of a present
 * node prints `Duplicate nodes with node-name='ID'`, and x-blockdev-change of an attached node says
 * `The node ID already has a parent`.
 */
import { isExistsError, isMissingError, type StepTarget } from './already-done.js';

/** What a resume step removes or creates: the failover targets plus block jobs and NBD exports. */
export type ResumeTarget = StepTarget | { kind: 'block-job'; id: string } | { kind: 'nbd-export'; id: string };

const q = (s: string) => `'${s}'`;

/** True when QEMU's error says the target is already gone. `errorClass` is undefined for HMP output. */
export function isResumeMissingError(target: ResumeTarget, errorClass: string | undefined, desc: string): boolean {
  switch (target.kind) {
    case 'block-job':
      return errorClass === 'DeviceNotActive' && desc.trim() === `Block job ${q(target.id)} not found`;
    case 'nbd-export':
      return false;
    default:
      return isMissingError(target, errorClass, desc);
  }
}

/** True when QEMU's error says the target already exists. */
export function isResumeExistsError(target: ResumeTarget, errorClass: string | undefined, desc: string): boolean {
  switch (target.kind) {
    case 'nbd-server':
      return errorClass === 'GenericError' && desc.trim() === 'NBD server already running';
    case 'nbd-export':
      return errorClass === 'GenericError' && desc.trim() === `Block export id ${q(target.id)} is already in use`;
    case 'block-job':
      return false;
    default:
      return isExistsError(target, errorClass, desc);
  }
}
