/**
 * The documented COLO topology as data (command lines, drive_add, per-version decisions) lives in
 * src/qemu/colo-cmdline.ts, shared with the demo and the agent's launcher; re-exported for tests.
 */
export * from '../../src/qemu/colo-cmdline.js';
