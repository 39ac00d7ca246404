/**
 * `colo-agent keygen --out FILE`: writes a fresh random heartbeat key, readable by its owner only.
 * Both agents of a pair need the same file, copied over a trusted channel (like corosync-keygen).
 */
import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { KeyFileError } from '../heartbeat/errors.js';

export const KEY_BYTES = 32;

export async function keygen(out: string, force: boolean): Promise<void> {
  // 'wx' refuses to clobber an existing key: overwriting one side's key silently breaks the pair.
  try {
    await writeFile(out, randomBytes(KEY_BYTES), { mode: 0o600, flag: force ? 'w' : 'wx' });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    throw new KeyFileError('ERR_HB_KEY_EXISTS', `${out} exists: kept (both agents of a pair need the same key); --force writes a new one`, { cause: err });
  }
}
