/**
 * The value formats of colo-agent's configuration, registered with convict once.
 *
 * Every schema key names one of these. A format is three things kept together so they cannot drift:
 *  - `validate(value, leaf)` throws an Error whose message reads after the key name
 *    ("must be an integer between 10 and 60000 (got "fast")"); convict calls it, and so does the loader
 *    to collect problems one by one with their key and source;
 *  - `coerce(text)` turns the strings of environment variables and `--set` into the key's type; when the
 *    text does not convert it is returned unchanged, so that `validate` reports it with the original text;
 *  - `describe(leaf)` is the short text of the configuration reference.
 * Range limits (`min`, `max`) live on the schema key, so one format serves many keys; each enum is a format.
 * What these formats accept is a subset of what the components' own parsers accept (src/qmp/address.ts is
 * used directly for QMP addresses), so a config that loads never fails later on its syntax.
 */
import { isIPv4, isIPv6 } from 'node:net';
import { posix } from 'node:path';
import convict from 'convict';
import { LOG_LEVELS } from '../log.js';
import { MAX_UNIX_PATH_BYTES, parseQmpAddress } from '../qmp/address.js';
import { ARBITER_MODES, FENCE_FAILURE_POLICIES, LEASE_LOSS_POLICIES, NODE_ROLES, QEMU_RESTART_POLICIES } from './types.js';

/** What a format may read from the schema key it validates (convict passes the key's schema object). */
export interface FormatParams {
  min?: number;
  max?: number;
  /** Hide the value in messages. */
  sensitive?: boolean;
}

export interface ConfigFormat {
  validate(value: unknown, leaf: FormatParams): void;
  coerce?(text: string): unknown;
  describe(leaf: FormatParams): string;
}

interface HostPort {
  host: string;
  port: number;
}

const HOSTNAME_LABEL = /^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/;
const NODE_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
/** QEMU's id_wellformed(): a letter, then letters, digits, '-', '.', '_'. */
const QEMU_ID = /^[A-Za-z][A-Za-z0-9._-]{0,127}$/;
const QEMU_VERSION = /^(\d{1,3})\.(\d{1,3})(?:\.(\d{1,4}))?$/;
const INTEGER_TEXT = /^[+-]?\d+$/;
const NUMBER_TEXT = /^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?$/;

/** A value as it appears in a message: JSON for strings and lists, shortened when long. */
export function showValue(value: unknown): string {
  if (value === undefined) return 'nothing';
  if (typeof value === 'number' || typeof value === 'bigint') return String(value);
  let text: string | undefined;
  try {
    text = JSON.stringify(value);
  } catch {
    text = undefined;
  }
  text ??= String(value);
  return text.length > 80 ? `${text.slice(0, 77)}...` : text;
}

function got(value: unknown, leaf: FormatParams): string {
  return leaf.sensitive ? '(value not shown: sensitive key)' : `(got ${showValue(value)})`;
}

function fail(value: unknown, leaf: FormatParams, what: string): never {
  throw new Error(`must be ${what} ${got(value, leaf)}`);
}

/** Why `host` is not an IPv4 address, an IPv6 address (only if `bareIPv6`) or a host name; undefined if it is. */
function hostProblem(host: string, bareIPv6: boolean): string | undefined {
  if (host === '') return 'the host is empty';
  if (isIPv4(host)) return undefined;
  if (isIPv6(host)) return bareIPv6 ? undefined : 'an IPv6 address needs brackets, e.g. [::1]:7410';
  const labels = host.split('.');
  if (host.length <= 253 && labels.every((l) => HOSTNAME_LABEL.test(l))) {
    // "10.0.0.300" is a mistyped address, not a host name: names never end in an all-digit label.
    if (!/^\d+$/.test(labels[labels.length - 1] ?? '')) return undefined;
    return `"${host}" is not a valid IPv4 address`;
  }
  return `"${host}" is not an IPv4 address, IPv6 address or host name`;
}

