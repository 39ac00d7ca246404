/**
 * Frame codec: sealing (header + payload + HMAC) and the streaming FrameReader that cuts frames
 * out of arbitrarily chunked TCP data and opens them strictly. Layout: see protocol.ts.
 *
 * Check order, and why:
 *   1. length prefix: above maxFrameBytes -> `oversize` as soon as the 4 bytes are in, before any
 *      body is buffered; below the minimum -> `malformed`.
 *   2. version byte -> `bad-version` (a future version may MAC differently).
 *   3. MAC -> `bad-mac`, or `auth-mismatch` when it verifies under the insecure all-zero key instead.
 *   4. type number -> `unknown-type` (only after the MAC: unauthenticated noise is always `bad-mac`).
 *   5. session id / seq / payload -> `malformed`.
 */
import { computeMac, macMatches } from './auth.js';
import { BadMacError, BadVersionError, AuthMismatchError, MalformedFrameError, OversizeFrameError, TruncatedFrameError, UnknownTypeError } from './errors.js';
import { decodePayload, encodePayload, type Message } from './messages.js';
import { HEADER_BYTES, LENGTH_BYTES, MAC_BYTES, MIN_BODY_BYTES, PROTOCOL_VERSION, SESSION_BYTES, isKnownType } from './protocol.js';

export const DEFAULT_MAX_FRAME_BYTES = 16 * 1024;
/** maxFrameBytes below this could not carry a HELLO. */
export const MIN_MAX_FRAME_BYTES = 512;

export interface RawFrame {
  version: number;
  typeCode: number;
  /** 16 hex digits. */
  session: string;
  seq: number;
  payload: Buffer;
}

export interface DecodedFrame {
  version: number;
  typeCode: number;
  session: string;
  seq: number;
  message: Message;
  /** The sender's arbitration epoch, carried in every payload. */
  epoch: number;
  /** Size on the wire, length prefix included. */
  bytes: number;
}

const SESSION_RE = /^[0-9a-f]{16}$/;

/**
 * Builds a frame from raw parts and MACs it with `key`. Exposed so tests can craft frames that
 * are authentic but otherwise wrong (unknown type, other version, bad payload).
 */
export function sealFrame(f: RawFrame, key: Buffer): Buffer {
  if (!SESSION_RE.test(f.session)) throw new RangeError('session must be 16 hex digits');
  if (!Number.isSafeInteger(f.seq) || f.seq < 0) throw new RangeError('seq must be a safe non-negative integer');
  const length = HEADER_BYTES - LENGTH_BYTES + f.payload.length + MAC_BYTES;
  const buf = Buffer.allocUnsafe(LENGTH_BYTES + length);
  buf.writeUInt32BE(length, 0);
  buf.writeUInt8(f.version, 4);
  buf.writeUInt8(f.typeCode, 5);
  buf.write(f.session, 6, SESSION_BYTES, 'hex');
  buf.writeBigUInt64BE(BigInt(f.seq), 6 + SESSION_BYTES);
  f.payload.copy(buf, HEADER_BYTES);
  const macAt = HEADER_BYTES + f.payload.length;
  computeMac(key, buf.subarray(0, macAt)).copy(buf, macAt);
  return buf;
}

/** Encodes a typed message into a sealed frame of the current protocol version. */
export function encodeFrame(args: { session: string; seq: number; message: Message; epoch: number; key: Buffer }): Buffer {
  const { typeCode, payload } = encodePayload(args.message, args.epoch);
  return sealFrame({ version: PROTOCOL_VERSION, typeCode, session: args.session, seq: args.seq, payload }, args.key);
}

/**
 * Opens one complete frame (length prefix included). `probeKey`, when given, is tried after a
 * MAC failure only to tell `auth-mismatch` from `bad-mac`; it never makes a frame valid.
 */
