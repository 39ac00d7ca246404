#!/usr/bin/env node
/**
 * The `colo-agent` command. Exit codes: 0 success, 1 runtime failure (including a QMP error
 * reply), 2 usage or configuration error.
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
// Static imports are what `run` (a long-lived daemon whose resident memory counts) needs anyway,
// plus error reporting. Commands the agent never runs (demo, witness, status, keygen, failover,
// config-reference) are imported in their case below, so an agent does not carry their code.
import { checkConfig, loadFromSources, type ConfigSources } from './commands/check-config.js';
import type { DemoArbiter } from './demo/plan.js';
import type { DrillKind } from './demo/timeline.js';
import { formatMaintenance, maintenanceOff, maintenanceOn, readMaintenance } from './commands/maintenance.js';
import { requestResume } from './commands/resume.js';
import { pairAddresses } from './core/topology.js';
import { PLAN_SEQUENCES, planText } from './commands/plan.js';
import { profileForVersion, resolveQemuProfile, type QemuProfile } from './colo/profile.js';
import { parseJsonArgs, qmpCommand, UsageError } from './commands/qmp.js';
import { runAgent } from './commands/run.js';
import { ConfigError } from './config/index.js';
import { ColoAgentError } from './errors.js';
import { KeyFileError } from './heartbeat/errors.js';
import { createLogger } from './log.js';
import { QmpCommandError } from './qmp/index.js';
import { qemuAvailable } from './qemu/qemu-process.js';

/** A helper command's config load: typos in COLO_AGENT_* names are still reported, risky-setting warnings are the agent's and check-config's to give. */
const HELPER_COMMAND = { riskWarnings: false };

const USAGE = `usage: colo-agent <command> [options]

commands:
  run           --config FILE [--config FILE2 ...] [--set key=value ...]   run the agent
  check-config  --config FILE [--set key=value ...]   validate; print the effective config (secrets redacted)
  qmp           --qmp unix:PATH|tcp:HOST:PORT COMMAND [JSON-ARGS] [--timeout MS] [--oob]
                send one QMP command and print the JSON reply (exit 1 on a QMP error)
  plan          --config FILE --sequence SEQUENCE [--set key=value ...]
                print the exact QMP commands a sequence would send, without sending them: ${PLAN_SEQUENCES.join(', ')}
  failover      --config FILE [--qmp ADDR] [--set key=value ...]
                run the failover on this node's QEMU now (stop the agent first; journal-guarded)
  maintenance   on|off|status --config FILE [--reason TEXT] [--set key=value ...]
                suspend (on) or resume (off) automatic failover on this node (a file in node.stateDir)
  resume        --config FILE [--set key=value ...]
                ask this node's agent (the primary) to resume replication to the peer's ready secondary now
  status        --config FILE [--json]   ask the running agent (HTTP /status on metrics.listen)
  keygen        --out FILE [--force]   write a new random heartbeat key (mode 0600)
  demo          [--drill kill-primary|kill-secondary|partition] [--arbiter witness|none]
                a real QEMU COLO pair (TCG) on 127.0.0.1 / 127.0.0.2 with one agent per side, a witness
                on 127.0.0.3 as their arbiter (--arbiter none: no witness, a partition is a split brain)
                and a live view (Ctrl-C stops everything); --drill injects the fault, prints the
                failover timeline and exits (0 when exactly one side runs the guest alone)
  config-reference   print the Markdown reference of every config key (docs/configuration.md)
  version       print the version

Config keys can also come from COLO_AGENT_* environment variables (see README).`;

function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

const out = (s: string) => process.stdout.write(s.endsWith('\n') ? s : `${s}\n`);
const err = (s: string) => process.stderr.write(s.endsWith('\n') ? s : `${s}\n`);

