/** The agents' pino JSON lines in a compact, human form for the demo's terminal. */

/** Fields every line has; the rest is shown as key=value. */
const SKIP = new Set(['level', 'time', 'pid', 'node', 'msg', 'component', 'hostname']);

/** One pino JSON line as "time node level msg key=value ...". Non-JSON lines pass through. */
export function compactLogLine(line: string): string {
  let rec: Record<string, unknown>;
  try {
    rec = JSON.parse(line) as Record<string, unknown>;
  } catch {
    return line;
  }
  const time = typeof rec.time === 'string' ? rec.time.slice(11, 23) : '';
  const extras = Object.entries(rec)
    .filter(([k]) => !SKIP.has(k))
    .map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`)
    .join(' ');
  const level = rec.level === 'info' ? '' : ` ${String(rec.level).toUpperCase()}`;
  return `${time} ${String(rec.node ?? '?').padEnd(7)}${level} ${String(rec.msg ?? '')}${extras ? `  ${extras}` : ''}`;
}
