/**
 * A temp dir with a short path, removed at teardown. Unix socket paths are limited to 107 bytes,
 * which t.testdir()'s paths (named after the test file and test) easily exceed.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface Teardownable {
  teardown(fn: () => unknown): void;
}

export function shortTempDir(t: Teardownable, prefix = 'colo-'): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}
