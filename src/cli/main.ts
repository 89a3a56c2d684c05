import { readFileSync } from 'node:fs';
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { RlmError } from '../engine/errors.js';
import { redactUrl } from '../store/open.js';
import { EXIT, type ExitCode } from './common.js';
import { cancelCommand, dlqCommand, gateCommand } from './dlq.js';
import { inspectCommand } from './inspect.js';
import { budgetCommand, cancelRunCommand, purgeCommand, rmCommand, signalCommand } from './lifecycle.js';
import { resultsCommand } from './results.js';
import { runCommand, workerCommand } from './run.js';
import { compactCommand, doctorCommand, snapshotCommand } from './snapshot.js';
import { statusCommand } from './status.js';
import { workersCommand } from './workers.js';

function amount(name: string) {
  return (value: string): number => {
    const n = Number(value);
    if (value.trim() === '' || !Number.isFinite(n) || n < 0) throw new InvalidArgumentError(`Expected ${name} to be a number >= 0, got \`${value}\`.`);
    return n;
  };
}

function int(name: string, min = 0) {
  return (value: string): number => {
    const n = Number(value);
    if (!Number.isInteger(n) || n < min) throw new InvalidArgumentError(`Expected ${name} to be an integer >= ${min}, got \`${value}\`.`);
    return n;
  };
}

const storeOption = () => new Option('--store <url>', 'store: sqlite:<path> or postgres://… (env RLM_STORE, default sqlite:.rlm/rlm.db)');

function engineFlags(command: Command): Command {
  return command
    .addOption(storeOption())
    .option('--concurrency <n>', 'steps run at once per process (default 8)', int('--concurrency', 1))
    .option('--commit-every <n>', 'group commit: steps per commit (default 1000; 1 = every step)', int('--commit-every', 1))
    .option('--commit-ms <ms>', 'group commit: longest wait before a commit (default 50)', int('--commit-ms', 0))
    .option('--lease-ms <ms>', 'lease of a worker on its nodes without a heartbeat (default 30000)', int('--lease-ms', 10))
    .option('--heartbeat-ms <ms>', 'heartbeat interval (default 10000)', int('--heartbeat-ms', 1))
    .option('--grace-ms <ms>', 'graceful stop: time for in-flight steps (default 10000)', int('--grace-ms', 0))
    .option('--compact-every <commits>', 'prune finished subtrees every N group commits, so the store stays bounded', int('--compact-every', 1))
    .option('--max-rss <mb>', 'stop gracefully past this resident set size, exit 75', int('--max-rss', 1))
    .option('--metrics-port <port>', 'serve Prometheus metrics on 127.0.0.1:<port>/metrics', int('--metrics-port', 0))
    .option('--otlp <url>', 'export a span per step over OTLP/HTTP to this collector (e.g. http://127.0.0.1:4318)');
}

