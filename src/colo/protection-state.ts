/**
 * What an operator's view must not forget when the agent restarts: since when the guest has run
 * without a replica (colo_agent_unprotected_seconds, status) and the last failover. The journal
 * holds only the latest decision (a resume overwrites the failover before it), so these live in
 * a small state file of their own, `protection.json` in node.stateDir, written atomically and
 * durably. Wall-clock times: they must survive the process, whose monotonic clock starts over.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from '../log.js';
import { writeFileAtomic } from '../util/atomic-file.js';

export const PROTECTION_FILE_NAME = 'protection.json';

export interface LastFailoverRecord {
  sequence: string;
  trigger: string;
  ok: boolean;
  durationMs: number;
  error?: string;
  /** Wall-clock ISO time it ended. */
  at?: string;
}

export interface ProtectionState {
  /** Wall-clock ISO time the guest became unprotected; absent while it is replicated (or not ours). */
  unprotectedSince?: string;
  lastFailover?: LastFailoverRecord;
}

/** The file's content; an absent or unreadable file is an empty state (logged), never an error. */
export function readProtectionState(stateDir: string, log?: Logger): ProtectionState {
  let text: string;
  try {
    text = readFileSync(join(stateDir, PROTECTION_FILE_NAME), 'utf8');
  } catch {
    return {};
  }
  try {
    const v = JSON.parse(text) as Record<string, unknown>;
    const out: ProtectionState = {};
    if (typeof v.unprotectedSince === 'string' && !Number.isNaN(Date.parse(v.unprotectedSince))) out.unprotectedSince = v.unprotectedSince;
    const f = v.lastFailover as Record<string, unknown> | undefined;
    if (f && typeof f.sequence === 'string' && typeof f.ok === 'boolean' && typeof f.durationMs === 'number') {
      out.lastFailover = {
        sequence: f.sequence,
        trigger: typeof f.trigger === 'string' ? f.trigger : 'unknown',
        ok: f.ok,
        durationMs: f.durationMs,
        ...(typeof f.error === 'string' && { error: f.error }),
        ...(typeof f.at === 'string' && { at: f.at }),
      };
    }
    return out;
  } catch (err) {
    log?.warn({ err, file: PROTECTION_FILE_NAME }, 'unreadable protection state: unprotected time and last failover start over');
    return {};
  }
}

export function writeProtectionState(stateDir: string, state: ProtectionState): Promise<void> {
  return writeFileAtomic(stateDir, PROTECTION_FILE_NAME, `${JSON.stringify(state)}\n`);
}