/** Parses "HOST:PORT" ("[v6]:PORT" for IPv6); returns the reason as a string when it is not one. */
function splitHostPort(text: string): HostPort | string {
  let host: string;
  let portText: string;
  if (text.startsWith('[')) {
    const close = text.indexOf(']');
    if (close < 0) return 'missing "]" after the IPv6 address';
    host = text.slice(1, close);
    if (!isIPv6(host)) return `"${host}" is not an IPv6 address`;
    if (text[close + 1] !== ':') return 'missing ":PORT"';
    portText = text.slice(close + 2);
  } else {
    const colon = text.lastIndexOf(':');
    if (colon < 0) return 'missing ":PORT"';
    host = text.slice(0, colon);
    portText = text.slice(colon + 1);
    const reason = hostProblem(host, false);
    if (reason) return reason;
  }
  if (!/^\d{1,5}$/.test(portText)) return `port "${portText}" is not a number`;
  const port = Number(portText);
  if (port < 1 || port > 65535) return `port ${port} is outside 1-65535`;
  return { host, port };
}

function range(leaf: FormatParams): [number, number] {
  return [leaf.min ?? Number.MIN_SAFE_INTEGER, leaf.max ?? Number.MAX_SAFE_INTEGER];
}

function coerceInteger(text: string): unknown {
  const t = text.trim();
  return INTEGER_TEXT.test(t) ? Number(t) : text;
}

function coerceNumber(text: string): unknown {
  const t = text.trim();
  return NUMBER_TEXT.test(t) ? Number(t) : text;
}

/** Numbers within the key's `min`..`max`; `integer` also demands a safe integer. */
function rangeFormat(integer: boolean): ConfigFormat {
  return {
    validate(value, leaf) {
      const [min, max] = range(leaf);
      const ok = typeof value === 'number' && (integer ? Number.isSafeInteger(value) : Number.isFinite(value));
      if (!ok || value < min || value > max) fail(value, leaf, `${integer ? 'an integer' : 'a number'} between ${min} and ${max}`);
    },
    coerce: integer ? coerceInteger : coerceNumber,
    describe: (leaf) => `${integer ? 'integer' : 'number'} ${range(leaf).join('..')}`,
  };
}

function enumFormat(values: readonly string[]): ConfigFormat {
  const list = values.join(', ');
  return {
    validate(value, leaf) {
      if (typeof value !== 'string' || !values.includes(value)) fail(value, leaf, `one of ${list}`);
    },
    describe: () => `one of: ${list}`,
  };
}

function hostPortFormat(allowEmpty: boolean): ConfigFormat {
  return {
    validate(value, leaf) {
      if (typeof value !== 'string') fail(value, leaf, allowEmpty ? 'a "HOST:PORT" string or ""' : 'a "HOST:PORT" string');
      if (allowEmpty && value === '') return;
      const r = splitHostPort(value);
      if (typeof r === 'string') fail(value, leaf, `HOST:PORT: ${r}`);
    },
    describe: () =>
      allowEmpty
        ? 'HOST:PORT (IPv4, [IPv6] or host name; port 1-65535), or "" for off'
        : 'HOST:PORT (IPv4, [IPv6] or host name; port 1-65535)',
  };
}

function absolutePathFormat(allowEmpty: boolean): ConfigFormat {
  return {
    validate(value, leaf) {
      const what = allowEmpty ? 'an absolute path or ""' : 'an absolute path';
      if (typeof value !== 'string' || value.includes('\0')) fail(value, leaf, what);
      if (allowEmpty && value === '') return;
      if (!posix.isAbsolute(value)) fail(value, leaf, what);
    },
    describe: () => (allowEmpty ? 'absolute path, or ""' : 'absolute path'),
  };
}

