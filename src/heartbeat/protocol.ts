/**
 * Heartbeat wire protocol constants: the frame layout and the message type numbers.
 *
 * Frame (all integers big-endian):
 *
 *   offset  size  field
 *   0       4     length   u32: number of bytes that follow this field (version .. mac)
 *   4       1     version  PROTOCOL_VERSION
 *   5       1     type     MessageType
 *   6       8     session  the sender's random session id (fresh per agent process)
 *   14      8     seq      u64 sequence number, one counter per sending process across all its links
 *   22      n     payload  compact JSON object (see messages.ts), UTF-8
 *   22+n    32    mac      HMAC-SHA256 over bytes 0 .. 22+n (the length prefix included)
 *
 * HELLO frames are MAC'd with the shared key; every later frame on a connection with the
 * per-connection key derived from both HELLO nonces (auth.ts).
 */

export const PROTOCOL_VERSION = 1;

export const LENGTH_BYTES = 4;
export const SESSION_BYTES = 8;
export const SEQ_BYTES = 8;
export const MAC_BYTES = 32;
export const NONCE_BYTES = 16;
/** length + version + type + session + seq. */
export const HEADER_BYTES = LENGTH_BYTES + 1 + 1 + SESSION_BYTES + SEQ_BYTES;
/** The smallest legal value of the length field: an empty payload. */
export const MIN_BODY_BYTES = HEADER_BYTES - LENGTH_BYTES + MAC_BYTES;
/** Domain-separation label of the per-connection key derivation. */
export const KDF_LABEL = 'colo-agent/1';

/**
 * Message type numbers. 1-4 are implemented here; 16-20 are reserved for later issues and are
 * delivered as generic `message` events with a JSON object body until those issues define them.
 * Any other number is rejected with reason `unknown-type`. Numbers are never reused.
 */
export const MessageType = {
  HELLO: 1,
  HEARTBEAT: 2,
  ACK: 3,
  GOODBYE: 4,
  /** Reserved: "my local QEMU is gone", the fast failover path (no need to wait for the detector). */
  PEER_QEMU_GONE: 16,
  /** Reserved: "I am taking over as primary now". */
  FAILOVER_ANNOUNCE: 17,
  /** Reserved: ask the peer / an arbiter for the right to fail over. */
  ARBITRATION_REQUEST: 18,
  /** Reserved: the answer granting that right. */
  ARBITRATION_GRANT: 19,
  /** Reserved: "my QEMU is waiting as a new secondary; start resync". */
  READY_TO_BE_SECONDARY: 20,
} as const;

export type MessageTypeCode = (typeof MessageType)[keyof typeof MessageType];

/** Names of the reserved message types, as used in `message` events and `HeartbeatLinks.send()`. */
export const RESERVED_TYPES = {
  'peer-qemu-gone': MessageType.PEER_QEMU_GONE,
  'failover-announce': MessageType.FAILOVER_ANNOUNCE,
  'arbitration-request': MessageType.ARBITRATION_REQUEST,
  'arbitration-grant': MessageType.ARBITRATION_GRANT,
  'ready-to-be-secondary': MessageType.READY_TO_BE_SECONDARY,
} as const;

export type ReservedTypeName = keyof typeof RESERVED_TYPES;

const reservedByCode = new Map<number, ReservedTypeName>(
  Object.entries(RESERVED_TYPES).map(([name, code]) => [code, name as ReservedTypeName]),
);

export function reservedTypeName(code: number): ReservedTypeName | undefined {
  return reservedByCode.get(code);
}

export function isKnownType(code: number): code is MessageTypeCode {
  return code >= MessageType.HELLO && code <= MessageType.GOODBYE || reservedByCode.has(code);
}
