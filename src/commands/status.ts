/**
 * `colo-agent status --config FILE [--json]`: asks the running agent (its HTTP /status on
 * metrics.listen) and prints a short human summary, or the JSON as it came.
 */
import { request } from 'node:http';
import type { AgentStatus } from '../agent.js';
import { ColoAgentError } from '../errors.js';
import { parseHostPort } from '../heartbeat/address.js';

export class StatusUnavailableError extends ColoAgentError {
  constructor(message: string) {
    super('STATUS_UNAVAILABLE', message);
  }
}

export function fetchStatus(listen: string, timeoutMs = 3000): Promise<AgentStatus> {
  if (!listen) throw new StatusUnavailableError('metrics.listen is empty: the agent serves no /status');
  const { host, port } = parseHostPort(listen);
  // An agent listening on every interface is reached on loopback.
  const target = host === '0.0.0.0' ? '127.0.0.1' : host === '::' ? '::1' : host;
  return new Promise((resolve, reject) => {
    const req = request({ host: target, port, path: '/status', timeout: timeoutMs }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => {
        if (res.statusCode !== 200) return reject(new StatusUnavailableError(`GET /status answered ${res.statusCode}`));
        try {
          resolve(JSON.parse(body) as AgentStatus);
        } catch {
          reject(new StatusUnavailableError('GET /status did not return JSON'));
        }
      });
    });
    req.on('timeout', () => req.destroy(new StatusUnavailableError(`no answer from ${target}:${port} within ${timeoutMs} ms`)));
    req.on('error', (err) =>
      reject(err instanceof StatusUnavailableError ? err : new StatusUnavailableError(`cannot reach the agent at ${target}:${port}: ${err.message}`)),
    );
    req.end();
  });
}

/** A few lines an operator reads at a glance. */
export function formatStatus(s: AgentStatus): string {
  const peer = s.peer;
  const lines = [
    `node ${s.node}  role ${s.role}  state ${s.state}`,
    `qemu ${s.qemu.status}${s.qemu.version ? ` (QEMU ${s.qemu.version})` : ''}  COLO mode ${s.qemu.colo.mode}`,
    `peer ${peer.name ?? '?'} ${peer.state}${peer.silentForMs !== undefined ? `, last heartbeat ${peer.silentForMs} ms ago` : ''}${
      peer.qemuReachable === undefined ? '' : `, its QEMU ${peer.qemuReachable ? 'reachable' : 'UNREACHABLE'}`
    }${peer.probe ? ` (probe of ${peer.probe.target}: ${peer.probe.verdict}, ${Math.round(peer.probe.agoMs / 1000)} s ago)` : ''}`,
    ...s.links.map((l) => `  link ${l.link} ${l.state}${l.rttMs !== undefined ? `  rtt ${l.rttMs.toFixed(2)} ms` : ''}`),
  ];
  // Absent from an older agent's /status.
  const topo = s.topology;
  if (topo) {
    const who = (host: string) => (host === topo.self ? 'this node' : host === topo.peer ? 'the peer' : '?');
    lines.push(`hosts: primary ${topo.primaryHost} (${who(topo.primaryHost)}), secondary ${topo.secondaryHost} (${who(topo.secondaryHost)}); from ${topo.source}`);
  }
  // Absent from an older agent's /status.
  if (s.maintenance?.on) lines.push(`maintenance ON since ${s.maintenance.since ?? '?'}${s.maintenance.reason ? ` (${s.maintenance.reason})` : ''}: automatic failover suspended`);
  // Absent from an older agent's /status.
  if (s.epoch) {
    const e = s.epoch;
    lines.push(
      `epoch ${e.epoch}${e.stale ? `  STALE: epoch ${e.newestSeen} exists (from ${e.newestSeenFrom ?? '?'}); this node stays passive` : ''}` +
        (s.arbiter ? `  arbiter ${s.arbiter.mode}${s.arbiter.mode === 'none' ? '' : s.arbiter.reachable ? ' reachable' : ' UNREACHABLE'}` : '') +
        (s.arbiter?.leaseRemainingMs !== undefined ? `  lease ${Math.round(s.arbiter.leaseRemainingMs)} ms left` : ''),
    );
  }
  if (s.guestStopped) lines.push(`guest PAUSED by the agent (${s.guestStopped === 'lease' ? 'cut off from peer and arbiter, lease ran out' : 'stale epoch'})`);
  const f = s.lastFailover;
  if (f) lines.push(`last failover: ${f.sequence} (${f.trigger}) ${f.ok ? 'ok' : 'FAILED'} in ${f.durationMs} ms${f.error ? `: ${f.error}` : ''}`);
  lines.push(...failbackLines(s));
  return lines.join('\n');
}

/** Unprotected time, the resync in flight, the last resume, and a QEMU the agent launched. */
function failbackLines(s: AgentStatus): string[] {
  const out: string[] = [];
  const b = s.failback;
  if (b?.unprotectedForMs !== undefined) {
    out.push(
      `UNPROTECTED for ${Math.round(b.unprotectedForMs / 1000)} s` +
        (b.peerReady ? `; the peer's fresh secondary is ready (epoch ${b.peerReady.epoch})` : '; waiting for a fresh secondary on the peer') +
        (b.nextAttemptInMs !== undefined ? `; next resume attempt in ${Math.round(b.nextAttemptInMs / 1000)} s` : ''),
    );
  }
  if (b?.progress) out.push(`resync ${b.progress.percent.toFixed(1)}% (${b.progress.offset} of ${b.progress.len} bytes)`);
  const r = b?.lastResume;
  if (r) {
    const how = r.ok ? 'ok' : r.rolledBack ? 'FAILED, rolled back' : 'FAILED, rollback failed too';
    const figures = [r.resyncMs !== undefined && `resync ${r.resyncMs} ms`, r.pauseMs !== undefined && `pause ${r.pauseMs} ms`].filter(Boolean).join(', ');
    out.push(`last resume: ${r.sequence} ${how}${figures ? ` (${figures})` : ''}${r.error ? `: ${r.error}` : ''}`);
  }
  const l = s.qemu.launch;
  if (l) {
    const exit = l.lastExit ? `; last exit: ${l.lastExit.signal ?? `code ${l.lastExit.code ?? '?'}`}` : '';
    out.push(
      `launched QEMU: ${l.running ? `pid ${l.pid}${l.adopted ? ' (adopted)' : ''} running` : 'not running'}; ${l.launches} launches, ` +
        `${l.restartsInWindow} restarts in window${l.restartDeferred ? '; restart deferred (this node is primary or busy)' : ''}` +
        `${l.gaveUp ? '; GAVE UP (restart budget spent): restart the agent' : ''}${exit}`,
    );
  }
  return out;
}
