/**
 * Reads the shared heartbeat key (written by `colo-agent keygen`).
 *
 * The file's bytes, as they are, are the key (no trimming or decoding): copy the same file to
 * both hosts. Errors name the path and the problem, never the bytes.
 */
import { open } from 'node:fs/promises';
import { KeyFileError } from './errors.js';
import { MIN_KEY_BYTES, sharedKeyProblem } from './auth.js';

/** A key file larger than this is certainly the wrong file (and must not be read into memory whole). */
export const MAX_KEY_FILE_BYTES = 64 * 1024;

export async function readKeyFile(path: string): Promise<Buffer> {
  let key: Buffer;
  let mode: number;
  try {
    const fh = await open(path, 'r');
    try {
      const st = await fh.stat();
      if (!st.isFile()) {
        throw new KeyFileError('ERR_HB_KEY_UNREADABLE', `heartbeat key file ${path} is not a regular file`);
      }
      if (st.size > MAX_KEY_FILE_BYTES) {
        throw new KeyFileError(
          'ERR_HB_KEY_UNREADABLE',
          `heartbeat key file ${path} is ${st.size} bytes, more than ${MAX_KEY_FILE_BYTES}: wrong file?`,
        );
      }
      key = await fh.readFile();
      mode = st.mode & 0o777;
    } finally {
      await fh.close();
    }
  } catch (err) {
    if (err instanceof KeyFileError) throw err;
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') {
      throw new KeyFileError('ERR_HB_KEY_MISSING', `heartbeat key file ${path} does not exist (create it with colo-agent keygen)`, { cause: err });
    }
    throw new KeyFileError('ERR_HB_KEY_UNREADABLE', `heartbeat key file ${path} cannot be read (${code ?? 'error'})`, { cause: err });
  }
  const problem = sharedKeyProblem(key);
  if (problem === 'short') {
    throw new KeyFileError('ERR_HB_KEY_SHORT', `heartbeat key file ${path} holds ${key.length} bytes; at least ${MIN_KEY_BYTES} are needed`);
  }
  if (problem === 'weak') {
    throw new KeyFileError('ERR_HB_KEY_WEAK', `heartbeat key file ${path} holds only zero bytes (that is the insecure-mode key)`);
  }
  // A key other local users can read lets any of them fake a live peer (and so block a
  // failover) or a dead one: refuse it, as ssh does with private keys.
  if ((mode & 0o077) !== 0) {
    throw new KeyFileError('ERR_HB_KEY_EXPOSED', `heartbeat key file ${path} can be read or written by other users (mode ${mode.toString(8)}): chmod 600 it`);
  }
  return key;
}
