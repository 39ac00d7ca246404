/**
 * Errors the etcd arbiter raises on purpose. request() never rejects: these end up as the
 * `reason` of a denial (message only, never a stack); start() and the constructor throw the
 * options error for a configuration that cannot work.
 */
import { ColoAgentError } from '../errors.js';

/** The options handed to EtcdArbiter cannot work (no endpoints, TTL below 1 s, ...). */
export class EtcdArbiterOptionsError extends ColoAgentError {
  constructor(message: string) {
    super('ERR_ETCD_ARBITER_OPTIONS', message);
  }
}

/** An etcd call did not answer in time (the server may be down, partitioned or stopped). */
export class EtcdCallTimeoutError extends ColoAgentError {
  constructor(what: string, ms: number) {
    super('ERR_ETCD_CALL_TIMEOUT', `etcd ${what} did not answer within ${ms} ms`);
  }
}

/** The epoch record in etcd is not the JSON {epoch, holder} we write: someone else wrote the key. */
export class EtcdEpochRecordInvalidError extends ColoAgentError {
  constructor(key: string, detail: string) {
    super('ERR_ETCD_EPOCH_RECORD_INVALID', `the epoch record ${key} is not valid: ${detail}`);
  }
}

/** The arbiter was closed (or never started) while a call was under way. */
export class EtcdArbiterClosedError extends ColoAgentError {
  constructor() {
    super('ERR_ETCD_ARBITER_CLOSED', 'the etcd arbiter is closed');
  }
}
