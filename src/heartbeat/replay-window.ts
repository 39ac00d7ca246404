/**
 * Anti-replay sliding window over sequence numbers (IPsec style, RFC 4303 3.4.3; bitmap kept as
 * a ring like RFC 6479 so sliding costs nothing per frame).
 *
 * A peer agent numbers every frame it sends with ONE counter across all its links, so frames of
 * one peer session arrive interleaved from several connections and slightly out of order. The
 * window accepts any unseen number within `size` of the highest seen one. The default is larger
 * than IPsec's 64 because the skew between a fast and a slow path is measured in frames: at a
 * 50 ms interval two links carry about 80 frames per second from the peer, so 1024 tolerates
 * ~12 s of skew before a slow link's frames count as too old.
 */
export const DEFAULT_REPLAY_WINDOW = 1024;

export type ReplayVerdict = 'ok' | 'duplicate' | 'too-old';

export class ReplayWindow {
  readonly size: number;
  private readonly bits: Uint32Array;
  /** Highest accepted sequence number, -1 before the first. */
  private top = -1;

  constructor(size = DEFAULT_REPLAY_WINDOW) {
    if (!Number.isSafeInteger(size) || size < 32 || size % 32 !== 0) {
      throw new RangeError('replay window size must be a positive multiple of 32');
    }
    this.size = size;
    this.bits = new Uint32Array(size / 32);
  }

  get highest(): number | undefined {
    return this.top < 0 ? undefined : this.top;
  }

  /** What accept(seq) would say, without recording anything. */
  check(seq: number): ReplayVerdict {
    if (!Number.isSafeInteger(seq) || seq < 0) return 'too-old';
    if (seq > this.top) return 'ok';
    if (seq <= this.top - this.size) return 'too-old';
    return this.isSet(seq) ? 'duplicate' : 'ok';
  }

  /** Records seq if it is fresh; returns the verdict either way. */
  accept(seq: number): ReplayVerdict {
    const verdict = this.check(seq);
    if (verdict !== 'ok') return verdict;
    if (seq > this.top) {
      // Slide: forget the numbers that fall out of the window (they share ring slots with the new ones).
      const gap = seq - this.top;
      if (this.top < 0 || gap >= this.size) {
        this.bits.fill(0);
      } else {
        for (let s = this.top + 1; s < seq; s++) this.clear(s);
      }
      this.top = seq;
    }
    this.set(seq);
    return 'ok';
  }

  private isSet(seq: number): boolean {
    const i = seq % this.size;
    return ((this.bits[i >>> 5]! >>> (i & 31)) & 1) === 1;
  }

  private set(seq: number): void {
    const i = seq % this.size;
    this.bits[i >>> 5]! |= 1 << (i & 31);
  }

  private clear(seq: number): void {
    const i = seq % this.size;
    this.bits[i >>> 5]! &= ~(1 << (i & 31));
  }
}