function configSources(values: { config?: string[]; set?: string[] }): ConfigSources {
  if (!values.config?.length) throw new UsageError('--config FILE is required');
  return { files: values.config, sets: values.set ?? [] };
}

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case 'run': {
      const { values } = parseArgs({
        args: rest,
        options: { config: { type: 'string', multiple: true }, set: { type: 'string', multiple: true } },
      });
      const sources = configSources(values);
      // The risky settings (config/warnings.ts) are told once, as warn lines of the agent's log.
      const risks: string[] = [];
      const cfg = loadFromSources(sources, (w) => risks.push(w));
      const logger = createLogger({ level: cfg.log.level, base: { node: cfg.node.name } });
      for (const w of risks) logger.warn(w);
      process.on('uncaughtException', (e) => {
        // A bug, not bad input (bad input is handled where it arrives): log it and let the
        // service manager restart us rather than run in an unknown state.
        logger.fatal({ err: e }, 'uncaught exception');
        process.exit(70);
      });
      if (cfg.node.role === 'witness') await (await import('./commands/run-witness.js')).runWitness(cfg, logger);
      else await runAgent(cfg, logger, sources); // the sources again on SIGHUP
      return -1; // keep running until a signal
    }
    case 'check-config': {
      const { values } = parseArgs({
        args: rest,
        options: { config: { type: 'string', multiple: true }, set: { type: 'string', multiple: true } },
      });
      await checkConfig(configSources(values), out, (w) => err(`warning: ${w}`));
      return 0;
    }
    case 'qmp': {
      const { values, positionals } = parseArgs({
        args: rest,
        allowPositionals: true,
        options: { qmp: { type: 'string' }, timeout: { type: 'string', default: '5000' }, oob: { type: 'boolean', default: false } },
      });
      if (!values.qmp) throw new UsageError('--qmp unix:PATH or tcp:HOST:PORT is required');
      const [cmd, json, extra] = positionals;
      if (!cmd || extra !== undefined) throw new UsageError('give one QMP command and at most one JSON argument object');
      const timeoutMs = Number(values.timeout);
      if (!Number.isInteger(timeoutMs) || timeoutMs <= 0) throw new UsageError('--timeout must be a positive integer (ms)');
      const reply = await qmpCommand({ address: values.qmp, command: cmd, args: parseJsonArgs(json), timeoutMs, oob: values.oob });
      out(JSON.stringify(reply ?? {}));
      return 0;
    }
    case 'plan': {
      const { values } = parseArgs({
        args: rest,
        options: { config: { type: 'string', multiple: true }, set: { type: 'string', multiple: true }, sequence: { type: 'string' } },
      });
      if (!values.sequence) throw new UsageError(`--sequence is required: one of ${PLAN_SEQUENCES.join(', ')}`);
      const cfg = loadFromSources(configSources(values), (w) => err(`warning: ${w}`), HELPER_COMMAND);
      // plan sends nothing to QEMU, so "auto" means the QEMU installed here (and the header says so).
      let profile: QemuProfile;
      if (cfg.qemu.profile === 'auto') {
        const q = await qemuAvailable();
        if (!q.ok) throw new UsageError(`qemu.profile is auto and ${q.reason}: give the profile, e.g. --set qemu.profile=7.2`);
        profile = profileForVersion({ major: q.major, minor: q.minor, micro: q.micro }, 'installed');
      } else {
        profile = resolveQemuProfile(cfg.qemu.profile, undefined);
      }
      if (cfg.node.role === 'witness') throw new UsageError('plan prints what an agent beside a QEMU sends: node.role must be primary or secondary');
      // This node's host and the peer's, as the agent uses them (a fresh secondary's NBD export here, a resume's target there).
      const hosts = pairAddresses(cfg.node.role, cfg.colo);
      out(planText(cfg.colo, profile, values.sequence, { hosts, netdev: cfg.colo.netdev }));
      return 0;
    }
    case 'failover': {
      const { values } = parseArgs({
        args: rest,
        options: { config: { type: 'string', multiple: true }, set: { type: 'string', multiple: true }, qmp: { type: 'string' } },
      });
      const cfg = loadFromSources(configSources(values), (w) => err(`warning: ${w}`), HELPER_COMMAND);
      const logger = createLogger({ level: cfg.log.level, base: { node: cfg.node.name } });
      const { manualFailover } = await import('./commands/failover.js');
      const outcome = await manualFailover(cfg, values.qmp ?? cfg.qemu.qmp, logger);
      const r = outcome.result;
      out(JSON.stringify({ ok: outcome.ok, sequence: r.sequence, resumed: outcome.resumed, durationMs: r.durationMs, error: r.error?.message }));
      return outcome.ok ? 0 : 1;
    }
    case 'status': {
      const { values } = parseArgs({
        args: rest,
        options: { config: { type: 'string', multiple: true }, set: { type: 'string', multiple: true }, json: { type: 'boolean', default: false } },
      });
      const cfg = loadFromSources(configSources(values), (w) => err(`warning: ${w}`), HELPER_COMMAND);
      const { fetchStatus, formatStatus } = await import('./commands/status.js');
      const status = await fetchStatus(cfg.metrics.listen);
      out(values.json ? JSON.stringify(status, null, 2) : formatStatus(status));
      return 0;
    }
    case 'maintenance': {
      const { values, positionals } = parseArgs({
        args: rest,
        allowPositionals: true,
        options: { config: { type: 'string', multiple: true }, set: { type: 'string', multiple: true }, reason: { type: 'string' } },
      });
      const [action, extra] = positionals;
      if ((action !== 'on' && action !== 'off' && action !== 'status') || extra !== undefined) throw new UsageError('maintenance needs one of on, off, status');
      if (values.reason !== undefined && action !== 'on') throw new UsageError('--reason goes with maintenance on');
      const cfg = loadFromSources(configSources(values), (w) => err(`warning: ${w}`), HELPER_COMMAND);
      const dir = cfg.node.stateDir;
      if (action === 'on') {
        const { info, was } = await maintenanceOn(dir, values.reason ?? '');
        out(`${was ? 'maintenance was already on; ' : ''}${formatMaintenance(info)}`);
      } else if (action === 'off') {
        const was = await maintenanceOff(dir);
        out(was ? formatMaintenance(undefined) : 'maintenance was already off');
      } else {
        out(formatMaintenance(readMaintenance(dir)));
      }
      return 0;
    }
    case 'resume': {
      const { values, positionals } = parseArgs({
        args: rest,
        allowPositionals: true,
        options: { config: { type: 'string', multiple: true }, set: { type: 'string', multiple: true } },
      });
      if (positionals.length > 0) throw new UsageError('resume takes no arguments');
      const cfg = loadFromSources(configSources(values), (w) => err(`warning: ${w}`), HELPER_COMMAND);
      await requestResume(cfg.node.stateDir);
      out(`resume requested (${cfg.node.stateDir}): the agent resumes replication once the peer's secondary is ready; watch colo-agent status`);
      return 0;
    }
    case 'keygen': {
      const { values } = parseArgs({ args: rest, options: { out: { type: 'string' }, force: { type: 'boolean', default: false } } });
      if (!values.out) throw new UsageError('--out FILE is required');
      const { keygen } = await import('./commands/keygen.js');
      await keygen(values.out, values.force);
      err(`wrote a new heartbeat key to ${values.out} (mode 0600); copy it to the peer over a trusted channel`);
      return 0;
    }
    case 'demo': {
      const { values } = parseArgs({ args: rest, options: { drill: { type: 'string' }, arbiter: { type: 'string', default: 'witness' } } });
      const [{ demo }, { DEMO_ARBITERS }, { DRILL_KINDS }] = await Promise.all([import('./commands/demo.js'), import('./demo/plan.js'), import('./demo/timeline.js')]);
      const drill = values.drill;
      if (drill !== undefined && !DRILL_KINDS.includes(drill as DrillKind)) throw new UsageError(`--drill must be one of ${DRILL_KINDS.join(', ')}`);
      const arbiter = values.arbiter;
      if (!DEMO_ARBITERS.includes(arbiter as DemoArbiter)) throw new UsageError(`--arbiter must be one of ${DEMO_ARBITERS.join(', ')}`);
      return demo({
        drill: drill as DrillKind | undefined,
        arbiter: arbiter as DemoArbiter,
        out,
        err,
        tty: process.stdout.isTTY === true,
        write: (s) => process.stdout.write(s),
        columns: () => process.stdout.columns,
      });
    }
    case 'config-reference':
      out((await import('./commands/config-reference.js')).configReferenceMarkdown());
      return 0;
    case 'version':
    case '--version':
      out(version());
      return 0;
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      out(USAGE);
      return command === undefined ? 2 : 0;
    default:
      throw new UsageError(`unknown command "${command}"`);
  }
}

