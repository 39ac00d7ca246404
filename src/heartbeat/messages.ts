/**
 * Typed messages and their strict JSON payload codec.
 *
 * Payloads are compact JSON objects. Decoding validates every field and refuses (`malformed`)
 * anything missing, ill-typed, out of range, or unexpected, with two documented exceptions:
 *   - HEARTBEAT `summary` may carry extra keys: they are dropped, so a newer agent can add
 *     health details without breaking an older peer;
 *   - the reserved types (16-20) carry any JSON object: the issues that use them define and
 *     validate their contents.
 * Keys named __proto__, constructor or prototype are refused anywhere in a payload (reserved
 * bodies are handed on as plain objects).
 * Encoding builds the wire object from known fields only and checks it with the same decoder,
 * so we never send what a peer of the same version would refuse.
 *
 * Wire shapes:
 *   HELLO      {"name","role","session":16 hex,"protocolVersion":1..255,"nonce":32 hex}
 *   HEARTBEAT  {"sentAt":ms >= 0,"summary":{"role","coloMode","qemuReachable"[,"agentState"][,"intervalMs":1..600000]}}
 *   ACK        {"seq":integer >= 0,"sentAt":ms >= 0}   (echo of the acknowledged HEARTBEAT)
 *   GOODBYE    {"reason":string of at most 200 characters, no control characters}
 * and every payload, of every type, also carries {"epoch": integer >= 0}: the sender's arbitration
 * epoch (src/arbiter/arbiter.ts), so a node learns from any frame that the other side moved on.
 */
import { InvalidMessageError, MalformedFrameError, UnknownTypeError } from './errors.js';
import { MessageType, RESERVED_TYPES, reservedTypeName, type ReservedTypeName } from './protocol.js';

/** COLO mode as QEMU's query-colo-status reports it, or `unknown` when QEMU cannot be asked. */
export const COLO_MODES = ['none', 'primary', 'secondary', 'unknown'] as const;
export type ColoModeName = (typeof COLO_MODES)[number];

/** The largest heartbeat interval a summary may announce (ms): ten minutes, far above any sane setting. */
export const MAX_ANNOUNCED_INTERVAL_MS = 600_000;

export interface HealthSummary {
  /** The agent's role, a short lower-case token (e.g. `primary`, `secondary`). */
  role: string;
  coloMode: ColoModeName;
  qemuReachable: boolean;
  /** The agent's state machine state, a short lower-case token. */
  agentState?: string;
  /**
   * The interval the sender sends its heartbeats at (as BFD's Desired Min TX): the receiver's
   * detector expects beats at this pace, so either side can change its interval on a running pair
   * without the other suspecting it. Stamped by HeartbeatLinks from the interval it really uses.
   */
  intervalMs?: number;
}

export interface HelloBody {
  name: string;
  role: string;
  /** Must equal the frame header's session id. */
  session: string;
  /** The highest protocol version the sender speaks. */
  protocolVersion: number;
  /** 16 random bytes as hex, fresh per connection. */
  nonce: string;
}

export interface HeartbeatBody {
  /** Sender's monotonic clock at send time, ms. Only the sender interprets it (RTT). */
  sentAt: number;
  summary: HealthSummary;
}

export interface AckBody {
  seq: number;
  sentAt: number;
}

export interface GoodbyeBody {
  reason: string;
}

export type ReservedBody = Record<string, unknown>;

export type Message =
  | { type: 'hello'; body: HelloBody }
  | { type: 'heartbeat'; body: HeartbeatBody }
  | { type: 'ack'; body: AckBody }
  | { type: 'goodbye'; body: GoodbyeBody }
  | { type: ReservedTypeName; body: ReservedBody };

export type MessageName = Message['type'];

/** A decoded payload: the message and the sender's epoch that every payload carries. */
export type DecodedMessage = Message & { epoch: number };

/** The largest epoch on the wire (a safe integer, so JSON round-trips it exactly). */
export const MAX_EPOCH = Number.MAX_SAFE_INTEGER;

