/**
 * Unprotected time and the last failover survive an agent restart (protection.json): a real Agent
 * (not a mock) is started on a state dir whose journal says it last ran a failover, stopped, and
 * started again; its status keeps counting from the failover, not from the restart.
 */
import t from 'tap';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Agent } from '../../src/agent.js';
import { Journal } from '../../src/colo/journal.js';
import { PROTECTION_FILE_NAME, readProtectionState, writeProtectionState } from '../../src/colo/protection-state.js';
import { silentLogger } from '../../src/log.js';
import { loneAgentConfig } from '../metrics/support.js';
import { shortTempDir } from '../helpers/short-temp-dir.js';

t.test('round trip; an absent or broken file is an empty state', async (t) => {
  const dir = shortTempDir(t, 'pr-');
  t.same(readProtectionState(dir), {}, 'absent');
  const state = { unprotectedSince: '2026-12-07T10:00:00.000Z', lastFailover: { sequence: 'secondary-failover', trigger: 'peer-down', ok: true, durationMs: 35.5, at: '2026-12-07T10:00:00.000Z' } };
  await writeProtectionState(dir, state);
  t.same(readProtectionState(dir), state);
  writeFileSync(join(dir, PROTECTION_FILE_NAME), '{not json');
  t.same(readProtectionState(dir), {}, 'unreadable: start over, never throw');
  writeFileSync(join(dir, PROTECTION_FILE_NAME), JSON.stringify({ unprotectedSince: 'yesterday', lastFailover: { sequence: 1 } }));
  t.same(readProtectionState(dir), {}, 'wrong types are dropped');
});

t.test('a solo node restarted keeps counting unprotected time from before the restart', async (t) => {
  const dir = shortTempDir(t, 'pa-');
  const cfg = await loneAgentConfig('secondary', dir);
  mkdirSync(cfg.node.stateDir, { recursive: true });
  const journal = await Journal.open(cfg.node.stateDir, { now: () => new Date(Date.now() - 100_000) });
  await journal.begin({ id: 'sf-1', sequence: 'secondary-failover', roleBefore: 'secondary', roleAfter: 'primary' });
  await journal.finish({ ok: true });
  // The failover ended 100 s ago; the first agent run wrote that it has been unprotected since 166 s ago.
  await writeProtectionState(cfg.node.stateDir, {
    unprotectedSince: new Date(Date.now() - 166_000).toISOString(),
    lastFailover: { sequence: 'secondary-failover', trigger: 'peer-down', ok: true, durationMs: 35.5 },
  });

  const first = new Agent(cfg, { logger: silentLogger(), key: undefined });
  await first.start();
  const s1 = first.status();
  t.equal(s1.state, 'solo');
  t.ok(s1.failback?.unprotectedForMs !== undefined && s1.failback.unprotectedForMs >= 166_000 && s1.failback.unprotectedForMs < 200_000, `unprotected ${s1.failback?.unprotectedForMs} ms: from before the restart`);
  t.match(s1.lastFailover, { sequence: 'secondary-failover', trigger: 'peer-down', ok: true, durationMs: 35.5 }, 'the last failover is remembered');
  t.equal(s1.role, 'primary', 'the journal says primary');
  await first.stop('test');

  const since = (JSON.parse(readFileSync(join(cfg.node.stateDir, PROTECTION_FILE_NAME), 'utf8')) as { unprotectedSince: string }).unprotectedSince;
  t.ok(Math.abs(Date.now() - Date.parse(since) - 166_000) < 30_000, `still unprotected since ${since}`);

  const second = new Agent(cfg, { logger: silentLogger(), key: undefined });
  t.teardown(() => second.stop('test teardown'));
  await second.start();
  const s2 = second.status();
  t.ok((s2.failback?.unprotectedForMs ?? 0) >= 166_000, `after a second restart: ${s2.failback?.unprotectedForMs} ms`);
});

t.test('without protection.json (an older agent), the failover end in the journal is the start', async (t) => {
  const dir = shortTempDir(t, 'pj-');
  const cfg = await loneAgentConfig('primary', dir);
  mkdirSync(cfg.node.stateDir, { recursive: true });
  const journal = await Journal.open(cfg.node.stateDir, { now: () => new Date(Date.now() - 50_000) });
  await journal.begin({ id: 'pf-1', sequence: 'primary-failover', roleBefore: 'primary', roleAfter: 'primary' });
  await journal.finish({ ok: true });
  const agent = new Agent(cfg, { logger: silentLogger(), key: undefined });
  t.teardown(() => agent.stop('test teardown'));
  await agent.start();
  const ms = agent.status().failback?.unprotectedForMs ?? 0;
  t.ok(ms >= 50_000 && ms < 80_000, `unprotected ${ms} ms: since the journal's endedAt`);
});
