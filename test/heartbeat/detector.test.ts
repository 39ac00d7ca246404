import t from 'tap';
import { ColoAgentError } from '../../src/errors.js';
import {
  DetectorOptionsError,
  FailureDetector,
  resolveDetectorOptions,
  type FailureDetectorOptions,
  type StateChange,
} from '../../src/heartbeat/detector.js';
import { createLogger } from '../../src/log.js';
import { FakeClock } from '../helpers/fake-clock.js';

/** The part of a tap Test that setup() needs. */
type Test = { teardown: (fn: () => void) => void };

/** 100 ms x 3, suspect after 2 intervals, 3 beats to recover, 1 s startup grace; clock starts at 1000. */
function setup(t: Test, opts: Partial<FailureDetectorOptions> = {}) {
  const clock = new FakeClock(1000);
  const det = new FailureDetector({
    intervalMs: 100,
    missThreshold: 3,
    suspectMisses: 2,
    recoverBeats: 3,
    startupGraceMs: 1000,
    clock,
    ...opts,
  });
  const events: StateChange[] = [];
  det.on('state', (e) => events.push(e));
  t.teardown(() => det.stop());
  return { clock, det, events };
}

/** Beat every `every` ms, `n` times (the first beat right now). */
function beatRegularly(clock: FakeClock, det: FailureDetector, n: number, every: number): void {
  for (let i = 0; i < n; i++) {
    if (i > 0) clock.advance(every);
    det.beat();
  }
}

/** Bring a fresh detector up, then let it time out: state down, at most one timer pending. */
function goDown(clock: FakeClock, det: FailureDetector): void {
  det.beat();
  clock.advance(det.options.intervalMs * det.options.missThreshold);
}

t.test('100 ms x 3: suspect at last beat + 200, down at exactly last beat + 300', async (t) => {
  const { clock, det, events } = setup(t);
  beatRegularly(clock, det, 10, 100);
  const last = clock.now();
  t.equal(det.lastBeatAt, last);
  t.same(
    events.map((e) => [e.from, e.to, e.reason]),
    [['unknown', 'up', 'first-contact']],
  );

  clock.advance(199);
  t.equal(det.state, 'up', '199 ms of silence: still up');
  clock.advance(1);
  t.equal(det.state, 'suspect');
  t.match(events[1], { from: 'up', to: 'suspect', at: last + 200, silentForMs: 200, reason: 'suspect-timeout' });

  clock.advance(99);
  t.equal(det.state, 'suspect', '299 ms: not down yet');
  clock.advance(1);
  t.equal(det.state, 'down');
  t.match(events[2], { from: 'suspect', to: 'down', at: last + 300, silentForMs: 300, reason: 'timeout' });
  t.equal(events.length, 3);
  t.equal(clock.pendingCount, 0, 'nothing to wait for while down');
});

t.test('50 ms x 3: down at exactly last beat + 150 (suspect defaults to half the timeout)', async (t) => {
  const { clock, det, events } = setup(t, { intervalMs: 50, missThreshold: 3, suspectMisses: undefined });
  t.equal(det.options.suspectMisses, 1.5);
  beatRegularly(clock, det, 20, 50);
  const last = clock.now();
  clock.advance(74);
  t.equal(det.state, 'up');
  clock.advance(1);
  t.match(events.at(-1), { to: 'suspect', at: last + 75 });
  clock.advance(74);
  t.equal(det.state, 'suspect');
  clock.advance(1);
  t.match(events.at(-1), { from: 'suspect', to: 'down', at: last + 150, silentForMs: 150, reason: 'timeout' });
});

