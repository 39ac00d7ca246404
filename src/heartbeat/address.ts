/**
 * HOST:PORT strings of the heartbeat listen and peer options. IPv6 literals go in brackets:
 * `[fd00::1]:7400`.
 */
import { isIP } from 'node:net';
import { HeartbeatOptionsError } from './errors.js';

export interface HostPort {
  host: string;
  port: number;
}

const HOSTNAME_RE = /^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$/;

/** Parses HOST:PORT; `allowPortZero` for listen addresses (0 = pick a free port). */
export function parseHostPort(s: string, allowPortZero = false): HostPort {
  const m = /^(?:\[([^\]]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(s);
  if (m === null) throw new HeartbeatOptionsError(`address ${JSON.stringify(s)} is not HOST:PORT`);
  const host = m[1] ?? m[2] ?? '';
  if (m[1] !== undefined && isIP(host) !== 6) throw new HeartbeatOptionsError(`address ${JSON.stringify(s)}: bracketed host is not IPv6`);
  if (m[2] !== undefined && isIP(host) === 0 && !HOSTNAME_RE.test(host)) {
    throw new HeartbeatOptionsError(`address ${JSON.stringify(s)}: invalid host`);
  }
  const port = Number(m[3]);
  if (port > 65535 || (port === 0 && !allowPortZero)) throw new HeartbeatOptionsError(`address ${JSON.stringify(s)}: invalid port`);
  return { host, port };
}

export function formatHostPort(a: HostPort): string {
  return isIP(a.host) === 6 ? `[${a.host}]:${a.port}` : `${a.host}:${a.port}`;
}
