/** hmpSucceeded: the verdict on HMP's printed text, with the replies measured on QEMU 7.2 and 11.1. */
import t from 'tap';
import { hmpSucceeded } from '../../src/colo/hmp-reply.js';

t.test('nothing, OK and close-time flush warnings are success', async (t) => {
  t.ok(hmpSucceeded(''), 'drive_del on 7.2 prints nothing');
  t.ok(hmpSucceeded('OK\r\n'), 'OK');
  // QEMU 11.1.3, drive_del replication0 after the secondary died and its NBD socket was yanked.
  const measured = "Failed flush for 'nbd://169.254.1.2:9999/parent0' during close: Input/output error\r\nFailed flush for 'nbd://169.254.1.2:9999/parent0' during close: Input/output error\r\n";
  t.ok(hmpSucceeded(measured), 'the node is closed all the same');
});

t.test('any other text is HMP\'s error', async (t) => {
  t.notOk(hmpSucceeded("Device 'replication0' not found\r\n"), 'a missing device');
  t.notOk(hmpSucceeded("Failed flush for 'x' during close: Input/output error\r\nDevice 'x' is busy\r\n"), 'a warning does not hide an error beside it');
  t.notOk(hmpSucceeded('Error: could not open disk image'), 'drive_add failing');
});
