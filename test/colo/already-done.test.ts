/**
 * Exact "already done" matching; the texts themselves are proven on real QEMU in runner.real.test.ts.
 */
import t from 'tap';
import { isExistsError, isMissingError, missingText } from '../../src/colo/already-done.js';

t.test('missing: class and exact text with the id', async (t) => {
  const obj = { kind: 'object', id: 'comp0' } as const;
  t.ok(isMissingError(obj, 'GenericError', "object 'comp0' not found"));
  t.ok(isMissingError(obj, 'DeviceNotFound', "object 'comp0' not found"));
  t.notOk(isMissingError(obj, 'GenericError', "object 'comp1' not found"), 'another id');
  t.notOk(isMissingError(obj, 'CommandNotFound', "object 'comp0' not found"), 'another class');
  t.notOk(isMissingError(obj, 'GenericError', "object 'comp0' not found, and more"), 'anchored');
  t.notOk(isMissingError(obj, 'GenericError', "the object 'comp0' not found"), 'anchored at the start');

  const chr = { kind: 'chardev', id: 'red1' } as const;
  t.ok(isMissingError(chr, 'GenericError', "Chardev 'red1' not found"));
  t.notOk(isMissingError(chr, 'GenericError', "Chardev 'red1' is busy"), 'busy is a real failure');
  t.ok(isExistsError(chr, 'GenericError', "Chardev with id 'red1' already exists"));
  t.notOk(isExistsError(obj, 'GenericError', "Chardev with id 'comp0' already exists"), 'objects have no exists text');

  const hmp = { kind: 'hmp-drive', id: 'replication0' } as const;
  t.ok(isMissingError(hmp, undefined, "Device 'replication0' not found\r\n"), 'HMP output, CRLF trimmed');
  t.ok(isMissingError(hmp, undefined, "Error: Device 'replication0' not found\r\n"), 'HMP output on 11.1, with its Error: prefix');

  const child = { kind: 'quorum-child', parent: 'colo-disk0', child: 'children.1' } as const;
  t.ok(isMissingError(child, 'GenericError', "Node 'colo-disk0' does not have child 'children.1'"));
  t.notOk(isMissingError(child, 'GenericError', "Cannot find device='colo-disk0' nor node-name='colo-disk0'"), 'a missing parent is a failure');

  t.equal(missingText({ kind: 'block-node', id: 'nbd0' }), "Failed to find node with node-name='nbd0'");
  t.ok(isMissingError({ kind: 'nbd-server' }, 'GenericError', 'NBD server not running'));
});