t.test('a beat clears a suspicion at once and restarts the deadlines', async (t) => {
  const { clock, det, events } = setup(t);
  det.beat();
  clock.advance(250);
  t.equal(det.state, 'suspect');
  t.equal(det.beat(), true);
  t.equal(det.state, 'up');
  t.match(events.at(-1), { from: 'suspect', to: 'up', reason: 'beat', silentForMs: 250, at: clock.now() });
  const last = clock.now();
  clock.advance(299);
  t.not(det.state, 'down');
  clock.advance(1);
  t.match(events.at(-1), { to: 'down', at: last + 300 });
  const s = det.stats();
  t.equal(s.suspicions, 2);
  t.equal(s.suspicionsCleared, 1);
  t.equal(s.downs, 1);
  t.same(s.transitions, { 'unknown->up': 1, 'up->suspect': 2, 'suspect->up': 1, 'suspect->down': 1 });
});

t.test('down -> up needs recoverBeats consecutive beats', async (t) => {
  const { clock, det, events } = setup(t);
  goDown(clock, det);
  t.equal(det.state, 'down');
  t.same(det.recoveryProgress(), { beats: 0, needed: 3 });

  clock.advance(10_000); // a long silence, then beats out of the blue
  det.beat();
  t.equal(det.state, 'down', 'one beat is not enough');
  t.same(det.recoveryProgress(), { beats: 1, needed: 3 });
  t.equal(clock.pendingCount, 0, 'recovering needs no timer');
  clock.advance(100);
  det.beat();
  t.equal(det.state, 'down');
  t.same(det.recoveryProgress(), { beats: 2, needed: 3 });
  clock.advance(100);
  det.beat();
  t.equal(det.state, 'up');
  t.match(events.at(-1), { from: 'down', to: 'up', reason: 'recovered', silentForMs: 100 });
  t.equal(det.recoveryProgress(), undefined);
  t.equal(det.stats().recoveries, 1);

  // Back to normal deadlines.
  const last = clock.now();
  clock.advance(300);
  t.match(events.at(-1), { to: 'down', at: last + 300 });
});

t.test('recovery progress lapses after a timeout of silence', async (t) => {
  const { clock, det } = setup(t);
  goDown(clock, det);
  det.beat();
  clock.advance(100);
  det.beat();
  t.same(det.recoveryProgress(), { beats: 2, needed: 3 });
  clock.advance(299);
  t.same(det.recoveryProgress(), { beats: 2, needed: 3 });
  clock.advance(1);
  t.same(det.recoveryProgress(), { beats: 0, needed: 3 });
  det.beat();
  t.equal(det.state, 'down', 'the beat after the lapse starts a new run');
  t.same(det.recoveryProgress(), { beats: 1, needed: 3 });
  t.equal(det.stats().brokenRecoveries, 1);
});

t.test('a flapping link never brings the peer back up', async (t) => {
  const { clock, det, events } = setup(t, { recoverBeats: 2 });
  goDown(clock, det);
  const before = events.length;
  for (let i = 0; i < 20; i++) {
    det.beat();
    t.equal(det.state, 'down');
    clock.advance(i % 2 === 0 ? 350 : 300); // exactly the timeout is already too late
  }
  t.equal(events.length, before, 'not a single transition');
  t.equal(det.stats().brokenRecoveries, 19);
  t.equal(det.stats().recoveries, 0);

  // A healthy link right after: two beats within the timeout do it.
  det.beat();
  clock.advance(299);
  det.beat();
  t.equal(det.state, 'up');
});

t.test('recoverBeats 1 means no hysteresis', async (t) => {
  const { clock, det } = setup(t, { recoverBeats: 1 });
  goDown(clock, det);
  clock.advance(5000);
  det.beat();
  t.equal(det.state, 'up');
});

t.test('startup grace: no beat at all -> down exactly when the grace ends', async (t) => {
  const { clock, det, events } = setup(t, { startupGraceMs: 1000 });
  t.equal(det.state, 'unknown');
  t.equal(det.lastBeatAt, undefined);
  t.equal(clock.pendingCount, 1);
  clock.advance(999);
  t.equal(det.state, 'unknown');
  t.equal(det.silentForMs(), 999, 'silence counts from the start');
  clock.advance(1);
  t.equal(det.state, 'down');
  t.same(events, [{ from: 'unknown', to: 'down', at: 2000, silentForMs: 1000, reason: 'startup-grace' }]);
  t.equal(clock.pendingCount, 0);
});

