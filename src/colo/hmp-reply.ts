/**
 * What an HMP reply (human-monitor-command's printed text) means: HMP prints its errors into a
 * successful QMP reply, so the text is the only verdict. One rule for every runner.
 */

/**
 * A flush that fails while a block node is closed is reported, but the close (drive_del) goes on:
 * the node is gone. QEMU 11.1 prints this for the NBD node of a dead secondary after a yank
 * (measured: "Failed flush for 'nbd://HOST:9999/parent0' during close: Input/output error", twice);
 * 7.2 prints nothing there.
 */
const CLOSE_FLUSH_WARNING = /^Failed flush for '[^']*' during close: .*$/;

/** True when the HMP text says the command worked: nothing, "OK", or only close-time flush warnings. */
export function hmpSucceeded(text: string): boolean {
  const lines = text
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter((l) => l !== '');
  return lines.every((l) => l === 'OK' || CLOSE_FLUSH_WARNING.test(l));
}

/** HMP's error text without the "Error: " prefix that 11.1 puts before it (7.2 prints the bare message). */
export function hmpMessage(text: string): string {
  return text.trim().replace(/^Error: /, '');
}
