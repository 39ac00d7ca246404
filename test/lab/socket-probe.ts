/**
 * Real sockets inside lab hosts, to check what a fault does on the wire: a TCP echo server, a
 * one-shot connect (did the handshake complete, was it refused, did the echo come back, or did
 * nothing answer), and a held connection that reports every event (FIN, RST) as it happens.
 * Each runs as a small plain-JS `node -e` program inside the host (`lab.spawn`), so it has that
 * host's addresses and is killed by that host's faults like any other of its processes.
 */
import type { ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import type { Lab, LabHost } from './netns.js';

const SERVER = `
const net = require('node:net');
const server = net.createServer((s) => { s.on('error', () => {}); s.pipe(s); });
server.listen(Number(process.argv[1]), '0.0.0.0', () => console.log('listening'));
`;

/** argv: host port timeoutMs send(0|1). One JSON line: {result, ms}. */
const CONNECT = `
const net = require('node:net');
const [host, port, timeoutMs, send] = process.argv.slice(1);
const t0 = Date.now();
const s = net.connect(Number(port), host);
const done = (result) => { console.log(JSON.stringify({ result, ms: Date.now() - t0 })); process.exit(0); };
const timer = setTimeout(() => done(connected ? 'no-reply' : 'timeout'), Number(timeoutMs));
let connected = false;
s.on('connect', () => { connected = true; if (send === '1') s.write('ping'); else done('connected'); });
s.on('data', () => done('echoed'));
s.on('error', (e) => done(e.code === 'ECONNREFUSED' ? 'refused' : e.code === 'ECONNRESET' ? 'reset' : 'error ' + e.code));
s.on('end', () => done('closed'));
`;

/** argv: host port. Lines: connected | data | end | error CODE | close; "write" on stdin sends a byte. */
const HOLD = `
const net = require('node:net');
const [host, port] = process.argv.slice(1);
const s = net.connect(Number(port), host);
s.setNoDelay(true);
s.on('connect', () => console.log('connected'));
s.on('data', () => console.log('data'));
s.on('end', () => console.log('end'));
s.on('error', (e) => console.log('error ' + e.code));
s.on('close', () => { console.log('close'); process.exit(0); });
process.stdin.on('data', () => s.write('x'));
`;

function lines(child: ChildProcess, onLine: (l: string) => void): void {
  createInterface({ input: child.stdout! }).on('line', onLine);
}

function firstLine(child: ChildProcess, what: string, timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${what}: no output within ${timeoutMs} ms`)), timeoutMs);
    lines(child, (l) => {
      clearTimeout(timer);
      resolve(l);
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${what}: exited (code ${code}) before any output`));
    });
  });
}

/** An echo server on 0.0.0.0:`port` inside `host`; resolves once it listens. Killed with its host's processes. */
export async function echoServer(lab: Lab, host: LabHost, port: number): Promise<ChildProcess> {
  const child = lab.spawn(host, [process.execPath, '-e', SERVER, String(port)], { stdio: ['ignore', 'pipe', 'inherit'] });
  await firstLine(child, `echo server on ${host}:${port}`, 10_000);
  return child;
}

export type ConnectResult = 'connected' | 'echoed' | 'no-reply' | 'timeout' | 'refused' | 'reset' | 'closed' | string;

/** One connect from `from` to address:port; with `send`, also a byte that the echo server should return. */
export async function tryConnect(lab: Lab, from: LabHost, address: string, port: number, opts: { timeoutMs?: number; send?: boolean } = {}): Promise<{ result: ConnectResult; ms: number }> {
  const timeoutMs = opts.timeoutMs ?? 1500;
  const child = lab.spawn(from, [process.execPath, '-e', CONNECT, address, String(port), String(timeoutMs), opts.send ? '1' : '0'], { stdio: ['ignore', 'pipe', 'inherit'] });
  return JSON.parse(await firstLine(child, `connect ${from} -> ${address}:${port}`, timeoutMs + 10_000)) as { result: ConnectResult; ms: number };
}

export interface HeldConnection {
  readonly events: readonly string[];
  /** Send one byte on the connection. */
  write(): void;
  /** The number of events so far: pass it as `since` to next() to look only at what came after. */
  cursor(): number;
  /** Resolves with the first event from `since` on (default: from now on) that matches, or undefined after timeoutMs. */
  next(predicate: (e: string) => boolean, timeoutMs: number, since?: number): Promise<string | undefined>;
  close(): void;
}

/** A connection from `from` to address:port held open, its events recorded; resolves once connected. */
export async function holdConnection(lab: Lab, from: LabHost, address: string, port: number): Promise<HeldConnection> {
  const child = lab.spawn(from, [process.execPath, '-e', HOLD, address, String(port)], { stdio: ['pipe', 'pipe', 'inherit'] });
  child.stdin!.on('error', () => undefined);
  const events: string[] = [];
  const waiters = new Set<() => void>();
  lines(child, (l) => {
    events.push(l);
    for (const w of [...waiters]) w();
  });
  const held: HeldConnection = {
    events,
    write: () => void child.stdin!.write('x'),
    cursor: () => events.length,
    next: (predicate, timeoutMs, since = events.length) => {
      const from0 = since;
      return new Promise((resolve) => {
        const check = () => {
          const hit = events.slice(from0).find(predicate);
          if (hit !== undefined) finish(hit);
        };
        const finish = (v: string | undefined) => {
          clearTimeout(timer);
          waiters.delete(check);
          resolve(v);
        };
        const timer = setTimeout(() => finish(undefined), timeoutMs);
        waiters.add(check);
        check();
      });
    },
    close: () => child.kill('SIGKILL'),
  };
  // Called before any output can have been read: the first event is the connect's outcome.
  const first = await held.next(() => true, 5000);
  if (first !== 'connected') {
    held.close();
    throw new Error(`held connection ${from} -> ${address}:${port}: ${first ?? 'no answer'}`);
  }
  return held;
}
