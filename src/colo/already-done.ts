/**
 * Recognising "a previous run already did this" in QEMU's error replies, so that a failover resumed
 * after an agent crash (or run twice) can step over its own earlier work instead of stopping.
 *
 * The matching is exact on purpose: the error class must be GenericError or DeviceNotFound AND the
 * description must be QEMU's message for exactly this target (its id inside), anchored at both ends.
 * Anything else (the parent drive missing, a chardev still busy, a different id) is a real failure.
 * Texts as QEMU 7.2.22 prints them, asserted against real QEMU in test/colo/runner.real.test.ts:
 *
 * | step | "already done" reply |
 * |---|---|
 * | object-del ID | GenericError `object 'ID' not found` |
 * | chardev-remove ID | GenericError `Chardev 'ID' not found` |
 * | chardev-add ID | GenericError `Chardev with id 'ID' already exists` (onExists) |
 * | blockdev-del ID | GenericError `Failed to find node with node-name='ID'` |
 * | HMP drive_del ID | (return value, not an error) `Device 'ID' not found` + CRLF (11.1: `Error: ` before it) |
 * | x-blockdev-change PARENT child CHILD | GenericError `Node 'PARENT' does not have child 'CHILD'` |
 * | nbd-server-stop | GenericError `NBD server not running` |
 *
 * x-colo-lost-heartbeat has no such entry: "VM is not in COLO mode" does not prove that we sent it
 * (COLO may never have started), and treating it as done could promote a secondary with no valid VM.
 */
import { hmpMessage } from './hmp-reply.js';

/** What a step removes (or, for chardev-add, creates). */
export type StepTarget =
  | { kind: 'object'; id: string }
  | { kind: 'chardev'; id: string }
  | { kind: 'block-node'; id: string }
  | { kind: 'hmp-drive'; id: string }
  | { kind: 'quorum-child'; parent: string; child: string }
  | { kind: 'nbd-server' };

const CLASSES: readonly string[] = ['GenericError', 'DeviceNotFound'];

function q(s: string): string {
  return `'${s}'`;
}

/** QEMU's exact "it is not there" text for this target. */
export function missingText(target: StepTarget): string {
  switch (target.kind) {
    case 'object':
      return `object ${q(target.id)} not found`;
    case 'chardev':
      return `Chardev ${q(target.id)} not found`;
    case 'block-node':
      return `Failed to find node with node-name=${q(target.id)}`;
    case 'hmp-drive':
      return `Device ${q(target.id)} not found`;
    case 'quorum-child':
      return `Node ${q(target.parent)} does not have child ${q(target.child)}`;
    case 'nbd-server':
      return 'NBD server not running';
  }
}

/** QEMU's exact "it is already there" text, for the targets a step can create. */
export function existsText(target: StepTarget): string | undefined {
  return target.kind === 'chardev' ? `Chardev with id ${q(target.id)} already exists` : undefined;
}

/** True when QEMU's error says the target is already gone. `errorClass` is undefined for HMP output. */
export function isMissingError(target: StepTarget, errorClass: string | undefined, desc: string): boolean {
  if (errorClass !== undefined && !CLASSES.includes(errorClass)) return false;
  // No error class: HMP's printed text (hmp-reply.ts).
  const text = errorClass === undefined ? hmpMessage(desc) : desc.trim();
  return text === missingText(target);
}

/** True when QEMU's error says the target already exists. */
export function isExistsError(target: StepTarget, errorClass: string | undefined, desc: string): boolean {
  const text = existsText(target);
  if (text === undefined) return false;
  if (errorClass !== undefined && !CLASSES.includes(errorClass)) return false;
  return desc.trim() === text;
}