t.test('startup grace: the first beat during the grace brings the peer up', async (t) => {
  const { clock, det, events } = setup(t, { startupGraceMs: 1000 });
  clock.advance(500);
  det.beat();
  t.equal(det.state, 'up', 'one beat, no recoverBeats for a first contact');
  t.same(events, [{ from: 'unknown', to: 'up', at: 1500, silentForMs: 500, reason: 'first-contact' }]);
  beatRegularly(clock, det, 10, 100); // well past the end of the grace
  t.equal(det.state, 'up');
  t.equal(events.length, 1, 'the grace deadline is gone once a beat arrived');
});

t.test('startup grace: first contact after the grace ran out still comes up at once', async (t) => {
  const { clock, det, events } = setup(t, { startupGraceMs: 1000 });
  clock.advance(1000);
  t.equal(det.state, 'down');
  clock.advance(60_000); // the peer's agent was started a minute later
  det.beat();
  t.equal(det.state, 'up');
  t.match(events.at(-1), { from: 'down', to: 'up', reason: 'first-contact', silentForMs: 61_000 });
  t.equal(det.stats().recoveries, 0, 'a first contact is not a recovery');

  // Once it has been up, the hysteresis applies.
  clock.advance(300);
  t.equal(det.state, 'down');
  det.beat();
  t.equal(det.state, 'down');
});

t.test('a zero grace is declared on the next timer turn, after listeners are attached', async (t) => {
  const { clock, det, events } = setup(t, { startupGraceMs: 0 });
  t.equal(det.state, 'unknown');
  clock.advance(0);
  t.equal(det.state, 'down');
  t.equal(events.length, 1);
});

t.test('stale, duplicate and future beat times', async (t) => {
  const { clock, det, events } = setup(t);
  det.beat();
  clock.advance(50);
  t.equal(det.beat(clock.now() - 60), false, 'older than the last beat: a late copy from a slow link');
  t.equal(det.beat(1000), false, 'same time as the last beat');
  t.equal(det.lastBeatAt, 1000);
  t.equal(det.stats().ignoredBeats, 2);
  t.equal(det.beat(clock.now() + 5000), true, 'a time in the future counts as now');
  t.equal(det.lastBeatAt, 1050);
  t.throws(() => det.beat(NaN), RangeError);

  // A beat stamped long ago: its deadlines have already passed, so down follows at once.
  clock.advance(200);
  t.equal(det.state, 'suspect');
  t.equal(det.beat(clock.now() - 190), true);
  t.equal(det.state, 'up', 'the beat clears the suspicion');
  t.equal(clock.pendingCount, 1);
  clock.advance(9);
  t.equal(det.state, 'up');
  clock.advance(1);
  t.match(events.at(-1), { to: 'suspect', at: 1260 }, 'deadlines count from the beat time (1060)');

  const old = setup(t);
  old.det.beat();
  old.clock.advance(250);
  old.det.beat(old.clock.now() - 10); // handed in at 1250, stamped 1240
  old.clock.advance(189);
  t.equal(old.det.state, 'up', 'deadlines count from the beat time, not from when it was handed in');
  old.clock.advance(1);
  t.match(old.events.at(-1), { to: 'suspect', at: 1240 + 200 });
  old.clock.advance(100);
  t.match(old.events.at(-1), { to: 'down', at: 1240 + 300 });

  const ancient = setup(t);
  ancient.det.beat();
  ancient.clock.advance(1000);
  t.equal(ancient.det.state, 'down');
  ancient.det.beat(ancient.clock.now() - 900); // would have been its second beat... 900 ms ago
  t.equal(ancient.det.state, 'down');
  t.same(ancient.det.recoveryProgress(), { beats: 0, needed: 3 }, 'a run that lapsed long ago counts nothing');
});