function report(e: unknown): number {
  if (e instanceof ConfigError) {
    err(`invalid configuration:\n${e.message}`);
    return 2;
  }
  if (e instanceof QmpCommandError) {
    out(JSON.stringify({ error: { class: e.errorClass, desc: e.desc } }));
    err(`QMP error: ${e.errorClass}: ${e.desc}`);
    return 1;
  }
  if (e instanceof UsageError || (e instanceof TypeError && 'code' in e && String(e.code).startsWith('ERR_PARSE_ARGS'))) {
    // One line and a hint: the whole help after a typo buries the line that says what was wrong.
    err(`${(e as Error).message}\n(colo-agent help lists every command and its options)`);
    return 2;
  }
  if (e instanceof KeyFileError) {
    err(`heartbeat key: ${e.message}`);
    return 2;
  }
  const sys = e as NodeJS.ErrnoException & { address?: string; port?: number };
  if (sys?.code === 'EADDRINUSE' || sys?.code === 'EADDRNOTAVAIL' || sys?.code === 'EACCES') {
    err(`cannot listen on ${sys.address ?? '?'}:${sys.port ?? '?'}: ${sys.code} (${sys.message})`);
    return 1;
  }
  if (e instanceof ColoAgentError) {
    err(`${e.code}: ${e.message}`);
    return 1;
  }
  err(`error: ${e instanceof Error ? e.stack ?? e.message : String(e)}`);
  return 1;
}

main(process.argv.slice(2)).then(
  (code) => {
    if (code >= 0) process.exitCode = code;
  },
  (e: unknown) => {
    process.exitCode = report(e);
  },
);
