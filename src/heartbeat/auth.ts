/**
 * Key material of the heartbeat protocol: the shared key, the insecure stand-in, and the
 * per-connection key.
 *
 * Per-connection key = HMAC-SHA256(sharedKey, "colo-agent/1" || dialerNonce || listenerNonce).
 * Both nonces are fresh per connection, so a frame recorded on one connection does not verify on
 * any other, and an old HELLO replayed by an attacker leads nowhere: the attacker cannot produce
 * the first frame under the new connection key, which is what makes a link come up.
 *
 * Insecure mode is a fixed all-zero shared key, not "no MAC": frames keep the same layout and
 * still catch corruption, and a node with a real key recognises an insecure peer's frames (they
 * verify under the zero key) and refuses them with `auth-mismatch` instead of failing silently.
 * A real key that equals the zero key is refused, so the two modes can never be confused.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { KDF_LABEL, MAC_BYTES, NONCE_BYTES, SESSION_BYTES } from './protocol.js';

export const MIN_KEY_BYTES = 32;

/** The shared key of insecure mode. Frozen copy semantics: never hand this Buffer out for writing. */
export const INSECURE_KEY: Buffer = Buffer.alloc(MIN_KEY_BYTES);

/** Why a key is unusable, or undefined if it is fine. Never mentions the key bytes. */
export function sharedKeyProblem(key: Buffer): 'short' | 'weak' | undefined {
  if (key.length < MIN_KEY_BYTES) return 'short';
  if (key.every((b) => b === 0)) return 'weak';
  return undefined;
}

export function isInsecureKey(key: Buffer): boolean {
  return key.length === INSECURE_KEY.length && timingSafeEqual(key, INSECURE_KEY);
}

export function computeMac(key: Buffer, data: Buffer): Buffer {
  return createHmac('sha256', key).update(data).digest();
}

/** Constant-time comparison of `mac` with HMAC(key, data). */
export function macMatches(key: Buffer, data: Buffer, mac: Buffer): boolean {
  if (mac.length !== MAC_BYTES) return false;
  return timingSafeEqual(computeMac(key, data), mac);
}

export function deriveConnectionKey(sharedKey: Buffer, dialerNonce: Buffer, listenerNonce: Buffer): Buffer {
  if (dialerNonce.length !== NONCE_BYTES || listenerNonce.length !== NONCE_BYTES) {
    throw new RangeError(`nonces must be ${NONCE_BYTES} bytes`);
  }
  return createHmac('sha256', sharedKey)
    .update(Buffer.from(KDF_LABEL, 'ascii'))
    .update(dialerNonce)
    .update(listenerNonce)
    .digest();
}

/** A fresh session id, as the 16-hex-digit string the rest of the code uses. */
export function newSessionId(): string {
  return randomBytes(SESSION_BYTES).toString('hex');
}

export function newNonce(): Buffer {
  return randomBytes(NONCE_BYTES);
}