const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;
const TOKEN_RE = /^[a-z][a-z0-9-]{0,31}$/;
const SESSION_RE = /^[0-9a-f]{16}$/;
const NONCE_RE = /^[0-9a-f]{32}$/;
const REASON_RE = /^[^\u0000-\u001f\u007f-\u009f]{0,200}$/u;

/** Node names: hostname-like, 1-63 characters. */
export function isValidNodeName(s: string): boolean {
  return NAME_RE.test(s);
}

/** Roles and agent states: lower-case tokens of 1-32 characters. */
export function isValidToken(s: string): boolean {
  return TOKEN_RE.test(s);
}

/** Thrown inside the validators; turned into Malformed (decode) or InvalidMessage (encode). */
class FieldError extends Error {}

type Obj = Record<string, unknown>;

function object(v: unknown, what: string): Obj {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new FieldError(`${what} is not an object`);
  return v as Obj;
}

function exactKeys(o: Obj, what: string, required: readonly string[], optional: readonly string[] = []): void {
  for (const k of required) if (!Object.hasOwn(o, k)) throw new FieldError(`${what}.${k} is missing`);
  for (const k of Object.keys(o)) {
    if (!required.includes(k) && !optional.includes(k)) throw new FieldError(`${what} has unexpected field ${JSON.stringify(k).slice(0, 40)}`);
  }
}

function str(o: Obj, k: string, re: RegExp, what: string): string {
  const v = o[k];
  if (typeof v !== 'string' || !re.test(v)) throw new FieldError(`${what}.${k} is not a valid string`);
  return v;
}

function ms(o: Obj, k: string, what: string): number {
  const v = o[k];
  if (typeof v !== 'number' || !Number.isFinite(v) || v < 0 || v > Number.MAX_SAFE_INTEGER) {
    throw new FieldError(`${what}.${k} is not a time in ms`);
  }
  return v;
}

function int(o: Obj, k: string, min: number, max: number, what: string): number {
  const v = o[k];
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min || v > max) {
    throw new FieldError(`${what}.${k} is not an integer in ${min}..${max}`);
  }
  return v;
}

function summaryOf(v: unknown): HealthSummary {
  const o = object(v, 'summary');
  // Extra keys tolerated and dropped (documented above); the known ones are strict.
  for (const k of ['role', 'coloMode', 'qemuReachable']) {
    if (!Object.hasOwn(o, k)) throw new FieldError(`summary.${k} is missing`);
  }
  const role = str(o, 'role', TOKEN_RE, 'summary');
  const coloMode = o.coloMode;
  if (typeof coloMode !== 'string' || !(COLO_MODES as readonly string[]).includes(coloMode)) {
    throw new FieldError('summary.coloMode is not a COLO mode');
  }
  if (typeof o.qemuReachable !== 'boolean') throw new FieldError('summary.qemuReachable is not a boolean');
  const s: HealthSummary = { role, coloMode: coloMode as ColoModeName, qemuReachable: o.qemuReachable };
  if (Object.hasOwn(o, 'agentState')) s.agentState = str(o, 'agentState', TOKEN_RE, 'summary');
  if (Object.hasOwn(o, 'intervalMs')) s.intervalMs = int(o, 'intervalMs', 1, MAX_ANNOUNCED_INTERVAL_MS, 'summary');
  return s;
}