t.test('a beat stamped before the timeout jumps straight from up to down', async (t) => {
  const { clock, det, events } = setup(t, { recoverBeats: 1, startupGraceMs: 100_000 });
  clock.advance(1000);
  det.beat(clock.now() - 500); // first contact, but half a second old
  t.same(
    events.map((e) => `${e.from}->${e.to}:${e.reason}`),
    ['unknown->up:first-contact', 'up->down:timeout'],
  );
  t.equal(clock.pendingCount, 0);
});

t.test('updateOptions: a shorter interval applies to the current silence', async (t) => {
  const { clock, det, events } = setup(t);
  det.beat(); // at 1000
  clock.advance(50);
  det.updateOptions({ intervalMs: 50 });
  t.equal(det.state, 'up', 'state kept');
  t.equal(det.lastBeatAt, 1000, 'last beat kept');
  t.equal(clock.pendingCount, 1);
  clock.advance(49);
  t.equal(det.state, 'up');
  clock.advance(1);
  t.match(events.at(-1), { to: 'suspect', at: 1100 });
  clock.advance(50);
  t.match(events.at(-1), { to: 'down', at: 1150, silentForMs: 150, reason: 'timeout' });
  t.equal(det.stats().transitions['unknown->up'], 1, 'counters kept');
});

t.test('updateOptions: a deadline that already passed fires inside the call', async (t) => {
  const { clock, det, events } = setup(t);
  det.beat();
  clock.advance(250);
  t.equal(det.state, 'suspect');
  det.updateOptions({ intervalMs: 50 });
  t.equal(det.state, 'down');
  t.match(events.at(-1), { from: 'suspect', to: 'down', at: 1250, silentForMs: 250, reason: 'timeout' });
  t.equal(clock.pendingCount, 0);
});

t.test('updateOptions: a longer timeout postpones down; recovery progress survives', async (t) => {
  const { clock, det, events } = setup(t);
  det.beat();
  clock.advance(250);
  det.updateOptions({ missThreshold: 10 });
  t.equal(det.state, 'suspect', 'suspect stays until a beat');
  clock.advance(749);
  t.equal(det.state, 'suspect');
  clock.advance(1);
  t.match(events.at(-1), { to: 'down', at: 2000 });

  det.beat();
  clock.advance(100);
  det.beat();
  det.updateOptions({ intervalMs: 80 });
  t.same(det.recoveryProgress(), { beats: 2, needed: 3 });
  clock.advance(80);
  det.beat();
  t.equal(det.state, 'up');
});

t.test('updateOptions: invalid options throw and change nothing', async (t) => {
  const { clock, det, events } = setup(t);
  det.beat();
  t.throws(() => det.updateOptions({ suspectMisses: 5 }), DetectorOptionsError);
  t.throws(() => det.updateOptions({ intervalMs: -1 }), DetectorOptionsError);
  t.equal(det.options.intervalMs, 100);
  clock.advance(300);
  t.match(events.at(-1), { to: 'down', at: 1300 });
});

t.test('updateOptions: a key set to undefined returns to its default', async (t) => {
  const { det } = setup(t);
  t.equal(det.options.suspectMisses, 2);
  det.updateOptions({ suspectMisses: undefined });
  t.equal(det.options.suspectMisses, 1.5);
  det.updateOptions({ missThreshold: 5 });
  t.equal(det.options.suspectMisses, 2.5, 'defaults follow the values they derive from');
});

t.test('stop() leaves no timer pending in any state, and freezes the detector', async (t) => {
  const unknown = setup(t);
  t.equal(unknown.clock.pendingCount, 1);
  unknown.det.stop();
  t.equal(unknown.clock.pendingCount, 0, 'unknown');

  const up = setup(t);
  up.det.beat();
  up.det.stop();
  t.equal(up.clock.pendingCount, 0, 'up');
  up.clock.advance(10_000);
  t.equal(up.det.state, 'up');
  t.equal(up.det.beat(), false, 'beats after stop are ignored');
  t.equal(up.clock.pendingCount, 0);
  up.det.updateOptions({ intervalMs: 10 });
  t.equal(up.clock.pendingCount, 0, 'updateOptions after stop arms nothing');
  t.equal(up.events.length, 1);

  const suspect = setup(t, { phiThreshold: 8 });
  suspect.det.beat();
  suspect.clock.advance(210);
  t.equal(suspect.det.state, 'suspect');
  suspect.det.stop();
  t.equal(suspect.clock.pendingCount, 0, 'suspect');
});

