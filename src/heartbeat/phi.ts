/**
 * Phi-accrual suspicion level (Hayashibara, Défago, Yared, Katayama 2004).
 *
 * Instead of a yes/no timeout, phi says how unlikely the current silence is given the
 * inter-arrival times seen so far: phi = -log10(1 - CDF(silence)). phi 1 means a 10% chance that
 * a live peer would stay silent this long, phi 3 means 0.1%, phi 8 means 1e-8.
 *
 * The CDF is the logistic approximation of the normal distribution that Akka and Cassandra use
 * (Bowling et al. 2009: F(y) ≈ 1 / (1 + e^(-y(1.5976 + 0.070566 y²))), |error| < 1.4e-4). Within 3
 * deviations phi matches the normal one to ~1%; further out the logistic tail is thinner, so phi
 * comes out higher (phi 10.8 instead of 9.0 at 6 deviations) and a threshold is crossed somewhat
 * earlier, never later. Thresholds are tuned against this curve, as in Akka. Because
 * 1 - F(y) = 1 / (1 + e^s) with s = y(1.5976 + 0.070566 y²), phi = log10(1 + e^s) = softplus(s) / ln 10,
 * which we evaluate in the log domain: it never underflows to -log10(0) = Infinity the way the
 * textbook formula does after a long silence. Results are capped at PHI_MAX all the same.
 *
 * The inverse (the silence at which phi reaches a threshold) is what lets the detector arm one timer
 * for the exact moment instead of polling phi.
 */

/** Largest phi ever reported. 1000 means "odds of 1e-1000": far beyond any sane threshold. */
export const PHI_MAX = 1000;

// Logistic approximation constants: s(y) = y * (B + A * y^2).
const A = 0.070566;
const B = 1.5976;
/** Used when a caller hands in a zero/negative standard deviation (the window never does). */
const TINY_STD_DEV_MS = 1e-6;

/** log(1 + e^x) without overflow for large x or precision loss for very negative x. */
function softplus(x: number): number {
  return x > 0 ? x + Math.log1p(Math.exp(-x)) : Math.log1p(Math.exp(x));
}

/** log(e^x - 1), the inverse of softplus, for x > 0. */
function softplusInverse(x: number): number {
  return x > 30 ? x + Math.log1p(-Math.exp(-x)) : Math.log(Math.expm1(x));
}

/** The real root y of A*y^3 + B*y = s (strictly increasing in y, so exactly one). */
function solveLogisticExponent(s: number): number {
  const q = Math.abs(s) / A;
  const p = B / A;
  // Cardano for y^3 + p*y - q = 0 with p > 0; written as u - p/(3u) so nothing cancels for large q.
  const u = Math.cbrt(q / 2 + Math.sqrt((q * q) / 4 + (p * p * p) / 27));
  let y = u - p / (3 * u);
  // One Newton step polishes the last bits lost when u is close to sqrt(p/3).
  y -= (A * y * y * y + B * y - Math.abs(s)) / (3 * A * y * y + B);
  return Math.sign(s) * y;
}

/**
 * phi for a silence of `silenceMs` when inter-arrival times have this mean and standard deviation.
 * Always finite and within [0, PHI_MAX]: a negative silence counts as 0, NaN or Infinity as an
 * endless silence (a broken measurement must never make a dead peer look alive).
 */
export function phiFromStats(silenceMs: number, meanMs: number, stdDevMs: number): number {
  const silence = Number.isNaN(silenceMs) ? Infinity : Math.max(0, silenceMs);
  const sd = stdDevMs > 0 ? stdDevMs : TINY_STD_DEV_MS;
  const y = (silence - meanMs) / sd;
  if (Number.isNaN(y)) return PHI_MAX; // mean was NaN or ±Infinity: nothing sensible to say
  const s = y * (B + A * y * y);
  const phi = softplus(s) / Math.LN10;
  return Number.isFinite(phi) ? Math.min(phi, PHI_MAX) : PHI_MAX;
}

/**
 * The silence (ms since the last arrival) at which phi reaches `phi`; the inverse of phiFromStats.
 * 0 when phi is already that high at zero silence. Finite for every finite mean and deviation.
 */
export function silenceForPhi(phi: number, meanMs: number, stdDevMs: number): number {
  const target = Math.min(Math.max(phi, 0), PHI_MAX);
  if (target <= phiFromStats(0, meanMs, stdDevMs)) return 0;
  const sd = stdDevMs > 0 ? stdDevMs : TINY_STD_DEV_MS;
  const y = solveLogisticExponent(softplusInverse(target * Math.LN10));
  return Math.max(0, meanMs + sd * y);
}

