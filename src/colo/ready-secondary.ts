/**
 * The "ready to be secondary" announcement (heartbeat reserved type 20), sent by the agent of a
 * host that came back with a fresh secondary QEMU: its QEMU waits for the incoming migration and
 * exports its disk over NBD. The primary's agent resumes replication to it (drive-mirror, then the
 * switch-over) only when the announcement carries the primary's own epoch, so a stale node is never
 * made part of the pair: the new secondary adopts the primary's epoch first, which is safe because
 * its QEMU runs no guest yet.
 *
 *   {"nbd":"HOST:PORT","qemu":"MAJOR.MINOR.MICRO"}
 */
import { ColoAgentError } from '../errors.js';

export class ReadySecondaryMessageError extends ColoAgentError {
  constructor(message: string) {
    super('ERR_READY_SECONDARY_MESSAGE', message);
  }
}

export interface ReadySecondaryBody {
  /** Where its NBD export listens (for logs; the primary dials colo's peer host and nbdPort). */
  nbd: string;
  /** Its QEMU version, for logs. */
  qemu: string;
}

const NBD_RE = /^[A-Za-z0-9.:[\]-]{1,100}:\d{1,5}$/;
const VERSION_RE = /^\d{1,3}\.\d{1,3}\.\d{1,3}$/;

export function parseReadySecondary(o: Record<string, unknown>): ReadySecondaryBody {
  for (const k of Object.keys(o)) if (k !== 'nbd' && k !== 'qemu') throw new ReadySecondaryMessageError(`unexpected field ${JSON.stringify(k).slice(0, 40)}`);
  if (typeof o.nbd !== 'string' || !NBD_RE.test(o.nbd)) throw new ReadySecondaryMessageError('nbd is not HOST:PORT');
  if (typeof o.qemu !== 'string' || !VERSION_RE.test(o.qemu)) throw new ReadySecondaryMessageError('qemu is not a version');
  return { nbd: o.nbd, qemu: o.qemu };
}
