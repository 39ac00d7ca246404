import t from 'tap';
import { formatHostPort, parseHostPort } from '../../src/heartbeat/address.js';
import { HeartbeatOptionsError } from '../../src/heartbeat/errors.js';

t.test('parses HOST:PORT', async (t) => {
  t.same(parseHostPort('127.0.0.1:7400'), { host: '127.0.0.1', port: 7400 });
  t.same(parseHostPort('peer-b.example:1'), { host: 'peer-b.example', port: 1 });
  t.same(parseHostPort('[fd00::1]:7400'), { host: 'fd00::1', port: 7400 });
  t.same(parseHostPort('0.0.0.0:0', true), { host: '0.0.0.0', port: 0 }, 'port 0 for listen');
  for (const s of ['127.0.0.1:7400', '[::1]:9']) t.equal(formatHostPort(parseHostPort(s)), s);
});

t.test('refuses what is not HOST:PORT', async (t) => {
  for (const s of ['', '127.0.0.1', ':7400', '127.0.0.1:0', '1.2.3.4:65536', 'host:port', '::1:7400', '[nope]:1', 'bad host:1', 'a_b:1', '127.0.0.1:7400 ']) {
    t.throws(() => parseHostPort(s), HeartbeatOptionsError, JSON.stringify(s));
  }
});