t.test('a listener may stop the detector from inside an event', async (t) => {
  const { clock, det } = setup(t);
  det.on('state', (e) => {
    if (e.to === 'suspect') det.stop();
  });
  det.beat();
  clock.advance(1000);
  t.equal(det.state, 'suspect');
  t.equal(clock.pendingCount, 0);
});

t.test('a listener may beat from inside an event without leaving two timers', async (t) => {
  const { clock, det, events } = setup(t);
  let once = true;
  det.on('state', (e) => {
    if (e.to === 'suspect' && once) {
      once = false;
      det.beat();
    }
  });
  det.beat();
  clock.advance(200);
  t.equal(det.state, 'up');
  t.equal(clock.pendingCount, 1);
  clock.advance(300);
  t.equal(det.state, 'down');
  t.equal(events.filter((e) => e.to === 'down').length, 1);
});

t.test('a throwing listener neither breaks the detector nor starves other listeners', async (t) => {
  const { clock, det, events } = setup(t);
  const second: string[] = [];
  det.on('state', () => {
    throw new Error('listener bug');
  });
  det.on('state', (e) => second.push(e.to));
  det.beat();
  clock.advance(300);
  t.equal(det.state, 'down', 'the down deadline still fired after the suspect listener threw');
  t.same(second, ['up', 'suspect', 'down']);
  t.equal(events.length, 3);
  t.equal(det.stats().listenerErrors, 3);
});

t.test('off() removes a listener', async (t) => {
  const { clock, det } = setup(t);
  const seen: string[] = [];
  const l = (e: StateChange) => seen.push(e.to);
  det.on('state', l);
  det.beat();
  det.off('state', l);
  clock.advance(300);
  t.same(seen, ['up']);
});

t.test('every transition is logged once at info, from the one setter', async (t) => {
  const lines: Array<Record<string, unknown>> = [];
  const logger = createLogger({
    level: 'info',
    destination: { write: (s: string) => void lines.push(JSON.parse(s) as Record<string, unknown>) },
  });
  const { clock, det, events } = setup(t, { logger, name: 'peer-b' });
  det.beat();
  clock.advance(250);
  det.beat();
  clock.advance(300);
  const logged = lines.filter((l) => 'to' in l);
  t.equal(logged.length, events.length);
  t.equal(events.length, 5, 'up, suspect, up, suspect, down');
  for (const [i, l] of logged.entries()) {
    t.match(l, { level: 'info', component: 'failure-detector', detector: 'peer-b', from: events[i]?.from, to: events[i]?.to });
  }
});

t.test('at most one timer is ever pending, and the state always matches the silence', async (t) => {
  for (const phiThreshold of [0, 6]) {
    const { clock, det } = setup(t, { phiThreshold, recoverBeats: 2 });
    let seed = 42;
    const rand = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
    const violations: string[] = [];
    for (let i = 0; i < 2000; i++) {
      const r = rand();
      if (r < 0.6) det.beat();
      clock.advance(Math.floor(rand() * (r < 0.9 ? 150 : 600)));
      const silent = det.silentForMs();
      const where = `step ${i}, ${det.state}, ${silent} ms silent, ${clock.pendingCount} timers`;
      if (clock.pendingCount > 1) violations.push(`${where}: more than one timer`);
      if (det.state === 'up' && silent >= 200) violations.push(`${where}: should have been suspected`);
      if (det.state === 'suspect' && silent >= 300) violations.push(`${where}: should be down`);
      if (det.state !== 'down' && clock.pendingCount !== 1) violations.push(`${where}: no deadline armed`);
    }
    t.same(violations, [], `phiThreshold ${phiThreshold}: invariants hold over 2000 random steps`);
    const s = det.stats();
    t.ok(s.downs > 0 && s.recoveries > 0 && s.suspicionsCleared > 0, 'the walk went down, came back, and cleared suspicions');
  }
});

