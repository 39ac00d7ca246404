import t from 'tap';
import { compareQemuVersion, formatQemuVersion, qemuVersionAtLeast } from '../../src/qmp/version.js';

t.test('compares and formats versions', async (t) => {
  const v72 = { major: 7, minor: 2, micro: 22, package: 'x' };
  const v100 = { major: 10, minor: 0, micro: 2, package: '' };
  t.ok(compareQemuVersion(v72, v100) < 0);
  t.equal(compareQemuVersion(v72, { major: 7, minor: 2, micro: 22 }), 0);
  t.ok(qemuVersionAtLeast(v100, 8, 1));
  t.notOk(qemuVersionAtLeast(v72, 8, 1));
  t.ok(qemuVersionAtLeast(v72, 7, 2, 22));
  t.notOk(qemuVersionAtLeast(v100, 10, 0, 7), '10.0.2 lacks the 10.0.7 fix');
  t.equal(formatQemuVersion(v100), '10.0.2');
});
