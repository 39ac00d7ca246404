/**
 * Checks one source's nested object against the schema's shape before convict sees it.
 *
 * Strictness lives here: an unknown key is a problem naming the source and line (convict's own strict mode
 * knows neither), and a section that is not a mapping is a problem too (convict would throw a TypeError
 * while merging it). What passes is a copy with only known keys, safe to hand to convict's load().
 */
import type { ConfigProblem } from './errors.js';
import { getFormat, showValue } from './formats.js';
import { configSchema, isLeafSpec, schemaLeaves } from './schema.js';
import { closestKey } from './suggest.js';

export interface SourceInfo {
  /** File path, "env NAME" or "--set". */
  source: string;
  lineOf?: (keyPath: readonly string[]) => number | undefined;
}

export interface ShapeResult {
  /** Only the known keys, sections as plain objects, ready for convict. */
  clean: Record<string, unknown>;
  /** Dotted keys whose values this source sets (inside `clean`). */
  keys: string[];
  problems: ConfigProblem[];
}

export function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function kindOf(value: unknown): string {
  if (Array.isArray(value)) return 'a list';
  if (isPlainObject(value)) return 'a mapping';
  return showValue(value);
}

function suggestionFor(path: string, siblings: readonly string[]): string | undefined {
  const segments = path.split('.');
  const name = segments[segments.length - 1] ?? path;
  const parent = segments.slice(0, -1).join('.');
  const near = closestKey(name, siblings);
  if (near !== undefined) return parent ? `${parent}.${near}` : near;
  // The right key in the wrong section, e.g. qemu.intervalMs for heartbeat.intervalMs.
  const moved = schemaLeaves().find((l) => l.path.endsWith(`.${name}`));
  return moved?.path ?? closestKey(path, schemaLeaves().map((l) => l.path));
}

/** "unknown key", with a "did you mean" when a similar key exists; `siblings` are the names beside it. */
export function unknownKeyMessage(path: string, siblings: readonly string[]): string {
  const suggestion = suggestionFor(path, siblings);
  return suggestion ? `unknown key (did you mean ${suggestion}?)` : 'unknown key';
}

export function checkShape(data: unknown, info: SourceInfo): ShapeResult {
  const result: ShapeResult = { clean: {}, keys: [], problems: [] };
  const problem = (keyPath: string[], message: string): void => {
    const line = info.lineOf?.(keyPath);
    result.problems.push({ key: keyPath.join('.'), message, source: info.source, ...(line === undefined ? {} : { line }) });
  };

  const walk = (value: Record<string, unknown>, schema: Record<string, unknown>, keyPath: string[], out: Record<string, unknown>): void => {
    for (const [key, child] of Object.entries(value)) {
      const childPath = [...keyPath, key];
      const spec = Object.hasOwn(schema, key) ? schema[key] : undefined;
      if (spec === undefined) {
        problem(childPath, unknownKeyMessage(childPath.join('.'), Object.keys(schema)));
      } else if (isLeafSpec(spec)) {
        if (isPlainObject(child)) {
          problem(childPath, `must be ${getFormat(spec.format).describe(spec)} (got a mapping)`);
        } else {
          out[key] = child;
          result.keys.push(childPath.join('.'));
        }
      } else if (child === null) {
        // A section whose keys are all commented out: nothing to set.
      } else if (!isPlainObject(child)) {
        problem(childPath, `must be a section (a mapping of keys) (got ${kindOf(child)})`);
      } else {
        const section: Record<string, unknown> = {};
        out[key] = section;
        walk(child, spec as Record<string, unknown>, childPath, section);
      }
    }
  };

  if (data === null || data === undefined) return result;
  if (!isPlainObject(data)) {
    result.problems.push({ key: '', message: `the top level must be a mapping of sections (got ${kindOf(data)})`, source: info.source });
    return result;
  }
  walk(data, configSchema as unknown as Record<string, unknown>, [], result.clean);
  return result;
}
