import t from 'tap';
import { InFlightTable, type PendingCommand } from '../../src/qmp/in-flight.js';

function cmd(id: number, command = 'query-status'): PendingCommand {
  return { id, command, oob: false, startedAt: id * 10, timer: undefined, resolve: () => undefined, reject: () => undefined };
}

t.test('take removes; a timed-out command is recognised once when its late reply comes', async (t) => {
  const table = new InFlightTable();
  table.add(cmd(1));
  table.add(cmd(2, 'stop'));
  t.equal(table.size, 2);
  const two = table.take(2);
  t.equal(two?.command, 'stop');
  t.equal(table.take(2), undefined, 'answered once only');
  const one = table.take(1);
  if (!one) throw new Error('missing');
  table.rememberLate(one);
  t.same(table.takeLate(1), { id: 1, command: 'query-status', oob: false, startedAt: 10 });
  t.equal(table.takeLate(1), undefined, 'a second late reply is unknown');
});

t.test('the late list is bounded, forgetting the oldest', async (t) => {
  const table = new InFlightTable(3);
  for (let id = 1; id <= 5; id++) table.rememberLate(cmd(id));
  t.equal(table.lateSize, 3);
  t.equal(table.takeLate(1), undefined);
  t.equal(table.takeLate(2), undefined);
  t.ok(table.takeLate(5));
});

t.test('drain returns what was pending and forgets late ids (they belonged to the old connection)', async (t) => {
  const table = new InFlightTable();
  table.add(cmd(1));
  table.add(cmd(2));
  table.rememberLate(cmd(3));
  t.same(
    table.drain().map((c) => c.id),
    [1, 2],
  );
  t.equal(table.size, 0);
  t.equal(table.lateSize, 0);
});
