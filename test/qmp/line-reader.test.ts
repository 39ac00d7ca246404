import t from 'tap';
import { LineReader } from '../../src/qmp/line-reader.js';
import { QmpProtocolError } from '../../src/qmp/errors.js';

function feedAll(r: LineReader, chunks: Array<string | Buffer>): string[] {
  const out: string[] = [];
  for (const c of chunks) r.feed(typeof c === 'string' ? Buffer.from(c) : c, (l) => out.push(l));
  return out;
}

t.test('splits on LF and CRLF, across chunk boundaries, skipping empty lines', async (t) => {
  const r = new LineReader(100);
  t.same(feedAll(r, ['{"a":1}\r\n{"b"', ':2}\n', '\r\n', '{"c":3}\r', '\n{"d"']), ['{"a":1}', '{"b":2}', '{"c":3}']);
  t.equal(r.pendingBytes, 4);
  t.same(feedAll(r, [':4}\n']), ['{"d":4}']);
  t.equal(r.pendingBytes, 0);
  t.doesNotThrow(() => r.end());
});

t.test('a multi-byte character split between chunks decodes intact', async (t) => {
  const bytes = Buffer.from('"née ✓"\n');
  const r = new LineReader(100);
  const cut = bytes.indexOf(0xe2) + 1; // inside the 3-byte check mark
  t.same(feedAll(r, [bytes.subarray(0, cut), bytes.subarray(cut)]), ['"née ✓"']);
});

t.test('a line may be exactly maxLineBytes long, CRLF not counted', async (t) => {
  const r = new LineReader(10);
  t.same(feedAll(r, ['0123456789\r', '\n', '0123456789\n']), ['0123456789', '0123456789']);
});

t.test('an over-long complete line throws line-too-long after earlier lines were delivered', async (t) => {
  const r = new LineReader(10);
  const got: string[] = [];
  const err = t.throws(() => r.feed(Buffer.from('ok\n0123456789X\nlater\n'), (l) => got.push(l))) as QmpProtocolError;
  t.type(err, QmpProtocolError);
  t.equal(err.violation, 'line-too-long');
  t.equal(err.code, 'QMP_PROTOCOL');
  t.same(got, ['ok']);
});

t.test('an endless line without newline is refused before it is buffered whole', async (t) => {
  const r = new LineReader(1024);
  const chunk = Buffer.alloc(600, 0x41);
  r.feed(chunk, () => t.fail('no line expected'));
  const err = t.throws(() => r.feed(chunk, () => undefined)) as QmpProtocolError;
  t.equal(err.violation, 'line-too-long');
  t.match(err.message, /1200 bytes without a newline exceed the line limit of 1024/);
  t.equal(r.pendingBytes, 0, 'buffer released');
});

t.test('end() in the middle of a line is closed-mid-line', async (t) => {
  const r = new LineReader(100);
  feedAll(r, ['{"return": {}', '}\n{"ret']);
  const err = t.throws(() => r.end()) as QmpProtocolError;
  t.equal(err.violation, 'closed-mid-line');
  t.match(err.message, /5 bytes/);
});

t.test('rejects a nonsense limit', async (t) => {
  t.throws(() => new LineReader(0), RangeError);
  t.throws(() => new LineReader(1.5), RangeError);
});