/** Parses argv, runs one command, returns its exit code. Errors print one line, with no stack trace. */
export async function main(argv: string[]): Promise<ExitCode> {
  let code: ExitCode = EXIT.ok;
  const program = new Command('rlm')
    .description('Durable recursion: run a recursive task that survives crashes, deploys and days of running.')
    .version(packageVersion(), '-V, --version', 'print the rlm version')
    .exitOverride()
    .configureOutput({ writeErr: (text) => process.stderr.write(text) });
  const set = (p: Promise<ExitCode>) =>
    p.then((c) => {
      code = c;
    });

  engineFlags(
    program
      .command('run <module>')
      .description('create a run (or resume --run ID) and work until it ends; the root result goes to stdout')
      .option('--input <json>', 'the root input, as JSON')
      .option('--context <json>', 'context inherited by every node, as JSON')
      .option('--run <id>', 'run id: resumes the run if it exists, else names the new one')
      .option('--workers <n>', 'supervise N worker processes, restarting any that die', int('--workers', 0))
      .option('--budget <n>', 'most nodes the run may create; past it the run pauses (on a resumed run: sets its budget)', int('--budget', 1))
      .option('--budget-cost <n>', 'most cost (your units) the steps may reserve with ctx.reserve; past it the run pauses (on a resumed run: sets it)', amount('--budget-cost'))
      .option('--restart', 'with --run ID: throw the run\'s nodes away and start it again from its root input')
      .option('--force', 'with --restart: even while live workers hold leases on the run'),
  ).action((module: string, flags) => set(runCommand(module, flags)));

  engineFlags(program.command('worker <module>').description('join as a worker for every run of the task in the store')).action((module: string, flags) =>
    set(workerCommand(module, flags)),
  );

  program
    .command('status [id]')
    .description('state, counts per node state, rate, depth histogram and DLQ size (all runs, newest first, without an id)')
    .addOption(storeOption())
    .option('--json', 'stable JSON output')
    .option('--limit <n>', 'runs per page when listing (default 50)', int('--limit', 1))
    .option('--offset <n>', 'runs to skip when listing (the next page)', int('--offset', 0))
    .option('--state <state>', 'list only runs in this state: running, paused, completed, failed, cancelled')
    .action((id: string | undefined, flags) => set(statusCommand(id, flags)));

  program
    .command('workers')
    .description('the live workers and the nodes each holds leased, per run')
    .addOption(storeOption())
    .option('--json', 'stable JSON output')
    .option('--all', 'stopped and dead workers too')
    .action((flags) => set(workersCommand(flags)));

  program
    .command('results <id>')
    .description('emitted records as JSON lines (only committed ones)')
    .addOption(storeOption())
    .option('--follow', 'keep streaming until the run ends')
    .option('--after <seq>', 'start after this record sequence number', int('--after', 0))
    .action((id: string, flags) => set(resultsCommand(id, flags)));

  program
    .command('inspect <id> <node>')
    .description('one node: input, context, state, attempts and errors, effects, children')
    .addOption(storeOption())
    .option('--json', 'one line of JSON')
    .option('--children <n>', 'children to list', int('--children', 0))
    .action((id: string, node: string, flags) => set(inspectCommand(id, node, flags)));

  program
    .command('dlq <action> <id> [nodes...]')
    .description('the dead-letter queue: list | show NODE… | retry NODE… | drop NODE… (or --all, --subtree NODE)')
    .addOption(storeOption())
    .option('--json', 'JSON output')
    .option('--all', 'every dead node of the run')
    .option('--subtree <node>', 'every dead node under NODE')
    .action((action: string, id: string, nodes: string[], flags) => set(dlqCommand(action, id, nodes, flags)));

  for (const action of ['pause', 'resume'] as const) {
    program
      .command(`${action} <id>`)
      .description(action === 'pause' ? 'pause a run: within one commit group no worker starts a new step of it' : 'lift a pause (only this, or the dashboard, lifts a person’s pause)')
      .addOption(storeOption())
      .action((id: string, flags) => set(gateCommand(action, id, [], flags)));
  }
  for (const action of ['approve', 'reject'] as const) {
    program
      .command(`${action} <id> [nodes...]`)
      .description(`${action} parked nodes (fan-out alarm, depth overflow, node budget)`)
      .addOption(storeOption())
      .option('--all', 'every parked node of the run')
      .option('--subtree <node>', 'every parked node under NODE')
      .action((id: string, nodes: string[], flags) => set(gateCommand(action, id, nodes, flags)));
  }

  program
    .command('cancel <id> [node]')
    .description('cancel a whole run (state cancelled), or with NODE the unfinished part of a subtree (into the DLQ, where `dlq retry --subtree` redrives it)')
    .addOption(storeOption())
    .action((id: string, node: string | undefined, flags) => set(node === undefined ? cancelRunCommand(id, flags) : cancelCommand(id, node, flags)));

  program
    .command('rm <ids...>')
    .description('delete runs and everything they own (nodes, effects, emitted records)')
    .addOption(storeOption())
    .option('--force', 'even while live workers hold leases on the run')
    .action((ids: string[], flags) => set(rmCommand(ids, flags)));

  program
    .command('purge')
    .description('delete finished runs (completed, failed, cancelled) that finished longer ago than --older-than')
    .addOption(storeOption())
    .option('--older-than <duration>', 'such as 7d, 12h, 30m')
    .option('--json', 'print the deleted run ids as a JSON array')
    .action((flags) => set(purgeCommand(flags)));

  program
    .command('budget <id> [n]')
    .description("set a run's node budget (n) or cost budget (--cost); raise it, then `rlm approve ID --all` lets parked nodes run on")
    .option('--cost <n>', 'the most cost (your units) its steps may reserve', amount('--cost'))
    .addOption(storeOption())
    .action((id: string, n: string | undefined, flags) => set(budgetCommand(id, n, flags)));

  program
    .command('signal <id> <name> [json]')
    .description('deliver a named signal (a JSON payload, default null) to a run: nodes waiting for it with ctx.waitFor run again')
    .addOption(storeOption())
    .action((id: string, name: string, json: string | undefined, flags) => set(signalCommand(id, name, json, flags)));

  program
    .command('snapshot <id> <file>')
    .description('write a consistent full copy of the store while the run goes on')
    .addOption(storeOption())
    .action((id: string, file: string, flags) => set(snapshotCommand(id, file, flags)));

  program
    .command('compact <id>')
    .description('prune finished subtrees no unfinished node needs (keys and results of keyed nodes stay)')
    .addOption(storeOption())
    .action((id: string, flags) => set(compactCommand(id, flags)));

  program
    .command('doctor')
    .description("check the store's integrity")
    .addOption(storeOption())
    .action((flags) => set(doctorCommand(flags)));

  program
    .command('ui')
    .description('the web dashboard on 127.0.0.1: runs, live rate and frontier, the tree, node detail, the DLQ, pause/approve')
    .addOption(storeOption())
    .option('--port <n>', 'port on 127.0.0.1 (default 7070; 0 picks a free one)', int('--port', 0))
    .action((flags) => set(import('./ui.js').then(({ uiCommand }) => uiCommand(flags))));

  try {
    await program.parseAsync(argv);
    return code;
  } catch (error) {
    if (error instanceof CommanderError) {
      return error.exitCode === 0 ? EXIT.ok : EXIT.usage;
    }
    return reportError(error);
  }
}

/** The version in rlm's package.json (two levels above this file in src/ and in dist/). */
function packageVersion(): string {
  return (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;
}

function reportError(error: unknown): ExitCode {
  if (error instanceof RlmError) {
    process.stderr.write(`rlm: ${redactUrl(error.message)}\n`);
    if (process.env.RLM_DEBUG && error.cause) process.stderr.write(`${String((error.cause as Error)?.stack ?? error.cause)}\n`);
    return error.code === 'STORE_IO' || error.code === 'STORE_UNAVAILABLE' ? EXIT.failure : EXIT.usage;
  }
  process.stderr.write(`rlm: unexpected error: ${redactUrl((error as Error)?.stack ?? String(error))}\n`);
  return EXIT.failure;
}
