/**
 * Crash-safe replacement of a small state file (the failover journal, the arbiter's epoch).
 *
 * Write a temp file in the same directory, fsync it, rename it over the target, fsync the
 * directory. A crash at any point leaves either the old or the new content (plus, at worst, a
 * stray temp file named `<fileName>.tmp-...`, which removeStrayTempFiles() clears); never a
 * half-written file.
 *
 * Failures throw the underlying fs error unchanged, so that each caller wraps it in its own
 * coded error (JournalIoError, EpochIoError) naming what it was writing.
 */
import { randomBytes } from 'node:crypto';
import { open, readdir, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';

/** Marks the temp files of writeFileAtomic(): `<fileName>.tmp-<pid>-<random>`. */
export const ATOMIC_TEMP_MARK = '.tmp-';

/** The name prefix of every temp file writeFileAtomic() makes for `fileName`. */
export function atomicTempPrefix(fileName: string): string {
  return `${fileName}${ATOMIC_TEMP_MARK}`;
}

export interface WriteFileAtomicOptions {
  /** File mode of the new file. Default 0o600: state files are nobody else's business. */
  mode?: number;
}

/**
 * Replaces `dir/fileName` with `text` atomically and durably. Resolves once the new content and
 * the rename are on disk. On failure the temp file is removed and the fs error is rethrown.
 */
export async function writeFileAtomic(dir: string, fileName: string, text: string, opts: WriteFileAtomicOptions = {}): Promise<void> {
  const path = join(dir, fileName);
  const temp = join(dir, `${atomicTempPrefix(fileName)}${process.pid}-${randomBytes(4).toString('hex')}`);
  try {
    const fh = await open(temp, 'w', opts.mode ?? 0o600);
    try {
      await fh.writeFile(text, 'utf8');
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(temp, path);
    // Make the rename itself durable: without the directory fsync a power loss can undo it.
    const dh = await open(dir, 'r');
    try {
      await dh.sync();
    } finally {
      await dh.close();
    }
  } catch (err) {
    await rm(temp, { force: true }).catch(() => undefined);
    throw err;
  }
}

/**
 * Removes the temp files an interrupted writeFileAtomic() of `fileName` left in `dir`: the rename
 * never happened, so the file proper is current. Other files are untouched. Throws readdir's error
 * (removal failures are ignored: a leftover temp is harmless).
 */
export async function removeStrayTempFiles(dir: string, fileName: string): Promise<void> {
  const prefix = atomicTempPrefix(fileName);
  for (const n of await readdir(dir)) {
    if (n.startsWith(prefix)) await rm(join(dir, n), { force: true }).catch(() => undefined);
  }
}
