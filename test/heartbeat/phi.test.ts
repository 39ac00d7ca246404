import t from 'tap';
import { ArrivalWindow, PHI_MAX, phiFromStats, silenceForPhi } from '../../src/heartbeat/phi.js';

/** The exact normal tail, for comparing the logistic approximation against. */
function normalPhi(y: number): number {
  // 1 - Φ(y) = erfc(y/√2)/2; a series/continued fraction is overkill: integrate numerically.
  const steps = 200000;
  const hi = 40;
  const h = (hi - y) / steps;
  let sum = 0;
  for (let i = 0; i <= steps; i++) {
    const x = y + i * h;
    const w = i === 0 || i === steps ? 0.5 : 1;
    sum += w * Math.exp((-x * x) / 2);
  }
  return -Math.log10((sum * h) / Math.sqrt(2 * Math.PI));
}

t.test('phi grows with silence', async (t) => {
  let prev = -1;
  for (let silence = 0; silence <= 2000; silence += 5) {
    const phi = phiFromStats(silence, 100, 25);
    t.ok(phi >= prev, `phi(${silence}) = ${phi} does not fall below ${prev}`);
    prev = phi;
  }
  t.ok(phiFromStats(300, 100, 25) > phiFromStats(200, 100, 25) + 1, 'and grows by a lot');
});

t.test('phi at the mean is log10(2) and matches the normal tail closely', async (t) => {
  t.ok(Math.abs(phiFromStats(100, 100, 25) - Math.log10(2)) < 1e-12);
  for (const y of [0.5, 1, 2, 3]) {
    const approx = phiFromStats(100 + 25 * y, 100, 25);
    const exact = normalPhi(y);
    t.ok(Math.abs(approx - exact) / exact < 0.02, `y=${y}: logistic ${approx.toFixed(4)} vs normal ${exact.toFixed(4)}`);
  }
  // Further out the logistic tail is thinner than the normal one: phi comes out higher, so a
  // threshold is crossed a little earlier, never later.
  for (const y of [4, 5, 6]) {
    const approx = phiFromStats(100 + 25 * y, 100, 25);
    const exact = normalPhi(y);
    t.ok(approx >= exact && approx < exact * 1.25, `y=${y}: logistic ${approx.toFixed(4)} >= normal ${exact.toFixed(4)}`);
  }
});

t.test('never NaN or Infinity, always within [0, PHI_MAX]', async (t) => {
  const cases: Array<[number, number, number]> = [
    [Infinity, 100, 25],
    [NaN, 100, 25],
    [1e308, 100, 25],
    [-1e308, 100, 25],
    [-5, 100, 25],
    [0, 100, 25],
    [100, 100, 0],
    [101, 100, 0],
    [99, 100, 0],
    [1e6, 100, 1e-300],
    [100, NaN, 25],
    [100, Infinity, 25],
    [0, 0, 0],
  ];
  for (const [s, m, sd] of cases) {
    const phi = phiFromStats(s, m, sd);
    t.ok(Number.isFinite(phi) && phi >= 0 && phi <= PHI_MAX, `phi(${s}, ${m}, ${sd}) = ${phi}`);
  }
  t.equal(phiFromStats(1e308, 100, 25), PHI_MAX, 'an endless silence is capped, not Infinity');
  t.equal(phiFromStats(NaN, 100, 25), PHI_MAX, 'NaN silence never makes a peer look alive');
  for (const p of [0, 1e-9, 1, 8, PHI_MAX, PHI_MAX * 10, Infinity, -1]) {
    const s = silenceForPhi(p, 100, 25);
    t.ok(Number.isFinite(s) && s >= 0, `silenceForPhi(${p}) = ${s}`);
  }
});

t.test('silenceForPhi inverts phiFromStats', async (t) => {
  for (const [mean, sd] of [
    [100, 25],
    [50, 1],
    [1000, 300],
    [10, 0.01],
  ] as const) {
    for (const target of [0.35, 0.5, 1, 2, 3, 5, 8, 12, 16, 50, 100, 500, PHI_MAX]) {
      const silence = silenceForPhi(target, mean, sd);
      const back = phiFromStats(silence, mean, sd);
      t.ok(Math.abs(back - target) <= 1e-9 * Math.max(1, target), `mean ${mean} sd ${sd}: phi ${target} -> ${silence} ms -> ${back}`);
    }
  }
  t.ok(phiFromStats(0, 10, 100) > 0.2);
  t.equal(silenceForPhi(0.2, 10, 100), 0, 'a phi already reached at zero silence needs no silence');
});

