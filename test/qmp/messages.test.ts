import t from 'tap';
import { encodeCommand, parseGreeting, parseServerLine, timestampToMs } from '../../src/qmp/messages.js';
import { QmpProtocolError } from '../../src/qmp/errors.js';

const GREETING_72 =
  '{"QMP": {"version": {"qemu": {"micro": 22, "minor": 2, "major": 7}, "package": "Debian 1:7.2+dfsg-7+deb12u18+b3"}, "capabilities": ["oob"]}}';

t.test('classifies the four kinds of server message', async (t) => {
  t.same(parseServerLine(GREETING_72), {
    kind: 'greeting',
    greeting: { version: { major: 7, minor: 2, micro: 22, package: 'Debian 1:7.2+dfsg-7+deb12u18+b3' }, capabilities: ['oob'] },
  });
  t.same(parseServerLine('{"return": {"status": "paused"}, "id": 3}'), { kind: 'return', id: 3, hasId: true, value: { status: 'paused' } });
  t.same(parseServerLine('{"return": {}}'), { kind: 'return', id: undefined, hasId: false, value: {} });
  t.same(parseServerLine('{"id": "a", "error": {"class": "GenericError", "desc": "VM is not in COLO mode"}}'), {
    kind: 'error',
    id: 'a',
    hasId: true,
    errorClass: 'GenericError',
    desc: 'VM is not in COLO mode',
  });
  t.same(parseServerLine('{"timestamp": {"seconds": 1795628721, "microseconds": 44103}, "event": "STOP"}'), {
    kind: 'event',
    event: 'STOP',
    data: {},
    timestamp: { seconds: 1795628721, microseconds: 44103 },
  });
});

t.test('a QEMU 10 style greeting with more capabilities parses', async (t) => {
  const g = parseGreeting({ QMP: { version: { qemu: { major: 10, minor: 0, micro: 2 }, package: '' }, capabilities: ['oob', 'future'] } });
  t.same(g.version, { major: 10, minor: 0, micro: 2, package: '' });
  t.same(g.capabilities, ['oob', 'future']);
});

t.test('malformed lines are protocol errors with a violation', async (t) => {
  const cases: Array<[string, string]> = [
    ['not json', 'bad-json'],
    ['[1,2]', 'unexpected-message'],
    ['{"hello": 1}', 'unexpected-message'],
    ['{"error": "x", "id": 1}', 'unexpected-message'],
    ['{"event": "STOP"}', 'unexpected-message'],
    ['{"QMP": {"version": {"qemu": {"major": "7"}}, "capabilities": []}}', 'bad-greeting'],
    ['{"QMP": {"version": {"qemu": {"major": 7, "minor": 2, "micro": 0}}, "capabilities": "oob"}}', 'bad-greeting'],
  ];
  for (const [line, violation] of cases) {
    const err = t.throws(() => parseServerLine(line), QmpProtocolError, line) as QmpProtocolError;
    t.equal(err.violation, violation, line);
  }
});

t.test('timestamps convert to epoch milliseconds', async (t) => {
  t.equal(timestampToMs({ seconds: 1700000000, microseconds: 123456 }), 1700000000123.456);
});

t.test('commands encode as one line, exec-oob for oob, arguments only when given', async (t) => {
  t.equal(encodeCommand('query-status', undefined, 1, false), '{"execute":"query-status","id":1}\n');
  t.equal(encodeCommand('yank', { instances: [] }, 2, true), '{"exec-oob":"yank","arguments":{"instances":[]},"id":2}\n');
});
