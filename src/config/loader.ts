/**
 * loadConfig(): defaults < files (in order) < environment < --set, strictly validated.
 *
 * convict holds the schema, the defaults, the environment mapping, the merge and the string coercion.
 * Around it the loader adds what an operator needs from a failed load: every problem at once, each
 * naming its key and where the bad value came from (file and line, env variable, or --set).
 */
import { hostname } from 'node:os';
import convict from 'convict';
import { checkShape, unknownKeyMessage } from './shape.js';
import { readConfigFile } from './config-file.js';
import { ConfigError, type ConfigProblem } from './errors.js';
import { getFormat, registerFormats } from './formats.js';
import { checkCrossKeyRules } from './rules.js';
import { configSchema, leafSpec, schemaLeaves, sectionAt } from './schema.js';
import type { AgentConfig } from './types.js';
import { configWarnings } from './warnings.js';
import { closestKey } from './suggest.js';

export interface LoadConfigOptions {
  /** YAML (.yaml, .yml) or JSON (.json) files, later ones overriding earlier ones. */
  files?: readonly string[];
  /** Defaults to process.env. Only the schema's COLO_AGENT_* variables are read. */
  env?: NodeJS.ProcessEnv;
  /** "key=value" strings from --set, applied last, coerced to the key's type ("a,b" for lists). */
  sets?: readonly string[];
  /** Receives configWarnings() and likely typos in COLO_AGENT_* variable names. */
  onWarning?: (message: string) => void;
  /**
   * Include configWarnings() (risky settings such as arbiter.mode none). Default true; the CLI's
   * helper commands (status, plan, maintenance, resume, failover) say false: the agent and
   * check-config tell the operator once, not every command they type.
   */
  riskWarnings?: boolean;
}

interface Origin {
  source: string;
  line?: number;
}

function getPath(obj: unknown, path: string): unknown {
  return path.split('.').reduce<unknown>((node, key) => (node as Record<string, unknown> | undefined)?.[key], obj);
}

function withOrigin(problem: ConfigProblem, origin: Origin | undefined): ConfigProblem {
  if (!origin) return problem;
  return origin.line === undefined ? { ...problem, source: origin.source } : { ...problem, ...origin };
}

const ENV_NAMES = new Map(schemaLeaves().map((l) => [l.spec.env, l.path]));
const ENV_SECTION_PREFIXES = Object.keys(configSchema).map((s) => `COLO_AGENT_${s.toUpperCase()}_`);

/** COLO_AGENT_<known section>_* variables that match no key: probably misspelt, and silently ignored otherwise. */
function envTypoWarnings(env: NodeJS.ProcessEnv): string[] {
  return Object.keys(env)
    .filter((name) => ENV_SECTION_PREFIXES.some((p) => name.startsWith(p)) && !ENV_NAMES.has(name))
    .sort()
    .map((name) => {
      const near = closestKey(name, ENV_NAMES.keys());
      return `environment variable ${name} is not a configuration key and is ignored${near ? ` (did you mean ${near}?)` : ''}`;
    });
}

/** Applies one --set argument; returns a problem instead when it is malformed or names no key. */
function applySet(conf: convict.Config<AgentConfig>, arg: string, origins: Map<string, Origin>): ConfigProblem | undefined {
  const eq = arg.indexOf('=');
  if (eq < 0) return { key: '', message: `${JSON.stringify(arg)} is not key=value`, source: '--set' };
  const key = arg.slice(0, eq).trim();
  if (key === '') return { key: '', message: `${JSON.stringify(arg)} has no key before "="`, source: '--set' };
  if (!leafSpec(key)) {
    const message = sectionAt(key)
      ? 'is a section, not a key: set its keys one by one'
      : unknownKeyMessage(key, Object.keys(sectionAt(key.split('.').slice(0, -1).join('.')) ?? {}));
    return { key, message, source: '--set' };
  }
  // convict's set() coerces the string with the key's format ("50" -> 50, "a,b" -> ["a", "b"]).
  conf.set(key, arg.slice(eq + 1));
  origins.set(key, { source: '--set' });
  return undefined;
}

/**
 * Loads, merges and validates the configuration. Throws one ConfigError (code CONFIG_INVALID) listing
 * every problem found; returns a plain object otherwise, with node.name filled in from the host name
 * when it was left empty.
 */
export function loadConfig(options: LoadConfigOptions = {}): AgentConfig {
  registerFormats();
  const env = options.env ?? process.env;
  const problems: ConfigProblem[] = [];
  /** The source of each key's effective value, when it is not the default. */
  const origins = new Map<string, Origin>();
  let everyFileRead = true;

  // `args: []`: convict must not read process.argv; --set arrives here already split out by the CLI.
  const conf = convict<AgentConfig>(configSchema as unknown as convict.Schema<AgentConfig>, { env, args: [] });

  for (const path of options.files ?? []) {
    const read = readConfigFile(path);
    if (!read.ok) {
      problems.push(read.problem);
      everyFileRead = false;
      continue;
    }
    const { file } = read;
    const shape = checkShape(file.data, { source: path, lineOf: file.lineOf });
    problems.push(...shape.problems);
    // load() merges the file and then re-applies the environment, which keeps env above every file.
    conf.load(shape.clean);
    for (const key of shape.keys) {
      const line = file.lineOf(key.split('.'));
      origins.set(key, line === undefined ? { source: path } : { source: path, line });
    }
  }
  for (const { path, spec } of schemaLeaves()) {
    if (env[spec.env] !== undefined) origins.set(path, { source: `env ${spec.env}` });
  }
  for (const arg of options.sets ?? []) {
    const problem = applySet(conf, arg, origins);
    if (problem) problems.push(problem);
  }

  const cfg = conf.getProperties();
  const invalid = new Set<string>();
  for (const { path, spec } of schemaLeaves()) {
    try {
      getFormat(spec.format).validate(getPath(cfg, path), spec);
    } catch (err) {
      invalid.add(path);
      problems.push(withOrigin({ key: path, message: (err as Error).message }, origins.get(path)));
    }
  }

  if (problems.length === 0) {
    // Our checks ran every format convict would; this is the backstop for anything convict adds.
    try {
      conf.validate({ allowed: 'strict' });
    } catch (err) {
      for (const line of (err as Error).message.split('\n')) problems.push({ key: '', message: line });
    }
  }

  if (!invalid.has('node.name') && cfg.node.name === '') {
    cfg.node.name = hostname();
    try {
      getFormat('node-name').validate(cfg.node.name, {});
    } catch {
      problems.push({ key: 'node.name', message: `is empty and the host name ${JSON.stringify(cfg.node.name)} is not a valid node name: set node.name` });
    }
  }

  // Rules compare keys; with a file missing or unreadable the comparison would be about the wrong config.
  if (everyFileRead) {
    for (const p of checkCrossKeyRules(cfg, invalid)) problems.push(withOrigin(p, origins.get(p.key)));
  }

  if (problems.length > 0) throw new ConfigError(problems);

  if (options.onWarning) {
    for (const w of [...envTypoWarnings(env), ...(options.riskWarnings === false ? [] : configWarnings(cfg))]) options.onWarning(w);
  }
  return cfg;
}
