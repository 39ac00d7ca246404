/**
 * The campaign's one table: phase x fault -> trials, held, takeover ms p50/max against the bound,
 * and how to replay each failed trial. Pure text.
 */
import { FAULTS, PHASES, type Fault, type Phase } from './matrix.js';
import type { Trial } from './plan.js';
import type { TrialVerdict } from './verdict.js';

export interface TrialResult {
  trial: Trial;
  verdict: TrialVerdict;
  boundMs?: number | undefined;
}

function percentile(sorted: number[], q: number): number | undefined {
  if (sorted.length === 0) return undefined;
  // Nearest rank: the p50 of two trials is the lower one, not the max.
  return sorted[Math.max(0, Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1))];
}

const ms = (v: number | undefined) => (v === undefined ? '-' : String(Math.round(v)));

function pad(rows: string[][]): string[] {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows.map((r) => r.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd());
}

/** The table, then one line per failed trial (with its replay command), then the totals. */
export function campaignTable(results: TrialResult[], seed: number): string {
  const byCell = new Map<string, TrialResult[]>();
  for (const r of results) {
    const k = `${r.trial.phase}\t${r.trial.fault}`;
    byCell.set(k, [...(byCell.get(k) ?? []), r]);
  }
  const rows: string[][] = [['phase', 'fault', 'trials', 'held', 'takeover p50', 'max', 'bound', 'safety']];
  // In the matrix's order: phase, then fault, as the phases and faults read.
  const order = (k: string) => {
    const [p, f] = k.split('\t') as [Phase, Fault];
    return PHASES.indexOf(p) * 100 + FAULTS.indexOf(f);
  };
  for (const [k, rs] of [...byCell].sort(([x], [y]) => order(x) - order(y))) {
    const [phase, fault] = k.split('\t') as [string, string];
    const t = rs.map((r) => r.verdict.takeoverMs).filter((v): v is number => v !== undefined).sort((a, b) => a - b);
    const breaches = rs.filter((r) => r.verdict.safety.length > 0).length;
    rows.push([phase, fault, String(rs.length), String(rs.filter((r) => r.verdict.held).length), ms(percentile(t, 0.5)), ms(t.at(-1)), ms(rs[0]!.boundMs), breaches === 0 ? 'ok' : `${breaches} VIOLATED`]);
  }
  const lines = pad(rows);
  const failed = results.filter((r) => !r.verdict.held);
  if (failed.length > 0) {
    lines.push('', 'failed trials (replay: npm run campaign -- --seed SEED --only INDEX):');
    for (const r of failed) {
      const what = [...r.verdict.safety.map((s) => `SAFETY: ${s}`), ...r.verdict.liveness, ...(r.verdict.overBound ? [r.verdict.overBound] : [])];
      lines.push(`  #${r.trial.index} ${r.trial.phase} / ${r.trial.fault} (--seed ${seed} --only ${r.trial.index}): ${what.join('; ')}`);
    }
  }
  const violations = results.filter((r) => r.verdict.safety.length > 0).length;
  lines.push('', `${results.length} trials, ${results.length - failed.length} held, ${violations} with safety violations, ${failed.length - violations} liveness failures or takeovers over their bound; seed ${seed}`);
  return `${lines.join('\n')}\n`;
}
