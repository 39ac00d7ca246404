/** The seeded generator lives in src/util/prng.ts (the fault proxy uses it); re-exported for tests. */
export { mulberry32 } from '../../src/util/prng.js';
