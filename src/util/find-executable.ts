/** Finding an installed program (QEMU, qemu-img, ...) on PATH, as `which` does. */
import { accessSync, constants } from 'node:fs';
import { delimiter, isAbsolute, join } from 'node:path';

/** `name` itself when it is a path, else the first executable `name` on PATH; undefined when none. */
export function findExecutable(name: string): string | undefined {
  const candidates = isAbsolute(name) || name.includes('/') ? [name] : (process.env.PATH ?? '').split(delimiter).filter(Boolean).map((d) => join(d, name));
  for (const c of candidates) {
    try {
      accessSync(c, constants.X_OK);
      return c;
    } catch {
      // next
    }
  }
  return undefined;
}
