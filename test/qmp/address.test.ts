import t from 'tap';
import { formatQmpAddress, MAX_UNIX_PATH_BYTES, parseQmpAddress } from '../../src/qmp/address.js';
import { QmpAddressError } from '../../src/qmp/errors.js';
import { hasCode } from '../../src/errors.js';

t.test('parses unix and tcp addresses', async (t) => {
  t.same(parseQmpAddress('unix:/run/colo/qmp.sock'), { kind: 'unix', path: '/run/colo/qmp.sock' });
  t.same(parseQmpAddress('unix:relative.sock'), { kind: 'unix', path: 'relative.sock' });
  t.same(parseQmpAddress('tcp:127.0.0.1:4444'), { kind: 'tcp', host: '127.0.0.1', port: 4444 });
  t.same(parseQmpAddress('tcp:qemu-host.example:1'), { kind: 'tcp', host: 'qemu-host.example', port: 1 });
  t.same(parseQmpAddress('tcp:localhost:65535'), { kind: 'tcp', host: 'localhost', port: 65535 });
  t.same(parseQmpAddress('tcp:[::1]:4444'), { kind: 'tcp', host: '::1', port: 4444 });
});

t.test('format is the inverse of parse', async (t) => {
  for (const s of ['unix:/tmp/q.sock', 'tcp:10.0.0.1:9', 'tcp:[fe80::1]:4444', 'tcp:host:80']) {
    t.equal(formatQmpAddress(parseQmpAddress(s)), s);
  }
});

t.test('rejects bad addresses with a clear, coded error', async (t) => {
  const cases: Array<[string, RegExp]> = [
    ['', /empty/],
    ['/tmp/q.sock', /no scheme/],
    ['udp:1.2.3.4:5', /unknown scheme "udp"/],
    ['unix:', /empty socket path/],
    ['unix:/tmp/q.sock,server=on,wait=off', /QEMU -qmp argument/],
    [`unix:/${'x'.repeat(MAX_UNIX_PATH_BYTES)}`, /at most 107/],
    ['tcp:127.0.0.1', /not a number|missing :PORT/],
    ['tcp:4444', /missing :PORT|empty host/],
    ['tcp::4444', /empty host/],
    ['tcp:127.0.0.1:0', /outside 1\.\.65535/],
    ['tcp:127.0.0.1:70000', /outside 1\.\.65535/],
    ['tcp:127.0.0.1:44a', /not a number/],
    ['tcp:::1:4444', /brackets/],
    ['tcp:[nonsense]:4444', /not an IPv6/],
    ['tcp:bad host:4444', /not a valid host/],
    [' unix:/tmp/q.sock', /whitespace/],
  ];
  for (const [input, re] of cases) {
    const err = t.throws(() => parseQmpAddress(input), QmpAddressError, input) as unknown;
    t.ok(hasCode(err, 'QMP_BAD_ADDRESS'), `${input}: code`);
    t.match((err as Error).message, re, `${input}: message`);
    t.match((err as Error).message, /expected unix:PATH or tcp:HOST:PORT/);
  }
});
