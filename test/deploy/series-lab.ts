/**
 * What the series scenarios (series-scenarios.ts) do to a lab pair beyond lab-colo.ts and the
 * campaign's TrialLab: cut one heartbeat link, send frames signed with a wrong key, switch
 * maintenance mode with an agent's own config, and a scope that stands in for a tap Test outside
 * tap (teardowns, skip reason).
 */
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import { encodeFrame } from '../../src/heartbeat/frame.js';
import { runCli } from '../helpers/cli.js';
import { HEARTBEAT_PORT, type LabColoHarness, type PairHost } from '../lab/lab-colo.js';
import type { Lab } from '../lab/netns.js';

/** A tap Test's teardown and skip, for the recording script (run outside tap). */
export { OutsideTapScope as Scope } from '../lab/scope.js';

const MGMT_TABLE = 'alertseries_mgmt';

/**
 * Drop the management link (mgmt0) on both hosts of the pair: one heartbeat path dies, the
 * replication link still carries the other (what a failed switch port does). lab.partition() would
 * cut both links.
 */
export async function cutMgmtLink(lab: Lab): Promise<void> {
  const script = [
    `table inet ${MGMT_TABLE} {`,
    '  chain input { type filter hook input priority -20; policy accept; iifname "mgmt0" drop; }',
    '  chain output { type filter hook output priority -20; policy accept; oifname "mgmt0" drop; }',
    '}',
    '',
  ].join('\n');
  for (const h of ['a', 'b'] as const) {
    const r = await lab.exec(h, ['nft', '-f', '-'], { input: script });
    if (r.code !== 0) throw new Error(`nft on ${h}: ${r.stderr}`);
  }
}

export async function restoreMgmtLink(lab: Lab): Promise<void> {
  for (const h of ['a', 'b'] as const) await lab.exec(h, ['nft', 'delete', 'table', 'inet', MGMT_TABLE]);
}

/**
 * A HELLO signed with a key that is not the pair's, sent to `host`'s heartbeat port over its control
 * link (the agent listens on 0.0.0.0): what an agent with another key file sends. The agent drops
 * the connection and counts it under reason bad-mac. Resolves once the agent has closed it.
 */
export function sendWrongKeyHello(lab: Lab, host: PairHost): Promise<void> {
  const session = randomBytes(8).toString('hex');
  const frame = encodeFrame({
    session,
    seq: 1,
    epoch: 0,
    key: randomBytes(32),
    message: { type: 'hello', body: { name: 'intruder', role: 'secondary', session, protocolVersion: 1, nonce: randomBytes(16).toString('hex') } },
  });
  return new Promise((resolve) => {
    const sock = net.connect({ host: lab.controlAddr(host), port: HEARTBEAT_PORT }, () => sock.write(frame));
    const done = () => {
      clearTimeout(timer);
      sock.destroy();
      resolve();
    };
    const timer = setTimeout(done, 3000);
    sock.on('error', done);
    sock.on('close', done);
    sock.on('data', () => undefined);
  });
}

/** `colo-agent maintenance on|off` with `host`'s agent config (it writes a file in that agent's state dir). */
export async function maintenance(lc: LabColoHarness, host: PairHost, qmp: string, action: 'on' | 'off'): Promise<void> {
  const opts = lc.agentOptions(host, qmp);
  const r = await runCli(['maintenance', action, '--config', opts.config, ...opts.sets.flatMap((s) => ['--set', s]), ...(action === 'on' ? ['--reason', 'planned work'] : [])]);
  if (r.code !== 0) throw new Error(`maintenance ${action} on ${host}: ${r.stderr}`);
}