function bodyOf(type: number, o: Obj): Message {
  switch (type) {
    case MessageType.HELLO:
      exactKeys(o, 'hello', ['name', 'role', 'session', 'protocolVersion', 'nonce']);
      return {
        type: 'hello',
        body: {
          name: str(o, 'name', NAME_RE, 'hello'),
          role: str(o, 'role', TOKEN_RE, 'hello'),
          session: str(o, 'session', SESSION_RE, 'hello'),
          protocolVersion: int(o, 'protocolVersion', 1, 255, 'hello'),
          nonce: str(o, 'nonce', NONCE_RE, 'hello'),
        },
      };
    case MessageType.HEARTBEAT:
      exactKeys(o, 'heartbeat', ['sentAt', 'summary']);
      return { type: 'heartbeat', body: { sentAt: ms(o, 'sentAt', 'heartbeat'), summary: summaryOf(o.summary) } };
    case MessageType.ACK:
      exactKeys(o, 'ack', ['seq', 'sentAt']);
      return { type: 'ack', body: { seq: int(o, 'seq', 0, Number.MAX_SAFE_INTEGER, 'ack'), sentAt: ms(o, 'sentAt', 'ack') } };
    case MessageType.GOODBYE:
      exactKeys(o, 'goodbye', ['reason']);
      return { type: 'goodbye', body: { reason: str(o, 'reason', REASON_RE, 'goodbye') } };
    default: {
      const name = reservedTypeName(type);
      if (name === undefined) throw new UnknownTypeError(`unknown message type ${type}`);
      return { type: name, body: o };
    }
  }
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

function noProtoKeys(key: string, value: unknown): unknown {
  // Reserved bodies are handed on as plain objects: keep prototype-pollution keys out of them.
  if (key === '__proto__' || key === 'constructor' || key === 'prototype') throw new FieldError(`forbidden key ${key}`);
  return value;
}

/**
 * Strictly decodes the payload of a frame of type `type`. Throws UnknownTypeError for a type
 * number outside protocol.ts, MalformedFrameError for everything else that is wrong.
 */
export function decodePayload(type: number, payload: Buffer): DecodedMessage {
  try {
    const text = utf8.decode(payload);
    const { epoch, ...rest } = object(JSON.parse(text, noProtoKeys), 'payload');
    const message = bodyOf(type, rest);
    return { ...message, epoch: int({ epoch }, 'epoch', 0, MAX_EPOCH, 'payload') };
  } catch (err) {
    if (err instanceof UnknownTypeError) throw err;
    const why = err instanceof FieldError ? err.message : err instanceof SyntaxError ? 'payload is not JSON' : err instanceof TypeError ? 'payload is not UTF-8' : 'payload is invalid';
    throw new MalformedFrameError(why, { cause: err });
  }
}

export function typeCodeOf(type: MessageName): number {
  switch (type) {
    case 'hello':
      return MessageType.HELLO;
    case 'heartbeat':
      return MessageType.HEARTBEAT;
    case 'ack':
      return MessageType.ACK;
    case 'goodbye':
      return MessageType.GOODBYE;
    default:
      return RESERVED_TYPES[type];
  }
}

function wireOf(msg: Message): unknown {
  switch (msg.type) {
    case 'hello': {
      const b = msg.body;
      return { name: b.name, role: b.role, session: b.session, protocolVersion: b.protocolVersion, nonce: b.nonce };
    }
    case 'heartbeat': {
      const s = msg.body.summary;
      const summary: Obj = { role: s.role, coloMode: s.coloMode, qemuReachable: s.qemuReachable };
      if (s.agentState !== undefined) summary.agentState = s.agentState;
      if (s.intervalMs !== undefined) summary.intervalMs = s.intervalMs;
      return { sentAt: msg.body.sentAt, summary };
    }
    case 'ack':
      return { seq: msg.body.seq, sentAt: msg.body.sentAt };
    case 'goodbye':
      return { reason: msg.body.reason };
    default:
      return msg.body;
  }
}

/** Encodes a message's payload with the sender's epoch; throws InvalidMessageError if a peer would refuse it. */
export function encodePayload(msg: Message, epoch: number): { typeCode: number; payload: Buffer } {
  const typeCode = typeCodeOf(msg.type);
  let payload: Buffer;
  try {
    payload = Buffer.from(JSON.stringify({ ...(wireOf(msg) as Obj), epoch }), 'utf8');
  } catch (err) {
    throw new InvalidMessageError(`${msg.type} body cannot be serialised: ${(err as Error).message}`);
  }
  try {
    decodePayload(typeCode, payload);
  } catch (err) {
    throw new InvalidMessageError(`refusing to send an invalid ${msg.type}: ${(err as Error).message}`);
  }
  return { typeCode, payload };
}