t.test('phi(): undefined when off or before the first beat; grows with silence', async (t) => {
  const off = setup(t);
  off.det.beat();
  t.equal(off.det.phi(), undefined, 'off');

  const { clock, det } = setup(t, { phiThreshold: 8 });
  t.equal(det.phi(), undefined, 'no beat yet');
  beatRegularly(clock, det, 30, 100);
  let prev = det.phi() ?? NaN;
  t.ok(prev < 0.01, `phi right after a beat is ${prev}`);
  for (let i = 0; i < 20; i++) {
    clock.advance(10);
    const phi = det.phi() ?? NaN;
    t.ok(phi > prev, `phi grows: ${phi} > ${prev}`);
    prev = phi;
  }
});

t.test('phi mode: a regular sender goes down before the fixed timeout, exactly as phi crosses', async (t) => {
  const { clock, det, events } = setup(t, { phiThreshold: 8, phiSuspectThreshold: 3 });
  beatRegularly(clock, det, 50, 100);
  const last = clock.now();
  clock.advance(100);
  t.ok((det.phi() ?? NaN) < 1, `low phi at the interval: ${det.phi()}`);

  while (det.state === 'up') clock.advance(1);
  const suspect = events.at(-1);
  t.match(suspect, { to: 'suspect', reason: 'suspect-phi' });
  t.ok((suspect?.at ?? Infinity) < last + 200, 'before the fixed suspect deadline');

  while (det.state === 'suspect') clock.advance(1);
  const down = events.at(-1);
  t.match(down, { to: 'down', reason: 'phi' });
  const at = down?.at ?? NaN;
  t.ok(at < last + 300, `down after ${at - last} ms, before the fixed 300`);
  t.ok(at > last + 200, 'but not absurdly early for a 100 ms sender');
});

t.test('phi mode: the transition fires at the exact crossing', async (t) => {
  const { clock, det, events } = setup(t, { phiThreshold: 8, phiSuspectThreshold: 3 });
  beatRegularly(clock, det, 50, 100);
  // Step to just before each crossing and check phi on both sides.
  const seen: number[] = [];
  det.on('state', () => seen.push(det.phi() ?? NaN));
  clock.advance(150);
  t.equal(det.state, 'up');
  clock.advance(1000);
  t.same(
    events.slice(-2).map((e) => e.to),
    ['suspect', 'down'],
  );
  t.ok(Math.abs((seen[0] ?? NaN) - 3) < 1e-6, `phi at suspect: ${seen[0]}`);
  t.ok(Math.abs((seen[1] ?? NaN) - 8) < 1e-6, `phi at down: ${seen[1]}`);
});

t.test('phi mode never declares down after the fixed timeout', async (t) => {
  // A very irregular sender: phi alone would wait far longer than 300 ms.
  const jittery = setup(t, { phiThreshold: 8 });
  jittery.det.beat();
  for (let i = 0; i < 40; i++) {
    jittery.clock.advance(i % 2 === 0 ? 20 : 280);
    jittery.det.beat();
  }
  const last = jittery.clock.now();
  jittery.clock.advance(300);
  t.match(jittery.events.at(-1), { to: 'down', at: last + 300, reason: 'timeout' });

  // A misconfigured, huge threshold.
  const huge = setup(t, { phiThreshold: 999 });
  beatRegularly(huge.clock, huge.det, 20, 100);
  const hugeLast = huge.clock.now();
  huge.clock.advance(300);
  t.match(huge.events.at(-1), { to: 'down', at: hugeLast + 300, reason: 'timeout' });
});

t.test('phi mode: outages are not learned as inter-arrival times', async (t) => {
  const { clock, det } = setup(t, { phiThreshold: 8 });
  beatRegularly(clock, det, 30, 100);
  clock.advance(10_000);
  beatRegularly(clock, det, 3, 100);
  t.equal(det.state, 'up');
  clock.advance(100);
  t.ok((det.phi() ?? NaN) < 1, `phi at the interval after an outage: ${det.phi()}`);
});

