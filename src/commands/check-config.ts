/**
 * `colo-agent check-config --config FILE`: validate, then print the effective config (secrets
 * redacted) so an operator sees exactly what the agent would run with. Also checks the key file
 * (readable, long enough) without ever printing it.
 */
import { loadConfig, redactedConfigJson, type AgentConfig } from '../config/index.js';
import { readKeyFile } from '../heartbeat/key.js';

export interface ConfigSources {
  files: string[];
  sets: string[];
  env?: NodeJS.ProcessEnv;
}

/** Loads the config; warnings go to the given sink (stderr in the CLI). */
export function loadFromSources(src: ConfigSources, warn: (msg: string) => void, opts: { riskWarnings?: boolean } = {}): AgentConfig {
  // loadConfig reports both env-variable typos and configWarnings() through onWarning.
  return loadConfig({ files: src.files, sets: src.sets, env: src.env ?? process.env, onWarning: warn, ...(opts.riskWarnings === false && { riskWarnings: false }) });
}

/** The key is needed unless the operator chose insecure mode; errors name the file, never its bytes. */
export async function loadHeartbeatKey(cfg: AgentConfig): Promise<Buffer | undefined> {
  if (cfg.heartbeat.insecure) return undefined;
  return readKeyFile(cfg.heartbeat.keyFile);
}

export async function checkConfig(src: ConfigSources, out: (s: string) => void, warn: (s: string) => void): Promise<void> {
  const cfg = loadFromSources(src, warn);
  await loadHeartbeatKey(cfg);
  out(redactedConfigJson(cfg));
}
