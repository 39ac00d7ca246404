/**
 * QMP endpoint addresses, written the way QEMU's own -qmp option spells them (minus the
 * server options): `unix:/run/colo/qmp.sock` or `tcp:127.0.0.1:4444` (`tcp:[::1]:4444` for IPv6).
 *
 * Exported so config validation can reject a bad address at startup with the same message the
 * client would give, instead of the agent finding out at its first reconnect.
 */
import { isIP } from 'node:net';
import { QmpAddressError } from './errors.js';

export type QmpAddress = { kind: 'unix'; path: string } | { kind: 'tcp'; host: string; port: number };

/** sun_path is 108 bytes on Linux including the terminating NUL; longer paths fail obscurely at connect(). */
export const MAX_UNIX_PATH_BYTES = 107;

const HOSTNAME = /^(?=.{1,253}$)[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,62})(?:\.[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,62}))*\.?$/;

/** Parses and validates; throws QmpAddressError saying what is wrong. */
export function parseQmpAddress(input: string): QmpAddress {
  if (typeof input !== 'string' || input.length === 0) {
    throw new QmpAddressError(String(input), 'empty');
  }
  if (input.trim() !== input) throw new QmpAddressError(input, 'has leading or trailing whitespace');
  const colon = input.indexOf(':');
  const scheme = colon < 0 ? '' : input.slice(0, colon);
  const rest = colon < 0 ? '' : input.slice(colon + 1);
  if (scheme === 'unix') return { kind: 'unix', path: parseUnixPath(input, rest) };
  if (scheme === 'tcp') return parseTcp(input, rest);
  throw new QmpAddressError(input, colon < 0 ? 'no scheme' : `unknown scheme ${JSON.stringify(scheme)}`);
}

function parseUnixPath(input: string, path: string): string {
  if (path.length === 0) throw new QmpAddressError(input, 'empty socket path');
  if (path.includes('\0')) throw new QmpAddressError(input, 'socket path contains a NUL byte');
  // People paste QEMU's own argument ("unix:/x.sock,server=on,wait=off"); say so plainly.
  if (/,(server|wait|nowait)\b/.test(path)) {
    throw new QmpAddressError(input, 'looks like a QEMU -qmp argument; give only the socket path, without ",server=on,..."');
  }
  const bytes = Buffer.byteLength(path);
  if (bytes > MAX_UNIX_PATH_BYTES) {
    throw new QmpAddressError(input, `socket path is ${bytes} bytes, unix sockets allow at most ${MAX_UNIX_PATH_BYTES}`);
  }
  return path;
}

function parseTcp(input: string, rest: string): QmpAddress {
  const lastColon = rest.lastIndexOf(':');
  if (lastColon < 0) throw new QmpAddressError(input, 'missing :PORT');
  let host = rest.slice(0, lastColon);
  const portText = rest.slice(lastColon + 1);
  if (host.startsWith('[') && host.endsWith(']')) {
    host = host.slice(1, -1);
    if (isIP(host) !== 6) throw new QmpAddressError(input, `${JSON.stringify(host)} in brackets is not an IPv6 address`);
  } else if (host.includes(':')) {
    throw new QmpAddressError(input, 'an IPv6 host must be written in brackets, e.g. tcp:[::1]:4444');
  } else if (host.length === 0) {
    throw new QmpAddressError(input, 'empty host');
  } else if (isIP(host) === 0 && !HOSTNAME.test(host)) {
    throw new QmpAddressError(input, `${JSON.stringify(host)} is not a valid host name or IP address`);
  }
  if (!/^[0-9]{1,5}$/.test(portText)) throw new QmpAddressError(input, `port ${JSON.stringify(portText)} is not a number`);
  const port = Number(portText);
  if (port < 1 || port > 65535) throw new QmpAddressError(input, `port ${port} is outside 1..65535`);
  return { kind: 'tcp', host, port };
}

/** The canonical string form; parseQmpAddress(formatQmpAddress(a)) deep-equals a. */
export function formatQmpAddress(addr: QmpAddress): string {
  if (addr.kind === 'unix') return `unix:${addr.path}`;
  return isIP(addr.host) === 6 ? `tcp:[${addr.host}]:${addr.port}` : `tcp:${addr.host}:${addr.port}`;
}
