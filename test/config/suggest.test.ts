import t from 'tap';
import { closestKey } from '../../src/config/suggest.js';

t.test('closestKey ignores case, "-" and "_" and allows small typos', async (t) => {
  const keys = ['intervalMs', 'missThreshold', 'suspectMisses', 'peers', 'listen'];
  t.equal(closestKey('interval_ms', keys), 'intervalMs');
  t.equal(closestKey('INTERVALMS', keys), 'intervalMs');
  t.equal(closestKey('misThreshold', keys), 'missThreshold');
  t.equal(closestKey('peer', keys), 'peers');
  t.equal(closestKey('colour', keys), undefined);
  t.equal(closestKey('ab', ['cd', 'ef']), undefined, 'short keys do not match everything');
  t.equal(closestKey('x', []), undefined);
});
