import t from 'tap';
import { DEFAULT_REPLAY_WINDOW, ReplayWindow } from '../../src/heartbeat/replay-window.js';

t.test('in order: every fresh number is accepted once', async (t) => {
  const w = new ReplayWindow(64);
  t.equal(w.highest, undefined);
  for (let s = 1; s <= 200; s++) t.equal(w.accept(s), 'ok');
  t.equal(w.highest, 200);
  t.equal(w.accept(200), 'duplicate');
});

t.test('reordered within the window is accepted, each number once', async (t) => {
  const w = new ReplayWindow(64);
  t.equal(w.accept(10), 'ok');
  t.equal(w.accept(5), 'ok', 'older but inside');
  t.equal(w.accept(7), 'ok');
  t.equal(w.accept(5), 'duplicate');
  t.equal(w.accept(12), 'ok');
  t.equal(w.accept(11), 'ok');
  t.equal(w.accept(11), 'duplicate');
  t.equal(w.highest, 12);
});

t.test('older than the window is too old', async (t) => {
  const w = new ReplayWindow(64);
  w.accept(100);
  t.equal(w.accept(37), 'ok', 'top - 63 is the oldest inside');
  t.equal(w.accept(36), 'too-old', 'top - 64 is out');
  t.equal(w.accept(0), 'too-old');
  t.equal(w.accept(-1), 'too-old', 'negative');
  t.equal(w.accept(1.5), 'too-old', 'not an integer');
});

t.test('a jump wider than the window forgets everything before it', async (t) => {
  const w = new ReplayWindow(64);
  for (let s = 1; s <= 64; s++) w.accept(s);
  t.equal(w.accept(1000), 'ok');
  t.equal(w.accept(64), 'too-old');
  t.equal(w.accept(999), 'ok', 'the slot that 64 used is free for 999... ring reuse is correct');
  t.equal(w.accept(1000 - 63), 'ok');
});

t.test('check() does not record', async (t) => {
  const w = new ReplayWindow(32);
  t.equal(w.check(5), 'ok');
  t.equal(w.check(5), 'ok');
  w.accept(5);
  t.equal(w.check(5), 'duplicate');
});

t.test('matches a reference model on a long random trace', async (t) => {
  for (const size of [32, 64, DEFAULT_REPLAY_WINDOW]) {
    const w = new ReplayWindow(size);
    const seen = new Set<number>();
    let top = -1;
    let seed = 12345 + size;
    const rnd = (): number => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
    let mismatches = 0;
    for (let i = 0; i < 20000; i++) {
      // mostly forward with jitter, sometimes replays of old numbers, sometimes jumps
      const r = rnd();
      const s = r < 0.7 ? Math.max(0, top + Math.floor(rnd() * 8) - 3) : r < 0.95 ? Math.max(0, top - Math.floor(rnd() * size * 1.5)) : Math.max(0, top + Math.floor(rnd() * size * 2));
      const expected = s > top ? 'ok' : s <= top - size ? 'too-old' : seen.has(s) ? 'duplicate' : 'ok';
      const got = w.accept(s);
      if (got !== expected) mismatches++;
      if (expected === 'ok') {
        seen.add(s);
        top = Math.max(top, s);
      }
    }
    t.equal(mismatches, 0, `size ${size}`);
  }
});

t.test('size must be a multiple of 32', async (t) => {
  t.throws(() => new ReplayWindow(0), RangeError);
  t.throws(() => new ReplayWindow(48), RangeError);
  t.doesNotThrow(() => new ReplayWindow(96));
});
