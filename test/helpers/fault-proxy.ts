/**
 * The fault-injecting TCP proxy lives in src/util/fault-proxy.ts (the demo's partition drill uses
 * it); re-exported here for the tests and benchmarks.
 */
export * from '../../src/util/fault-proxy.js';
