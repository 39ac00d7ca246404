/**
 * Is the peer's QEMU still there? Asked when the peer's agent falls silent, to tell apart two
 * look-alikes that are both silent on the heartbeat links:
 *
 * - the peer *agent* crashed while its QEMU lives: taking over now would run the VM twice;
 * - the peer *host* died (power, kernel panic) or its QEMU died: taking over is the whole point.
 *
 * We open a TCP connection to a port the peer's QEMU listens on for COLO (the primary's mirror0
 * chardev server, the secondary's NBD export). The answer comes from the peer's kernel, not from
 * any process we are unsure of:
 * - `alive`: the handshake completed, so the listening socket exists, so the QEMU process exists
 *   (a listening socket dies with its process);
 * - `refused`: the host answered with a reset: its kernel is up and nothing listens: QEMU is gone;
 * - `silent`: no answer within the timeout: host down, or the network to it is cut. A partition
 *   looks exactly like this, which is what the arbiter (split-brain issue) is for.
 * We close the probe connection at once; QEMU sees at most a client that connected and left.
 */
import { connect } from 'node:net';

export type PeerQemuVerdict = 'alive' | 'refused' | 'silent';

export interface PeerQemuProbeResult {
  verdict: PeerQemuVerdict;
  /** How long the probe took, ms. */
  tookMs: number;
  /** The socket error behind refused/silent, e.g. ECONNREFUSED, EHOSTUNREACH, timeout. */
  detail: string;
  /**
   * The peer agent's heartbeat ports, when they were probed too: `alive` if any completed a
   * handshake (a listening socket of the agent exists: the process lives, maybe frozen), else
   * `refused` if any refused (its host is up and the agent process is gone), else `silent`.
   */
  agent?: PeerQemuVerdict;
}

/** Errors that mean "a live kernel answered and nobody listens". */
const REFUSED = new Set(['ECONNREFUSED', 'ECONNRESET']);

/**
 * Probes the peer QEMU's port and, at the same time, other ports on the peer's host(s) (its
 * agent's heartbeat listeners). A QEMU chardev server stops accepting while its one client is
 * connected, so once its small listen queue has filled (each earlier probe leaves an entry there)
 * its port goes silent although QEMU lives. Any answer on another port of the host, even a
 * refusal, proves the host up, and then a silent QEMU port is a full queue, not a lost host.
 */
export async function probePeerQemuAndHost(
  qemu: { host: string; port: number },
  hostPorts: ReadonlyArray<{ host: string; port: number }>,
  timeoutMs: number,
): Promise<PeerQemuProbeResult> {
  const [q, ...others] = await Promise.all([
    probePeerQemu(qemu.host, qemu.port, timeoutMs),
    ...hostPorts.map((a) => probePeerQemu(a.host, a.port, timeoutMs)),
  ]);
  const agent: PeerQemuVerdict | undefined =
    others.length === 0 ? undefined : others.some((o) => o.verdict === 'alive') ? 'alive' : others.some((o) => o.verdict === 'refused') ? 'refused' : 'silent';
  const withAgent = (r: PeerQemuProbeResult): PeerQemuProbeResult => (agent === undefined ? r : { ...r, agent });
  if (q!.verdict !== 'silent') return withAgent(q!);
  const answered = others.find((o) => o.verdict !== 'silent');
  return withAgent(answered ? { verdict: 'alive', tookMs: q!.tookMs, detail: `${q!.detail}; host answers on another port: listen queue full` } : q!);
}

export function probePeerQemu(host: string, port: number, timeoutMs: number): Promise<PeerQemuProbeResult> {
  const started = performance.now();
  return new Promise((resolve) => {
    const socket = connect({ host, port });
    let settled = false;
    const finish = (verdict: PeerQemuVerdict, detail: string) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      resolve({ verdict, detail, tookMs: performance.now() - started });
    };
    const timer = setTimeout(() => finish('silent', 'timeout'), timeoutMs);
    socket.once('connect', () => finish('alive', 'connected'));
    socket.once('error', (err: NodeJS.ErrnoException) => {
      const code = err.code ?? 'error';
      finish(REFUSED.has(code) ? 'refused' : 'silent', code);
    });
  });
}
