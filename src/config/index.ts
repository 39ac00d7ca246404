/** colo-agent configuration: one convict schema, strictly validated. See loader.ts for the entry point. */
export { loadConfig, type LoadConfigOptions } from './loader.js';
export { ConfigError, CONFIG_INVALID, formatProblem, type ConfigProblem } from './errors.js';
export { redactedConfig, redactedConfigJson, REDACTED } from './redact.js';
export { configReference, renderDefaultYaml } from './reference.js';
export { configWarnings } from './warnings.js';
export { configSchema, schemaLeaves } from './schema.js';
export { CROSS_KEY_RULES } from './rules.js';
export * from './types.js';
