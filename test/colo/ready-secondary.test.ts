import t from 'tap';
import { parseReadySecondary, ReadySecondaryMessageError } from '../../src/colo/ready-secondary.js';

t.test('the announcement is parsed strictly', async (t) => {
  t.same(parseReadySecondary({ nbd: '127.0.0.1:9999', qemu: '7.2.22' }), { nbd: '127.0.0.1:9999', qemu: '7.2.22' });
  t.same(parseReadySecondary({ nbd: '[::1]:9999', qemu: '10.0.7' }), { nbd: '[::1]:9999', qemu: '10.0.7' });
  for (const bad of [{}, { nbd: '127.0.0.1', qemu: '7.2.22' }, { nbd: '127.0.0.1:9999', qemu: 'seven' }, { nbd: '127.0.0.1:9999', qemu: '7.2.22', admin: true }, { nbd: 5, qemu: '7.2.22' }]) {
    const err = t.throws(() => parseReadySecondary(bad as Record<string, unknown>), ReadySecondaryMessageError, JSON.stringify(bad)) as ReadySecondaryMessageError;
    t.equal(err.code, 'ERR_READY_SECONDARY_MESSAGE');
  }
});
