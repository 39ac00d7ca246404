/**
 * A TCP port that was free a moment ago (src/util/free-port.ts). Whoever binds it later may lose
 * it to another process meanwhile; the helpers that start agents retry with new ports when that
 * happens (AgentPortInUseError).
 */
export { freePort } from '../../src/util/free-port.js';