export function openFrame(frame: Buffer, key: Buffer, probeKey?: Buffer): DecodedFrame {
  if (frame.length < LENGTH_BYTES) throw new TruncatedFrameError('frame shorter than its length prefix');
  const length = frame.readUInt32BE(0);
  if (length < MIN_BODY_BYTES) throw new MalformedFrameError(`frame length ${length} below the minimum ${MIN_BODY_BYTES}`);
  if (frame.length !== LENGTH_BYTES + length) {
    throw new (frame.length < LENGTH_BYTES + length ? TruncatedFrameError : MalformedFrameError)(
      `frame is ${frame.length} bytes, its prefix says ${LENGTH_BYTES + length}`,
    );
  }
  const version = frame.readUInt8(4);
  if (version !== PROTOCOL_VERSION) throw new BadVersionError(`protocol version ${version}, expected ${PROTOCOL_VERSION}`);
  const macAt = frame.length - MAC_BYTES;
  const signed = frame.subarray(0, macAt);
  const mac = frame.subarray(macAt);
  if (!macMatches(key, signed, mac)) {
    if (probeKey !== undefined && macMatches(probeKey, signed, mac)) {
      throw new AuthMismatchError('peer frame is MAC\'d with the insecure all-zero key, but this node has a key');
    }
    throw new BadMacError('frame MAC does not verify');
  }
  const typeCode = frame.readUInt8(5);
  if (!isKnownType(typeCode)) throw new UnknownTypeError(`unknown message type ${typeCode}`);
  const session = frame.toString('hex', 6, 6 + SESSION_BYTES);
  const seqBig = frame.readBigUInt64BE(6 + SESSION_BYTES);
  if (seqBig > BigInt(Number.MAX_SAFE_INTEGER)) throw new MalformedFrameError('sequence number beyond 2^53');
  const { epoch, ...message } = decodePayload(typeCode, frame.subarray(HEADER_BYTES, macAt));
  return { version, typeCode, session, seq: Number(seqBig), message: message as Message, epoch, bytes: frame.length };
}

export interface FrameReaderOptions {
  maxFrameBytes?: number;
  key: Buffer;
  /** See openFrame. */
  probeKey?: Buffer;
}

/**
 * Reassembles and opens frames from a byte stream. Usage: push(chunk), then call next() until it
 * returns undefined; the caller may setKey() between frames (the handshake switches keys between
 * two frames that can sit in the same chunk). Every method throws a FrameRejectedError on bad
 * input; after the first one the reader is dead and the connection should be dropped.
 */
export class FrameReader {
  private buf: Buffer = Buffer.alloc(0);
  private key: Buffer;
  private probeKey: Buffer | undefined;
  private failed = false;
  readonly maxFrameBytes: number;

  constructor(opts: FrameReaderOptions) {
    this.maxFrameBytes = opts.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES;
    if (!Number.isSafeInteger(this.maxFrameBytes) || this.maxFrameBytes < MIN_MAX_FRAME_BYTES) {
      throw new RangeError(`maxFrameBytes must be an integer >= ${MIN_MAX_FRAME_BYTES}`);
    }
    this.key = opts.key;
    this.probeKey = opts.probeKey;
  }

  setKey(key: Buffer, probeKey?: Buffer): void {
    this.key = key;
    this.probeKey = probeKey;
  }

  get bufferedBytes(): number {
    return this.buf.length;
  }

  push(chunk: Buffer): void {
    if (this.failed) return;
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
    this.guard(() => this.pendingLength());
  }

  /** The next complete frame, or undefined when more bytes are needed. */
  next(): DecodedFrame | undefined {
    if (this.failed) return undefined;
    return this.guard(() => {
      const length = this.pendingLength();
      if (length === undefined || this.buf.length < LENGTH_BYTES + length) return undefined;
      const frame = this.buf.subarray(0, LENGTH_BYTES + length);
      this.buf = this.buf.subarray(LENGTH_BYTES + length);
      return openFrame(frame, this.key, this.probeKey);
    });
  }

  /** The stream ended: any buffered partial frame is `truncated`. */
  end(): void {
    if (this.failed || this.buf.length === 0) return;
    this.failed = true;
    const have = this.buf.length;
    this.buf = Buffer.alloc(0);
    throw new TruncatedFrameError(`stream ended inside a frame (${have} bytes buffered)`);
  }

  /** The length field of the frame at the head of the buffer, checked, or undefined if incomplete. */
  private pendingLength(): number | undefined {
    if (this.buf.length < LENGTH_BYTES) return undefined;
    const length = this.buf.readUInt32BE(0);
    if (length > this.maxFrameBytes) throw new OversizeFrameError(`frame length ${length} exceeds ${this.maxFrameBytes}`);
    if (length < MIN_BODY_BYTES) throw new MalformedFrameError(`frame length ${length} below the minimum ${MIN_BODY_BYTES}`);
    return length;
  }

  private guard<T>(fn: () => T): T {
    try {
      return fn();
    } catch (err) {
      this.failed = true;
      this.buf = Buffer.alloc(0);
      throw err;
    }
  }
}
