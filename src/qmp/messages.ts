/**
 * The QMP wire format: what QEMU sends (greeting, return, error, event) and what we send.
 * One JSON object per line. Parsing is strict about shape, because a message we cannot classify
 * means the stream no longer lines up and the connection must be reset.
 */
import { QmpProtocolError } from './errors.js';
import type { QemuVersion } from './version.js';

export interface QmpGreeting {
  version: QemuVersion;
  /** e.g. ["oob"]; we enable only the ones we understand. */
  capabilities: string[];
}

/** QEMU's wall-clock time of an event (g_get_real_time on the QEMU host). */
export interface QmpTimestamp {
  seconds: number;
  microseconds: number;
}

export type QmpServerMessage =
  | { kind: 'greeting'; greeting: QmpGreeting }
  | { kind: 'return'; id: unknown; hasId: boolean; value: unknown }
  | { kind: 'error'; id: unknown; hasId: boolean; errorClass: string; desc: string }
  | { kind: 'event'; event: string; data: Record<string, unknown>; timestamp: QmpTimestamp };

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function isCount(v: unknown): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v >= 0;
}

/** Parses one line (without its line ending). Throws QmpProtocolError when it is not a QMP message. */
export function parseServerLine(line: string): QmpServerMessage {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch (err) {
    throw new QmpProtocolError('bad-json', `not JSON: ${preview(line)} (${(err as Error).message})`);
  }
  if (!isObject(value)) throw new QmpProtocolError('unexpected-message', `not a JSON object: ${preview(line)}`);
  return classify(value, line);
}

function classify(msg: Record<string, unknown>, line: string): QmpServerMessage {
  const hasId = Object.hasOwn(msg, 'id');
  if (Object.hasOwn(msg, 'QMP')) return { kind: 'greeting', greeting: parseGreeting(msg) };
  if (Object.hasOwn(msg, 'return')) return { kind: 'return', id: msg.id, hasId, value: msg.return };
  if (Object.hasOwn(msg, 'error')) {
    const e = msg.error;
    if (!isObject(e) || typeof e.class !== 'string' || typeof e.desc !== 'string') {
      throw new QmpProtocolError('unexpected-message', `error reply without class/desc strings: ${preview(line)}`);
    }
    return { kind: 'error', id: msg.id, hasId, errorClass: e.class, desc: e.desc };
  }
  if (typeof msg.event === 'string') {
    const ts = msg.timestamp;
    // QEMU always stamps events; it writes -1/-1 if it could not read the clock, which we keep.
    if (!isObject(ts) || typeof ts.seconds !== 'number' || typeof ts.microseconds !== 'number') {
      throw new QmpProtocolError('unexpected-message', `event without timestamp: ${preview(line)}`);
    }
    const data = msg.data === undefined ? {} : msg.data;
    if (!isObject(data)) throw new QmpProtocolError('unexpected-message', `event data is not an object: ${preview(line)}`);
    return { kind: 'event', event: msg.event, data, timestamp: { seconds: ts.seconds, microseconds: ts.microseconds } };
  }
  throw new QmpProtocolError('unexpected-message', `neither greeting, return, error nor event: ${preview(line)}`);
}

/**
 * `{"QMP": {"version": {"qemu": {"major","minor","micro"}, "package"}, "capabilities": [...]}}`.
 * Accepts the object the line parsed to; throws QmpProtocolError('bad-greeting').
 */
export function parseGreeting(msg: unknown): QmpGreeting {
  const bad = (why: string) => new QmpProtocolError('bad-greeting', `${why}: ${preview(JSON.stringify(msg) ?? String(msg))}`);
  if (!isObject(msg) || !isObject(msg.QMP)) throw bad('no QMP object');
  const { version, capabilities } = msg.QMP;
  if (!isObject(version) || !isObject(version.qemu)) throw bad('no version.qemu');
  const { major, minor, micro } = version.qemu;
  if (!isCount(major) || !isCount(minor) || !isCount(micro)) throw bad('version.qemu needs integer major, minor, micro');
  const pkg = version.package === undefined ? '' : version.package;
  if (typeof pkg !== 'string') throw bad('version.package is not a string');
  if (!Array.isArray(capabilities) || !capabilities.every((c): c is string => typeof c === 'string')) {
    throw bad('capabilities is not a list of strings');
  }
  return { version: { major, minor, micro, package: pkg }, capabilities: [...capabilities] };
}

/** QEMU's event timestamp as epoch milliseconds (fractional), for comparing with Date.now(). */
export function timestampToMs(ts: QmpTimestamp): number {
  return ts.seconds * 1000 + ts.microseconds / 1000;
}

/** One command line to write; `oob` uses `exec-oob`, which QEMU runs without queueing behind other commands. */
export function encodeCommand(command: string, args: Record<string, unknown> | undefined, id: unknown, oob: boolean): string {
  const msg: Record<string, unknown> = oob ? { 'exec-oob': command } : { execute: command };
  if (args !== undefined) msg.arguments = args;
  msg.id = id;
  return `${JSON.stringify(msg)}\n`;
}

/** Enough of an offending line to recognise it in a log, never the whole megabyte. */
export function preview(line: string, max = 120): string {
  const s = JSON.stringify(line.length > max ? `${line.slice(0, max)}…` : line);
  return line.length > max ? `${s} (${line.length} chars)` : s;
}
