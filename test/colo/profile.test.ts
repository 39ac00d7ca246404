/**
 * QEMU profiles: the documented version differences (qemu-colo-facts.md §4) as a table.
 */
import t from 'tap';
import { ColoProfileError } from '../../src/colo/errors.js';
import { coloCapabilities, describeProfile, parseProfileSpec, profileForVersion, resolveQemuProfile } from '../../src/colo/profile.js';

const v = (major: number, minor: number, micro = 0) => ({ major, minor, micro });

t.test('the version table', async (t) => {
  // version, yank/objectAddFlat, secondaryNeedsXColo, reconnect key, primary regression
  const table: Array<[string, ReturnType<typeof v>, boolean, boolean, 'reconnect' | 'reconnect-ms', boolean]> = [
    ['5.2.0', v(5, 2), false, false, 'reconnect', false],
    ['6.0.0', v(6, 0), true, false, 'reconnect', false],
    ['7.2.22', v(7, 2, 22), true, false, 'reconnect', false],
    ['8.0.5', v(8, 0, 5), true, false, 'reconnect', false],
    ['8.1.0', v(8, 1), true, true, 'reconnect', false],
    ['9.1.3', v(9, 1, 3), true, true, 'reconnect', false],
    ['9.2.0', v(9, 2), true, true, 'reconnect-ms', false],
    ['10.0.0', v(10, 0, 0), true, true, 'reconnect-ms', true],
    ['10.0.2', v(10, 0, 2), true, true, 'reconnect-ms', true],
    ['10.0.6', v(10, 0, 6), true, true, 'reconnect-ms', true],
    ['10.0.7', v(10, 0, 7), true, true, 'reconnect-ms', false],
    ['10.1.0', v(10, 1, 0), true, true, 'reconnect-ms', true],
    ['10.1.4', v(10, 1, 4), true, true, 'reconnect-ms', true],
    ['10.2.0', v(10, 2, 0), true, true, 'reconnect-ms', false],
  ];
  for (const [label, version, yank, xcolo, reconnect, regression] of table) {
    const p = profileForVersion(version);
    t.same(
      { yank: p.yank, objectAddFlat: p.objectAddFlat, secondaryNeedsXColo: p.secondaryNeedsXColo, key: p.chardevReconnectKey, regression: p.primaryColoRegression },
      { yank, objectAddFlat: yank, secondaryNeedsXColo: xcolo, key: reconnect, regression },
      label,
    );
    t.equal(p.nbdNodeRemoval, 'drive_del', `${label}: drive_del as documented unless overridden`);
  }
  t.equal(profileForVersion(v(7, 2), 'greeting', { nbdNodeRemoval: 'blockdev-del' }).nbdNodeRemoval, 'blockdev-del');
});

t.test('parseProfileSpec', async (t) => {
  t.equal(parseProfileSpec('auto'), 'auto');
  t.same(parseProfileSpec('7.2'), { version: v(7, 2, 0), microKnown: false });
  t.same(parseProfileSpec('10.0.7'), { version: v(10, 0, 7), microKnown: true });
  for (const bad of ['', 'latest', '7', '7.2.', '7.x', 'v7.2', '1.2.3.4', 'AUTO']) {
    t.throws(() => parseProfileSpec(bad), { code: 'COLO_BAD_PROFILE' }, JSON.stringify(bad));
  }
});

t.test('resolveQemuProfile: auto takes the greeting, an explicit string wins', async (t) => {
  const greeting = { major: 7, minor: 2, micro: 22, package: 'Debian' };
  const auto = resolveQemuProfile('auto', greeting);
  t.same(auto.version, v(7, 2, 22));
  t.equal(auto.source, 'greeting');
  t.equal(auto.reportedVersion, undefined);
  t.equal(describeProfile(auto), '7.2.22 (from the QMP greeting)');

  t.throws(() => resolveQemuProfile('auto', undefined), ColoProfileError, 'auto needs a greeting');

  const pinned = resolveQemuProfile('9.2', greeting);
  t.equal(pinned.source, 'config');
  t.equal(pinned.chardevReconnectKey, 'reconnect-ms', 'flags follow the pinned version');
  t.same(pinned.reportedVersion, v(7, 2, 22), 'the differing greeting is kept for a warning');
  t.equal(describeProfile(pinned), '9.2 (from config; QEMU reports 7.2.22)');

  const same = resolveQemuProfile('7.2', greeting);
  t.equal(same.reportedVersion, undefined, '7.2 matches 7.2.22 when no micro is given');
  t.equal(resolveQemuProfile('7.2.21', greeting).reportedVersion?.micro, 22, 'a given micro must match too');
  t.equal(resolveQemuProfile('10.0', undefined).primaryColoRegression, true, '"10.0" means 10.0.0');
  t.equal(resolveQemuProfile('10.0.7', undefined).primaryColoRegression, false);
});

t.test('x-colo comes with return-path from 11.0 (11.1 refuses it alone), on every side that sets it', async (t) => {
  const v = (major: number, minor: number, micro = 0) => profileForVersion({ major, minor, micro });
  t.same(coloCapabilities(v(7, 2, 22)), { capabilities: [{ capability: 'x-colo', state: true }] }, '7.2: x-colo alone');
  t.same(coloCapabilities(v(10, 0, 13)), { capabilities: [{ capability: 'x-colo', state: true }] }, '10.0.13: x-colo alone');
  t.same(
    coloCapabilities(v(11, 1, 3)),
    { capabilities: [{ capability: 'return-path', state: true }, { capability: 'x-colo', state: true }] },
    '11.1: return-path, then x-colo, in one call',
  );
});
