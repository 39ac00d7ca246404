/**
 * "Did you mean ...?" for unknown keys: typos in configuration keys are the most common mistake, and
 * `interval_ms` or `intervalMS` for `intervalMs` deserves a pointer rather than just "unknown".
 */

function normalize(key: string): string {
  return key.toLowerCase().replace(/[-_]/g, '');
}

function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      cur[j] = Math.min(prev[j]! + 1, cur[j - 1]! + 1, prev[j - 1]! + cost);
    }
    prev = cur;
  }
  return prev[b.length]!;
}

/**
 * The candidate closest to `input`: equal after ignoring case, "-" and "_", else within two edits
 * (and fewer than a third of its length, so short keys do not match everything). Ties go to the first.
 */
export function closestKey(input: string, candidates: Iterable<string>): string | undefined {
  const wanted = normalize(input);
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const candidate of candidates) {
    const d = editDistance(wanted, normalize(candidate));
    if (d < bestDistance) {
      best = candidate;
      bestDistance = d;
    }
  }
  const limit = Math.min(2, Math.floor(wanted.length / 3));
  return best !== undefined && bestDistance <= limit ? best : undefined;
}
