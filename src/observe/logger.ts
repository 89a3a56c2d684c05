import { pino } from 'pino';

/** The structured logger rlm hands to steps (`ctx.log`): pino's interface. */
export type Logger = pino.Logger;

export interface LoggerOptions {
  /** pino level. @default 'info' (env RLM_LOG_LEVEL) */
  level?: string;
  /** Pretty lines for a person (on a TTY), JSON lines otherwise. @default stderr is a TTY */
  pretty?: boolean;
  /** Where log lines go. @default stderr */
  destination?: NodeJS.WritableStream;
}

/** JSON lines on stderr (pretty on a TTY); every line of a step carries run, node, depth, attempt and trace ids. */
export function createLogger(options: LoggerOptions = {}): Logger {
  const level = options.level ?? process.env.RLM_LOG_LEVEL ?? 'info';
  const pretty = options.pretty ?? (process.stderr.isTTY === true && !options.destination);
  if (pretty) {
    return pino({
      level,
      base: undefined,
      transport: { target: 'pino-pretty', options: { destination: 2, colorize: true, ignore: 'pid,hostname' } },
    });
  }
  return pino({ level, base: undefined }, (options.destination as pino.DestinationStream | undefined) ?? pino.destination({ dest: 2, sync: false }));
}

/** A logger that writes nothing (tests, library use without a logger). */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
