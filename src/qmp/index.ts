/** The QMP client's public surface. */
export { parseQmpAddress, formatQmpAddress, MAX_UNIX_PATH_BYTES, type QmpAddress } from './address.js';
export { QmpClient, QMP_CLIENT_DEFAULTS, type QmpClientOptions, type ExecuteOptions, type WaitForEventOptions } from './client.js';
export * from './errors.js';
export type * from './events.js';
export { timestampToMs, type QmpGreeting, type QmpTimestamp } from './messages.js';
export { compareQemuVersion, qemuVersionAtLeast, formatQemuVersion, type QemuVersion } from './version.js';