/** Every format by name. Schema keys refer to these names; `FormatName` keeps the references checked. */
export const FORMATS = {
  'int-range': rangeFormat(true),
  'number-range': rangeFormat(false),
  flag: {
    validate(value, leaf) {
      if (typeof value !== 'boolean') fail(value, leaf, 'true or false');
    },
    // Deliberately not convict's Boolean coercion, which reads every string but "false" as true:
    // COLO_AGENT_HEARTBEAT_INSECURE=0 must not switch authentication off.
    coerce(text) {
      const t = text.trim().toLowerCase();
      return t === 'true' ? true : t === 'false' ? false : text;
    },
    describe: () => 'true or false',
  },
  host: {
    validate(value, leaf) {
      if (typeof value !== 'string') fail(value, leaf, 'a host string');
      const reason = hostProblem(value, true);
      if (reason) fail(value, leaf, `an IPv4 address, IPv6 address or host name: ${reason}`);
    },
    describe: () => 'IPv4 address, IPv6 address or host name',
  },
  'host-port': hostPortFormat(false),
  'optional-host-port': hostPortFormat(true),
  'host-port-list': {
    validate(value, leaf) {
      if (!Array.isArray(value)) fail(value, leaf, 'a list of "HOST:PORT" strings');
      const bad: string[] = [];
      value.forEach((entry: unknown, i: number) => {
        const r = typeof entry === 'string' ? splitHostPort(entry) : 'not a string';
        if (typeof r === 'string') bad.push(`entry ${i + 1} ${showValue(entry)}: ${r}`);
      });
      if (bad.length > 0) throw new Error(`must be a list of HOST:PORT: ${bad.join('; ')}`);
    },
    // Environment variables and --set give the list comma-separated; "" is the empty list.
    coerce(text) {
      return text.trim() === '' ? [] : text.split(',').map((s) => s.trim());
    },
    describe: () => 'list of HOST:PORT (comma-separated in env and --set)',
  },
  'qmp-address': {
    validate(value, leaf) {
      if (typeof value !== 'string') fail(value, leaf, 'a "unix:PATH" or "tcp:HOST:PORT" string');
      // The QMP client's own parser decides what it can connect to, with its own wording
      // ('invalid QMP address "tcp:x": missing :PORT (expected unix:PATH or tcp:HOST:PORT)').
      let address: ReturnType<typeof parseQmpAddress>;
      try {
        address = parseQmpAddress(value);
      } catch (err) {
        throw new Error(err instanceof Error ? err.message : String(err));
      }
      // A daemon's working directory is nobody's business: a relative socket path is a mistake here.
      if (address.kind === 'unix' && !posix.isAbsolute(address.path)) {
        fail(value, leaf, '"unix:PATH" with an absolute PATH, or "tcp:HOST:PORT"');
      }
    },
    describe: () => `unix:PATH (absolute, at most ${MAX_UNIX_PATH_BYTES} bytes) or tcp:HOST:PORT`,
  },
  'absolute-path': absolutePathFormat(false),
  'optional-absolute-path': absolutePathFormat(true),
  'node-name': {
    validate(value, leaf) {
      if (typeof value !== 'string' || (value !== '' && !NODE_NAME.test(value))) {
        fail(value, leaf, '"" or 1-64 characters of A-Z a-z 0-9 . _ - starting with a letter or digit');
      }
    },
    describe: () => '"" (host name) or 1-64 of A-Z a-z 0-9 . _ -',
  },
  'qemu-id': {
    validate(value, leaf) {
      if (typeof value !== 'string' || !QEMU_ID.test(value)) {
        fail(value, leaf, 'a QEMU id: a letter, then letters, digits, ".", "-" or "_"');
      }
    },
    describe: () => 'QEMU id (a letter, then letters, digits, . - _)',
  },
  'qemu-profile': {
    validate(value, leaf) {
      // A YAML `profile: 10.0` is the number 10: require a string so the minor version is not lost.
      if (typeof value === 'number') fail(value, leaf, '"auto" or a quoted QEMU version such as "10.0"');
      if (typeof value !== 'string' || (value !== 'auto' && !QEMU_VERSION.test(value))) {
        fail(value, leaf, '"auto" or a QEMU version MAJOR.MINOR[.MICRO] such as "7.2" or "10.0.7"');
      }
    },
    describe: () => 'auto, or MAJOR.MINOR[.MICRO]',
  },
  'node-role': enumFormat(NODE_ROLES),
  'arbiter-mode': enumFormat(ARBITER_MODES),
  'fence-failure-policy': enumFormat(FENCE_FAILURE_POLICIES),
  'lease-loss-policy': enumFormat(LEASE_LOSS_POLICIES),
  'qemu-restart-policy': enumFormat(QEMU_RESTART_POLICIES),
  'argv-list': {
    // A command run without a shell: every argument is its own entry, so nothing needs quoting.
    validate(value, leaf) {
      const what = 'a list of non-empty strings, the program first (in env and --set a JSON array such as ["qemu-system-x86_64","-incoming","defer"])';
      if (!Array.isArray(value)) fail(value, leaf, what);
      const bad: string[] = [];
      value.forEach((entry: unknown, i: number) => {
        if (typeof entry !== 'string') bad.push(`entry ${i + 1} ${showValue(entry)}: not a string`);
        else if (entry === '') bad.push(`entry ${i + 1} is empty`);
        else if (entry.includes('\0')) bad.push(`entry ${i + 1} contains a NUL character`);
      });
      if (bad.length > 0) throw new Error(`must be ${what}: ${bad.join('; ')}`);
    },
    // Arguments may contain commas (QEMU's own option syntax), so the text form is JSON, not comma-separated.
    coerce(text) {
      const t = text.trim();
      if (t === '') return [];
      if (!t.startsWith('[')) return text;
      try {
        const parsed: unknown = JSON.parse(t);
        return Array.isArray(parsed) ? parsed : text;
      } catch {
        return text;
      }
    },
    describe: () => 'list of strings: program, then arguments (a JSON array in env and --set)',
  },
  'shell-command': {
    validate(value, leaf) {
      if (typeof value !== 'string' || value.includes('\0') || value.length > 4096) fail(value, leaf, 'a shell command line (at most 4096 characters) or ""');
    },
    describe: () => 'shell command line, or "" for none',
  },
  'url-list': {
    validate(value, leaf) {
      if (!Array.isArray(value)) fail(value, leaf, 'a list of http:// or https:// URLs');
      const bad: string[] = [];
      value.forEach((entry: unknown, i: number) => {
        let ok = false;
        try {
          ok = typeof entry === 'string' && /^https?:$/.test(new URL(entry).protocol);
        } catch {
          ok = false;
        }
        if (!ok) bad.push(`entry ${i + 1} ${showValue(entry)}`);
      });
      if (bad.length > 0) throw new Error(`must be a list of http:// or https:// URLs: ${bad.join('; ')}`);
    },
    coerce(text) {
      return text.trim() === '' ? [] : text.split(',').map((s) => s.trim());
    },
    describe: () => 'list of http(s)://HOST:PORT URLs (comma-separated in env and --set)',
  },
  'etcd-prefix': {
    validate(value, leaf) {
      if (typeof value !== 'string' || !/^\/[A-Za-z0-9._\/-]{1,200}$/.test(value) || value.endsWith('/')) {
        fail(value, leaf, 'a key prefix such as "/colo-agent/vm1": "/", then letters, digits, . _ - /, not ending in "/"');
      }
    },
    describe: () => 'etcd key prefix (/name[/name...])',
  },
  'log-level': enumFormat(LOG_LEVELS),
} satisfies Record<string, ConfigFormat>;

export type FormatName = keyof typeof FORMATS;

export function getFormat(name: FormatName): ConfigFormat {
  return FORMATS[name];
}

let registered = false;

/** Registers every format with convict. Idempotent: convict's format registry is process-wide. */
export function registerFormats(): void {
  if (registered) return;
  for (const [name, format] of Object.entries(FORMATS) as [string, ConfigFormat][]) {
    const { coerce } = format;
    convict.addFormat({
      name,
      validate: (value: unknown, schema: FormatParams) => format.validate(value, schema),
      // convict only coerces strings, but say so here too: a file's numbers and lists pass through.
      ...(coerce ? { coerce: (text: unknown) => (typeof text === 'string' ? coerce(text) : text) } : {}),
    });
  }
  registered = true;
}
