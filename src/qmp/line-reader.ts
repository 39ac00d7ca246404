/**
 * Splits a byte stream into lines with a hard size limit.
 *
 * The limit matters because a peer that never sends a newline (a wrong port, a broken proxy)
 * would otherwise make us buffer without bound. Bytes are kept as Buffers until a whole line is
 * there, so a multi-byte UTF-8 character split across two reads decodes correctly.
 */
import { QmpProtocolError } from './errors.js';

const LF = 0x0a;
const CR = 0x0d;

export class LineReader {
  private parts: Buffer[] = [];
  private partBytes = 0;

  /** @param maxLineBytes longest accepted line, not counting its "\n" or "\r\n" */
  constructor(private readonly maxLineBytes: number) {
    if (!(Number.isInteger(maxLineBytes) && maxLineBytes > 0)) {
      throw new RangeError(`maxLineBytes must be a positive integer, got ${maxLineBytes}`);
    }
  }

  /**
   * Calls onLine for every complete line in order (empty lines are skipped), and keeps the rest.
   * Throws QmpProtocolError('line-too-long') once a line is known to exceed the limit; the lines
   * before it have been delivered by then.
   */
  feed(chunk: Buffer, onLine: (line: string) => void): void {
    let start = 0;
    for (;;) {
      const lf = chunk.indexOf(LF, start);
      if (lf < 0) break;
      const piece = chunk.subarray(start, lf);
      start = lf + 1;
      let line = this.parts.length === 0 ? piece : Buffer.concat([...this.parts, piece]);
      this.parts = [];
      this.partBytes = 0;
      if (line.length > 0 && line[line.length - 1] === CR) line = line.subarray(0, line.length - 1);
      this.checkLength(line.length);
      if (line.length > 0) onLine(line.toString('utf8'));
    }
    if (start < chunk.length) {
      const rest = chunk.subarray(start);
      this.partBytes += rest.length;
      // +1: the partial line may still end in the "\r" of a "\r\n" that is not counted.
      if (this.partBytes > this.maxLineBytes + 1) {
        this.parts = [];
        const n = this.partBytes;
        this.partBytes = 0;
        throw new QmpProtocolError('line-too-long', `${n} bytes without a newline exceed the line limit of ${this.maxLineBytes} bytes`);
      }
      // Copy: the socket may reuse the chunk's memory, and a subarray would pin the whole chunk.
      this.parts.push(Buffer.from(rest));
    }
  }

  /** Bytes of an unfinished line held back. */
  get pendingBytes(): number {
    return this.partBytes;
  }

  /** Call at end of stream: a half line means the peer went away mid-message. */
  end(): void {
    if (this.partBytes > 0) {
      const n = this.partBytes;
      this.parts = [];
      this.partBytes = 0;
      throw new QmpProtocolError('closed-mid-line', `peer closed the connection in the middle of a line (${n} bytes without a newline)`);
    }
  }

  private checkLength(n: number): void {
    if (n > this.maxLineBytes) {
      throw new QmpProtocolError('line-too-long', `line of ${n} bytes exceeds the limit of ${this.maxLineBytes} bytes`);
    }
  }
}