export interface ArrivalWindowOptions {
  /** The sender's nominal heartbeat interval; the prior used until real samples exist. */
  intervalMs: number;
  /** How many inter-arrival samples to keep (oldest dropped first). Default 100. */
  capacity?: number;
  /**
   * Floor for the standard deviation. A perfectly regular sender would otherwise give a
   * deviation near 0, and 1 ms of scheduling jitter would send phi through the roof.
   * Default intervalMs / 4.
   */
  minStdDevMs?: number;
  /**
   * Weight, in samples, of the prior (mean intervalMs, deviation intervalMs / 4). With n real
   * samples the prior counts as max(0, bootstrapSamples - n) extra samples, so the estimate slides
   * smoothly from the configured interval to the measured one. Default 5; 0 = no prior (then an
   * empty window behaves as if the prior were used, since there is nothing else).
   */
  bootstrapSamples?: number;
}

export interface ArrivalStats {
  meanMs: number;
  /** After the floor. */
  stdDevMs: number;
  /** Real samples in the window (the prior not counted). */
  samples: number;
}

/**
 * A bounded sliding window of inter-arrival times with the statistics phi needs.
 *
 * Only statistics live here; the caller owns the last arrival time and decides which gaps are
 * samples (the detector leaves out outages, which would otherwise inflate the mean for 100 beats).
 */
export class ArrivalWindow {
  private intervals: number[] = [];
  private opts: Required<ArrivalWindowOptions>;
  private cached: ArrivalStats | undefined;

  constructor(opts: ArrivalWindowOptions) {
    this.opts = ArrivalWindow.resolve(opts);
  }

  private static resolve(o: ArrivalWindowOptions): Required<ArrivalWindowOptions> {
    if (!(Number.isFinite(o.intervalMs) && o.intervalMs > 0)) {
      throw new RangeError(`arrival window: intervalMs must be a positive number, got ${o.intervalMs}`);
    }
    const r = {
      intervalMs: o.intervalMs,
      capacity: o.capacity ?? 100,
      minStdDevMs: o.minStdDevMs ?? o.intervalMs / 4,
      bootstrapSamples: o.bootstrapSamples ?? 5,
    };
    if (!(Number.isInteger(r.capacity) && r.capacity >= 2)) {
      throw new RangeError(`arrival window: capacity must be an integer >= 2, got ${r.capacity}`);
    }
    if (!(Number.isFinite(r.minStdDevMs) && r.minStdDevMs > 0)) {
      throw new RangeError(`arrival window: minStdDevMs must be a positive number, got ${r.minStdDevMs}`);
    }
    if (!(Number.isInteger(r.bootstrapSamples) && r.bootstrapSamples >= 0)) {
      throw new RangeError(
        `arrival window: bootstrapSamples must be a non-negative integer, got ${r.bootstrapSamples}`,
      );
    }
    return r;
  }

  /** Record one inter-arrival time. Negative or non-finite values are ignored. */
  add(intervalMs: number): void {
    if (!(Number.isFinite(intervalMs) && intervalMs >= 0)) return;
    this.intervals.push(intervalMs);
    if (this.intervals.length > this.opts.capacity) this.intervals.shift();
    this.cached = undefined;
  }

  /** Forget every sample (the prior stays). */
  reset(): void {
    this.intervals = [];
    this.cached = undefined;
  }

  /** Change options, keeping the newest samples that still fit. */
  configure(partial: Partial<ArrivalWindowOptions>): void {
    this.opts = ArrivalWindow.resolve({ ...this.opts, ...partial });
    if (this.intervals.length > this.opts.capacity) {
      this.intervals = this.intervals.slice(this.intervals.length - this.opts.capacity);
    }
    this.cached = undefined;
  }

  get size(): number {
    return this.intervals.length;
  }

  get capacity(): number {
    return this.opts.capacity;
  }

  /** The samples, oldest first (a copy). */
  samples(): number[] {
    return [...this.intervals];
  }

  stats(): ArrivalStats {
    if (this.cached) return this.cached;
    const n = this.intervals.length;
    const priorMean = this.opts.intervalMs;
    const priorVar = (this.opts.intervalMs / 4) ** 2;
    const k = n === 0 ? Math.max(1, this.opts.bootstrapSamples) : Math.max(0, this.opts.bootstrapSamples - n);
    let sum = k * priorMean;
    for (const x of this.intervals) sum += x;
    const mean = sum / (n + k);
    // Centred sums: no catastrophic cancellation from E[x²] - E[x]².
    let sq = k * (priorVar + (priorMean - mean) ** 2);
    for (const x of this.intervals) sq += (x - mean) ** 2;
    const stdDev = Math.max(Math.sqrt(sq / (n + k)), this.opts.minStdDevMs);
    this.cached = { meanMs: mean, stdDevMs: stdDev, samples: n };
    return this.cached;
  }

  /** phi after `silenceMs` without an arrival. */
  phi(silenceMs: number): number {
    const s = this.stats();
    return phiFromStats(silenceMs, s.meanMs, s.stdDevMs);
  }

  /** The silence after which phi reaches `phi`. */
  silenceForPhi(phi: number): number {
    const s = this.stats();
    return silenceForPhi(phi, s.meanMs, s.stdDevMs);
  }
}