t.test('regular arrivals give a low phi at the interval, and 1 ms of jitter does not explode it', async (t) => {
  const w = new ArrivalWindow({ intervalMs: 100 });
  for (let i = 0; i < 100; i++) w.add(100);
  const s = w.stats();
  t.equal(s.meanMs, 100);
  t.equal(s.stdDevMs, 25, 'the floor (intervalMs / 4) replaces a zero deviation');
  t.ok(w.phi(100) < 0.5, `phi at the interval is ${w.phi(100)}`);
  t.ok(w.phi(101) < 0.5, `phi 1 ms late is ${w.phi(101)}`);
  t.ok(w.phi(300) > 8, `phi after three intervals is ${w.phi(300)}`);

  const noFloor = new ArrivalWindow({ intervalMs: 100, minStdDevMs: 0.001 });
  for (let i = 0; i < 100; i++) noFloor.add(100);
  t.ok(noFloor.phi(101) > 100, 'without a floor the same 1 ms would look like a dead peer');
});

t.test('the window is bounded and keeps the newest samples', async (t) => {
  const w = new ArrivalWindow({ intervalMs: 100, capacity: 100 });
  for (let i = 0; i < 150; i++) w.add(1000);
  for (let i = 0; i < 100; i++) w.add(100);
  t.equal(w.size, 100);
  t.equal(w.stats().meanMs, 100, 'the 150 old samples are gone');
  t.same(w.samples(), new Array(100).fill(100));

  w.configure({ capacity: 10 });
  w.add(200);
  t.equal(w.size, 10);
  t.equal(w.samples()[9], 200);
  t.ok(Math.abs(w.stats().meanMs - 110) < 1e-9);

  w.reset();
  t.equal(w.size, 0);
});

t.test('bootstraps from intervalMs until enough samples exist', async (t) => {
  const w = new ArrivalWindow({ intervalMs: 200, bootstrapSamples: 5 });
  t.same(w.stats(), { meanMs: 200, stdDevMs: 50, samples: 0 }, 'empty: the prior alone');
  w.add(100);
  const one = w.stats();
  t.ok(Math.abs(one.meanMs - (4 * 200 + 100) / 5) < 1e-9, 'one sample blends with four prior samples');
  for (let i = 0; i < 4; i++) w.add(100);
  t.equal(w.stats().meanMs, 100, 'five samples: the prior is gone');
  t.equal(w.stats().samples, 5);

  const noPrior = new ArrivalWindow({ intervalMs: 200, bootstrapSamples: 0 });
  t.equal(noPrior.stats().meanMs, 200, 'an empty window still has an estimate');
  noPrior.add(80);
  t.equal(noPrior.stats().meanMs, 80);
});

t.test('ignores nonsense samples', async (t) => {
  const w = new ArrivalWindow({ intervalMs: 100 });
  w.add(NaN);
  w.add(-1);
  w.add(Infinity);
  t.equal(w.size, 0);
});

t.test('rejects nonsense options', async (t) => {
  t.throws(() => new ArrivalWindow({ intervalMs: 0 }), RangeError);
  t.throws(() => new ArrivalWindow({ intervalMs: NaN }), RangeError);
  t.throws(() => new ArrivalWindow({ intervalMs: 100, capacity: 1 }), RangeError);
  t.throws(() => new ArrivalWindow({ intervalMs: 100, capacity: 10.5 }), RangeError);
  t.throws(() => new ArrivalWindow({ intervalMs: 100, minStdDevMs: 0 }), RangeError);
  t.throws(() => new ArrivalWindow({ intervalMs: 100, bootstrapSamples: -1 }), RangeError);
  const w = new ArrivalWindow({ intervalMs: 100 });
  t.throws(() => w.configure({ capacity: 0 }), RangeError);
  t.equal(w.capacity, 100, 'a refused configure changes nothing');
});
