/**
 * The two etcd keys one COLO pair uses under its prefix, and the epoch record's encoding.
 *
 * - `${prefix}/epoch`: JSON {epoch, holder}, written without a lease so that it survives every
 *   crash and restart; the newest grant is always there.
 * - `${prefix}/holder`: the holder's node name, attached to the holder's etcd lease, so that etcd
 *   deletes it by itself once the holder stops renewing. Its absence is what allows a takeover.
 *
 * Invariant kept by every write (see etcd-arbiter.ts): when the holder key exists, its value is
 * the record's holder. Both are only ever written together in one transaction, or the holder key
 * alone by the node the record already names.
 */
import { EtcdEpochRecordInvalidError } from './etcd-errors.js';

export interface EpochRecord {
  epoch: number;
  holder: string;
}

export interface EtcdPairKeys {
  /** The prefix with one trailing slash: ranges and watches over it cover exactly our keys. */
  dir: string;
  epoch: string;
  holder: string;
}

export function etcdPairKeys(prefix: string): EtcdPairKeys {
  const base = prefix.replace(/\/+$/, '');
  return { dir: `${base}/`, epoch: `${base}/epoch`, holder: `${base}/holder` };
}

export function encodeEpochRecord(record: EpochRecord): string {
  return JSON.stringify({ epoch: record.epoch, holder: record.holder });
}

/** Parses the record; throws EtcdEpochRecordInvalidError for anything we would not have written. */
export function decodeEpochRecord(key: string, raw: string): EpochRecord {
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw);
  } catch {
    throw new EtcdEpochRecordInvalidError(key, 'not JSON');
  }
  if (typeof parsed !== 'object' || parsed === null) throw new EtcdEpochRecordInvalidError(key, 'not an object');
  const { epoch, holder } = parsed as Record<string, unknown>;
  if (typeof epoch !== 'number' || !Number.isSafeInteger(epoch) || epoch < 0) {
    throw new EtcdEpochRecordInvalidError(key, 'epoch is not a non-negative integer');
  }
  if (typeof holder !== 'string' || holder === '') throw new EtcdEpochRecordInvalidError(key, 'holder is not a node name');
  return { epoch, holder };
}
