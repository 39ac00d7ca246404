/**
 * The witness's two messages, carried as heartbeat reserved types over the same authenticated
 * links (so the witness needs no second protocol, key or port):
 *
 *   arbitration-request (18)  agent -> witness  {"requestId","action"}
 *   arbitration-grant   (19)  witness -> agent  either a verdict on one request:
 *                               {"kind":"verdict","requestId","granted":true,"newEpoch","holder"}
 *                               {"kind":"verdict","requestId","granted":false,"reason","retryable","witnessEpoch"}
 *                             or the witness's view, sent on connect and after every change:
 *                               {"kind":"state","witnessEpoch","holder"?,"leaseMs"}
 *
 * The sender's own epoch travels in every frame's envelope (messages.ts), so a request does not
 * repeat it. Bodies are validated strictly here: the links hand reserved bodies on as plain objects.
 */
import { ColoAgentError } from '../errors.js';
import type { ArbitrationAction } from './arbiter.js';

export class WitnessMessageError extends ColoAgentError {
  constructor(message: string) {
    super('ERR_WITNESS_MESSAGE', message);
  }
}

export interface ArbitrationRequestBody {
  requestId: string;
  action: ArbitrationAction;
}

export type WitnessVerdictBody =
  | { kind: 'verdict'; requestId: string; granted: true; newEpoch: number; holder: string }
  | { kind: 'verdict'; requestId: string; granted: false; reason: string; retryable: boolean; witnessEpoch: number };

export interface WitnessStateBody {
  kind: 'state';
  witnessEpoch: number;
  holder?: string;
  leaseMs: number;
}

export type WitnessGrantBody = WitnessVerdictBody | WitnessStateBody;

const REQUEST_ID_RE = /^[0-9a-f]{16}$/;
const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;
const ACTIONS: readonly string[] = ['takeover', 'continue'];

type Obj = Record<string, unknown>;

function keys(o: Obj, allowed: readonly string[]): void {
  for (const k of Object.keys(o)) if (!allowed.includes(k)) throw new WitnessMessageError(`unexpected field ${JSON.stringify(k).slice(0, 40)}`);
}

function epochOf(o: Obj, k: string): number {
  const v = o[k];
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) throw new WitnessMessageError(`${k} is not an epoch`);
  return v;
}

function requestIdOf(o: Obj): string {
  if (typeof o.requestId !== 'string' || !REQUEST_ID_RE.test(o.requestId)) throw new WitnessMessageError('requestId is not 16 hex digits');
  return o.requestId;
}

function holderOf(o: Obj): string {
  if (typeof o.holder !== 'string' || !NAME_RE.test(o.holder)) throw new WitnessMessageError('holder is not a node name');
  return o.holder;
}

export function parseArbitrationRequest(o: Obj): ArbitrationRequestBody {
  keys(o, ['requestId', 'action']);
  const requestId = requestIdOf(o);
  if (typeof o.action !== 'string' || !ACTIONS.includes(o.action)) throw new WitnessMessageError('action is not takeover or continue');
  return { requestId, action: o.action as ArbitrationAction };
}

export function parseWitnessGrant(o: Obj): WitnessGrantBody {
  if (o.kind === 'state') {
    keys(o, ['kind', 'witnessEpoch', 'holder', 'leaseMs']);
    const leaseMs = o.leaseMs;
    if (typeof leaseMs !== 'number' || !Number.isSafeInteger(leaseMs) || leaseMs <= 0) throw new WitnessMessageError('leaseMs is not a positive integer');
    const body: WitnessStateBody = { kind: 'state', witnessEpoch: epochOf(o, 'witnessEpoch'), leaseMs };
    if (o.holder !== undefined) body.holder = holderOf(o);
    return body;
  }
  if (o.kind !== 'verdict') throw new WitnessMessageError('kind is not verdict or state');
  const requestId = requestIdOf(o);
  if (o.granted === true) {
    keys(o, ['kind', 'requestId', 'granted', 'newEpoch', 'holder']);
    return { kind: 'verdict', requestId, granted: true, newEpoch: epochOf(o, 'newEpoch'), holder: holderOf(o) };
  }
  if (o.granted !== false) throw new WitnessMessageError('granted is not a boolean');
  keys(o, ['kind', 'requestId', 'granted', 'reason', 'retryable', 'witnessEpoch']);
  if (typeof o.reason !== 'string' || o.reason.length > 300 || /[\u0000-\u001f\u007f-\u009f]/u.test(o.reason)) {
    throw new WitnessMessageError('reason is not a short single-line string');
  }
  if (typeof o.retryable !== 'boolean') throw new WitnessMessageError('retryable is not a boolean');
  return { kind: 'verdict', requestId, granted: false, reason: o.reason, retryable: o.retryable, witnessEpoch: epochOf(o, 'witnessEpoch') };
}
