/**
 * What we know about peer agents' sessions: the current session id per peer name, one replay
 * window per current session, and the recently retired session ids.
 *
 * A session id is random per agent process, so a new id under a known name means the peer
 * restarted: the old id is retired, and a HELLO that still carries it (an attacker replaying a
 * recorded HELLO, or a very late frame) is refused as `replay` instead of flipping the peer back.
 */
import { ReplayError } from './errors.js';
import { DEFAULT_REPLAY_WINDOW, ReplayWindow } from './replay-window.js';

export interface PeerSessionChange {
  kind: 'new' | 'changed' | 'same';
  name: string;
  role: string;
  session: string;
  /** The session this one replaced (kind `changed`). */
  previous?: string;
}

interface Entry {
  name: string;
  role: string;
  session: string;
  window: ReplayWindow;
}

export interface PeerSessionsOptions {
  windowSize?: number;
  /** How many retired session ids to remember. */
  retiredLimit?: number;
}

export class PeerSessions {
  private readonly byName = new Map<string, Entry>();
  private readonly bySession = new Map<string, Entry>();
  /** Insertion-ordered, trimmed to retiredLimit. */
  private readonly retired = new Set<string>();
  private readonly windowSize: number;
  private readonly retiredLimit: number;

  constructor(opts: PeerSessionsOptions = {}) {
    this.windowSize = opts.windowSize ?? DEFAULT_REPLAY_WINDOW;
    this.retiredLimit = opts.retiredLimit ?? 64;
    new ReplayWindow(this.windowSize); // validate the size now, not at the first peer
  }

  isRetired(session: string): boolean {
    return this.retired.has(session);
  }

  current(name: string): { session: string; role: string } | undefined {
    const e = this.byName.get(name);
    return e && { session: e.session, role: e.role };
  }

  /** Throws ReplayError if a HELLO (session, seq) cannot be fresh. Records nothing. */
  checkHello(session: string, seq: number): void {
    if (this.retired.has(session)) throw new ReplayError('HELLO from a retired session (peer has restarted since)');
    const e = this.bySession.get(session);
    if (e !== undefined) {
      const verdict = e.window.check(seq);
      if (verdict !== 'ok') throw new ReplayError(`HELLO sequence number ${verdict}`);
    }
  }

  /**
   * A connection proved the peer holds the key and is live (first frame under the connection
   * key). Registers its session, retiring the name's previous one, and records the HELLO's seq.
   */
  establish(name: string, role: string, session: string, helloSeq: number): PeerSessionChange {
    if (this.retired.has(session)) throw new ReplayError('session was retired while its handshake ran');
    const existing = this.bySession.get(session);
    if (existing !== undefined) {
      existing.window.accept(helloSeq); // already checked; a verdict other than ok changes nothing
      existing.role = role;
      return { kind: 'same', name: existing.name, role, session };
    }
    const prev = this.byName.get(name);
    const entry: Entry = { name, role, session, window: new ReplayWindow(this.windowSize) };
    entry.window.accept(helloSeq);
    this.byName.set(name, entry);
    this.bySession.set(session, entry);
    if (prev === undefined) return { kind: 'new', name, role, session };
    this.bySession.delete(prev.session);
    this.retire(prev.session);
    return { kind: 'changed', name, role, session, previous: prev.session };
  }

  /** Records a frame's seq for an established session; throws ReplayError if it is not fresh. */
  accept(session: string, seq: number): void {
    const e = this.bySession.get(session);
    if (e === undefined) throw new ReplayError('frame from a session that is not current');
    const verdict = e.window.accept(seq);
    if (verdict !== 'ok') throw new ReplayError(`sequence number ${seq} ${verdict}`);
  }

  private retire(session: string): void {
    this.retired.add(session);
    while (this.retired.size > this.retiredLimit) {
      const oldest = this.retired.values().next().value as string;
      this.retired.delete(oldest);
    }
  }
}
