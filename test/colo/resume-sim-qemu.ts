/**
 * A small simulated QEMU behind the fake QMP server, for unit tests of the resume runner and
 * executor without QEMU: just enough state (guest run state, COLO mode, block jobs, named nodes,
 * objects, migration, NBD server) for the resume commands, with the replies, error texts and
 * events QEMU 7.2.22 gives (as recorded against real QEMU in resume.real.test.ts). Faults are
 * scripted per command (`override`) or through the mirror/migration behaviours.
 */
import type { FakeQmpConnection, ReceivedCommand } from '../helpers/fake-qmp-server.js';

export type SimAnswer = { return: unknown } | { error: [string, string] } | 'silent' | 'disconnect';

export interface SimOptions {
  /** drive-mirror: 'ready' (progress, then READY), 'error' (BLOCK_JOB_ERROR + COMPLETED with error), 'hang' (never ready). */
  mirror?: 'ready' | 'error' | 'hang';
  /** block-job-cancel of a READY job ends it with: 'completed' (QEMU's way), 'cancelled', 'error'. */
  cancelEnds?: 'completed' | 'cancelled' | 'error';
  /** migrate: 'colo' (enters COLO, guest runs), 'fail' (status failed), 'plain' (completed, no COLO), 'hang' (stays active). */
  migrate?: 'colo' | 'fail' | 'plain' | 'hang';
  /** Objects present at start (e.g. rew0). */
  objects?: string[];
  /** A reply instead of the simulation, per command (a function may return undefined to simulate). */
  override?: Record<string, SimAnswer | ((cmd: ReceivedCommand) => SimAnswer | undefined)>;
}

const LEN = 64 * 1024 * 1024;

export class SimQemu {
  running = true;
  status = 'running';
  coloMode = 'none';
  migration: string | undefined;
  readonly jobs = new Map<string, { len: number; offset: number; ready: boolean }>();
  readonly nodes = new Set(['#block086', '#block143']);
  readonly children = new Set(['children.0']);
  readonly objects: Set<string>;
  nbdServer = false;
  readonly exports = new Set<string>();
  private conn: FakeQmpConnection | undefined;

  constructor(readonly opts: SimOptions = {}) {
    this.objects = new Set(opts.objects ?? []);
  }

  /** For FakeQmpServer's onCommand. */
  readonly onCommand = (cmd: ReceivedCommand, conn: FakeQmpConnection): void => {
    this.conn = conn;
    const o = this.opts.override?.[cmd.execute];
    const a = typeof o === 'function' ? o(cmd) : o;
    const answer = a ?? this.simulate(cmd);
    if (answer === 'silent') return;
    if (answer === 'disconnect') conn.destroy();
    else if ('error' in answer) conn.error(cmd.id, answer.error[0], answer.error[1]);
    else conn.reply(cmd.id, answer.return);
  };

  private event(name: string, data?: Record<string, unknown>, delayMs = 0): void {
    const send = () => this.conn?.event(name, data);
    if (delayMs === 0) setImmediate(send);
    else setTimeout(send, delayMs);
  }

  private setRunning(running: boolean, status = running ? 'running' : 'paused'): void {
    const was = this.running;
    this.running = running;
    this.status = status;
    if (was !== running) this.event(running ? 'RESUME' : 'STOP');
  }

