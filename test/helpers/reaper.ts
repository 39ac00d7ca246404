/** The reaper lives in src/util/reaper.ts (the demo uses it too); re-exported for the test helpers. */
export { reapOnDeath, release } from '../../src/util/reaper.js';