t.test('phi mode: a new interval discards samples of the old rate', async (t) => {
  const { clock, det } = setup(t, { phiThreshold: 8 });
  beatRegularly(clock, det, 50, 100);
  det.updateOptions({ intervalMs: 1000 });
  clock.advance(500);
  t.equal(det.state, 'up', 'the 100 ms samples no longer make phi fire at ~240 ms');
  t.ok((det.phi() ?? Infinity) < 1);
});

t.test('option defaults', async (t) => {
  t.same(resolveDetectorOptions({ intervalMs: 100, missThreshold: 3 }), {
    intervalMs: 100,
    missThreshold: 3,
    suspectMisses: 1.5,
    recoverBeats: 3,
    startupGraceMs: 300,
    phiThreshold: 0,
    phiSuspectThreshold: 0,
    phiWindowSize: 100,
    phiMinStdDevMs: 25,
  });
  t.equal(resolveDetectorOptions({ intervalMs: 100, missThreshold: 3, phiThreshold: 8 }).phiSuspectThreshold, 4);
});

t.test('input validation', async (t) => {
  const base = { intervalMs: 100, missThreshold: 3 };
  const bad: Array<[Partial<FailureDetectorOptions>, RegExp]> = [
    [{ suspectMisses: 3 }, /suspectMisses \(3\) must be less than missThreshold \(3\)/],
    [{ suspectMisses: 4 }, /suspectMisses \(4\) must be less than missThreshold/],
    [{ suspectMisses: 0 }, /suspectMisses must be a positive number/],
    [{ suspectMisses: -1 }, /suspectMisses must be a positive number/],
    [{ intervalMs: 0 }, /intervalMs must be a positive number, got 0/],
    [{ intervalMs: -100 }, /intervalMs must be a positive number/],
    [{ intervalMs: NaN }, /intervalMs must be a positive number, got NaN/],
    [{ intervalMs: Infinity }, /intervalMs/],
    [{ missThreshold: 0 }, /missThreshold must be a positive number/],
    [{ missThreshold: -3 }, /missThreshold/],
    [{ recoverBeats: 0 }, /recoverBeats must be an integer >= 1/],
    [{ recoverBeats: 1.5 }, /recoverBeats/],
    [{ startupGraceMs: -1 }, /startupGraceMs/],
    [{ startupGraceMs: NaN }, /startupGraceMs/],
    [{ phiThreshold: -1 }, /phiThreshold/],
    [{ phiThreshold: NaN }, /phiThreshold/],
    [{ phiThreshold: 5000 }, /phiThreshold/],
    [{ phiThreshold: 8, phiSuspectThreshold: 8 }, /phiSuspectThreshold \(8\) must be less than phiThreshold \(8\)/],
    [{ phiThreshold: 8, phiSuspectThreshold: 0 }, /phiSuspectThreshold must be a positive number/],
    [{ phiWindowSize: 1 }, /phiWindowSize/],
    [{ phiMinStdDevMs: 0 }, /phiMinStdDevMs/],
    [{ intervalMs: 1e9 }, /exceeds the timer limit/],
  ];
  for (const [opts, message] of bad) {
    const clock = new FakeClock();
    t.throws(
      () => new FailureDetector({ ...base, clock, ...opts }),
      { name: 'DetectorOptionsError', code: 'ERR_HB_DETECTOR_OPTIONS', message },
      JSON.stringify(opts, (_k, v: unknown) => (typeof v === 'number' && !Number.isFinite(v) ? String(v) : v)),
    );
    t.equal(clock.pendingCount, 0, 'a refused detector arms nothing');
  }
  try {
    new FailureDetector({ ...base, suspectMisses: 3 });
    t.fail('should have thrown');
  } catch (err) {
    t.ok(err instanceof ColoAgentError, 'a ColoAgentError');
    t.ok(err instanceof DetectorOptionsError);
  }
});