  private simulate(cmd: ReceivedCommand): SimAnswer {
    const args = cmd.arguments ?? {};
    const id = String(args.id ?? args.device ?? '');
    const generic = (desc: string): SimAnswer => ({ error: ['GenericError', desc] });
    switch (cmd.execute) {
      case 'query-status':
        return { return: { running: this.running, status: this.status, singlestep: false } };
      case 'query-colo-status':
        return { return: { mode: this.coloMode, 'last-mode': 'none', reason: 'none' } };
      case 'query-migrate':
        return { return: this.migration === undefined ? {} : { status: this.migration, ...(this.migration === 'failed' && { 'error-desc': 'Connection refused' }) } };
      case 'query-block-jobs':
        return { return: [...this.jobs].map(([device, j]) => ({ device, len: j.len, offset: j.offset, ready: j.ready, status: j.ready ? 'ready' : 'running', type: 'mirror' })) };
      case 'query-named-block-nodes':
        return { return: [...this.nodes].map((n) => ({ 'node-name': n, drv: 'qcow2' })) };
      case 'qom-list':
        return { return: [{ name: 'type', type: 'string' }, ...[...this.objects].map((name) => ({ name, type: 'child<object>' }))] };
      case 'query-yank':
        return { return: [{ type: 'chardev', id: 'compat_monitor0' }, ...(this.migration ? [{ type: 'migration' }] : [])] };
      case 'drive-mirror': {
        const job = String(args['job-id']);
        this.jobs.set(job, { len: LEN, offset: 0, ready: false });
        const mode = this.opts.mirror ?? 'ready';
        if (mode === 'ready') {
          setTimeout(() => {
            const j = this.jobs.get(job);
            if (j) j.offset = LEN / 2;
          }, 5);
          setTimeout(() => {
            const j = this.jobs.get(job);
            if (!j) return;
            j.offset = LEN;
            j.ready = true;
            this.conn?.event('BLOCK_JOB_READY', { device: job, len: LEN, offset: LEN, speed: 0, type: 'mirror' });
          }, 30);
        } else if (mode === 'error') {
          setTimeout(() => {
            this.jobs.delete(job);
            this.conn?.event('BLOCK_JOB_ERROR', { device: job, operation: 'write', action: 'report' });
            this.conn?.event('BLOCK_JOB_COMPLETED', { device: job, len: LEN, offset: 0, speed: 0, type: 'mirror', error: 'Input/output error' });
          }, 10);
        }
        return { return: {} };
      }
      case 'block-job-cancel': {
        const j = this.jobs.get(id);
        if (!j) return { error: ['DeviceNotActive', `Block job '${id}' not found`] };
        this.jobs.delete(id);
        const base = { device: id, len: j.len, offset: j.offset, speed: 0, type: 'mirror' };
        const ends = j.ready && args.force !== true ? (this.opts.cancelEnds ?? 'completed') : 'cancelled';
        if (ends === 'completed') this.event('BLOCK_JOB_COMPLETED', base);
        else if (ends === 'error') this.event('BLOCK_JOB_COMPLETED', { ...base, error: 'Input/output error' });
        else this.event('BLOCK_JOB_CANCELLED', base);
        return { return: {} };
      }
      case 'stop':
        this.setRunning(false);
        return { return: {} };
      case 'cont':
        this.setRunning(true);
        return { return: {} };
      case 'human-monitor-command': {
        const line = String(args['command-line']);
        const add = /node-name=([^,\s]+)/.exec(line);
        if (line.startsWith('drive_add') && add) {
          if (this.nodes.has(add[1] as string)) return { return: `Duplicate nodes with node-name='${add[1]}'\r\n` };
          this.nodes.add(add[1] as string);
          return { return: '' };
        }
        const del = /^drive_del (\S+)/.exec(line);
        if (del) {
          if (!this.nodes.delete(del[1] as string)) return { return: `Device '${del[1]}' not found\r\n` };
          return { return: '' };
        }
        return { return: `unknown command: '${line}'\r\n` };
      }
      case 'x-blockdev-change':
        if (args.node !== undefined) {
          this.children.add('children.1');
          return { return: {} };
        }
        if (!this.children.delete(String(args.child))) return generic(`Node '${String(args.parent)}' does not have child '${String(args.child)}'`);
        return { return: {} };
      case 'object-add':
        if (this.objects.has(id)) return generic(`attempt to add duplicate property '${id}' to object (type 'container')`);
        this.objects.add(id);
        return { return: {} };
      case 'object-del':
        if (!this.objects.delete(id)) return generic(`object '${id}' not found`);
        return { return: {} };
      case 'migrate': {
        this.migration = 'active';
        const mode = this.opts.migrate ?? 'colo';
        setTimeout(() => {
          if (this.migration !== 'active') return;
          if (mode === 'colo') {
            this.migration = 'colo';
            this.coloMode = 'primary';
            this.setRunning(true);
          } else if (mode === 'fail') {
            this.migration = 'failed';
          } else if (mode === 'plain') {
            this.migration = 'completed';
            this.status = 'postmigrate';
          }
        }, 20);
        return { return: {} };
      }
      case 'migrate_cancel':
        if (this.migration === 'active') this.migration = 'cancelled';
        return { return: {} };
      case 'x-colo-lost-heartbeat':
        if (this.coloMode === 'none') return generic('VM is not in COLO mode');
        this.coloMode = 'none';
        this.migration = 'completed';
        return { return: {} };
      case 'nbd-server-start':
        if (this.nbdServer) return generic('NBD server already running');
        this.nbdServer = true;
        return { return: {} };
      case 'nbd-server-add':
        if (this.exports.has(String(args.device))) return generic(`Block export id '${String(args.device)}' is already in use`);
        this.exports.add(String(args.device));
        return { return: {} };
      default:
        return { return: {} };
    }
  }
}
