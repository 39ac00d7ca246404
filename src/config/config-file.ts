/**
 * Reading one configuration file: YAML (.yaml, .yml) or JSON (.json), chosen by extension.
 *
 * Besides the data, a file answers "on which line is this key?", so that problems can point at the line
 * to fix. Syntax errors come back as problems naming the file and line, never as a parser's stack trace.
 */
import { readFileSync } from 'node:fs';
import { extname } from 'node:path';
import { LineCounter, isMap, isScalar, parseDocument, type Document, type YAMLError } from 'yaml';
import type { ConfigProblem } from './errors.js';

export interface ConfigFile {
  path: string;
  /** The parsed document; null for an empty YAML file. */
  data: unknown;
  /** 1-based line of the key at `keyPath` (["heartbeat", "intervalMs"]), when it can be found. */
  lineOf(keyPath: readonly string[]): number | undefined;
}

export type ConfigFileResult = { ok: true; file: ConfigFile } | { ok: false; problem: ConfigProblem };

type Syntax = 'yaml' | 'json';

const SYNTAX_BY_EXTENSION: Record<string, Syntax> = { '.yaml': 'yaml', '.yml': 'yaml', '.json': 'json' };

function fileProblem(path: string, message: string, line?: number): ConfigFileResult {
  return { ok: false, problem: line === undefined ? { key: '', message, source: path } : { key: '', message, source: path, line } };
}

function readProblem(err: unknown): string {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'ENOENT') return 'file not found';
  if (code === 'EISDIR') return 'is a directory, not a file';
  if (code === 'EACCES' || code === 'EPERM') return 'permission denied';
  return `cannot read the file: ${err instanceof Error ? err.message : String(err)}`;
}

function oneLine(text: string): string {
  return text.replace(/\s+/g, ' ').trim();
}

/** Finds the line of a key by walking the YAML AST (JSON is parsed by the same parser for this). */
function makeLineOf(doc: Document, lines: LineCounter): (keyPath: readonly string[]) => number | undefined {
  return (keyPath) => {
    let node: unknown = doc.contents;
    let offset: number | undefined;
    for (const key of keyPath) {
      if (!isMap(node)) return undefined;
      const pair = node.items.find((p) => isScalar(p.key) && String(p.key.value) === key);
      if (!pair || !isScalar(pair.key)) return undefined;
      offset = pair.key.range?.[0];
      node = pair.value;
    }
    return offset === undefined ? undefined : lines.linePos(offset).line;
  };
}

function yamlErrorProblem(path: string, errors: readonly YAMLError[], lines: LineCounter): ConfigFileResult {
  const first = errors[0]!;
  const pos = lines.linePos(first.pos[0]);
  const more = errors.length > 1 ? ` (and ${errors.length - 1} more)` : '';
  return fileProblem(path, `invalid YAML at column ${pos.col}: ${oneLine(first.message)}${more}`, pos.line);
}

function jsonErrorProblem(path: string, text: string, err: unknown): ConfigFileResult {
  const raw = err instanceof Error ? err.message : String(err);
  // V8 says "... in JSON at position N" for most errors, and nothing for an unexpected token.
  const at = /\bat position (\d+)/.exec(raw);
  const line = at ? text.slice(0, Number(at[1])).split('\n').length : undefined;
  const message = oneLine(raw.replace(/\s*\(line \d+ column \d+\)/, '').replace(/ in JSON at position \d+/, ''));
  return fileProblem(path, `invalid JSON: ${message.length > 160 ? `${message.slice(0, 157)}...` : message}`, line);
}

export function readConfigFile(path: string): ConfigFileResult {
  const ext = extname(path).toLowerCase();
  const syntax = SYNTAX_BY_EXTENSION[ext];
  if (!syntax) {
    const what = ext ? `unsupported file extension "${ext}"` : 'no file extension';
    return fileProblem(path, `${what}: configuration files must end in .yaml, .yml or .json`);
  }

  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    return fileProblem(path, readProblem(err));
  }
  if (text.startsWith('\uFEFF')) text = text.slice(1);

  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false, uniqueKeys: true });

  if (syntax === 'json') {
    let data: unknown;
    try {
      data = JSON.parse(text);
    } catch (err) {
      return jsonErrorProblem(path, text, err);
    }
    // JSON.parse silently keeps the last of duplicate keys; the YAML parser notices them.
    const dup = doc.errors.find((e) => e.code === 'DUPLICATE_KEY');
    if (dup) return fileProblem(path, 'invalid JSON: duplicate key', lines.linePos(dup.pos[0]).line);
    return { ok: true, file: { path, data, lineOf: makeLineOf(doc, lines) } };
  }

  const problems = [...doc.errors, ...doc.warnings];
  if (problems.length > 0) return yamlErrorProblem(path, problems, lines);
  let data: unknown;
  try {
    data = doc.toJS({ maxAliasCount: 100 });
  } catch (err) {
    return fileProblem(path, `invalid YAML: ${oneLine(err instanceof Error ? err.message : String(err))}`);
  }
  return { ok: true, file: { path, data, lineOf: makeLineOf(doc, lines) } };
}
