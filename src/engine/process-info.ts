import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';

/** @internal The start time of a process as the OS reports it, so a reused pid is not taken for the same process. */
export function processStart(pid: number): string {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may hold spaces and parentheses: count fields after its closing parenthesis.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return fields[19] ?? '';
  } catch {
    return '';
  }
}

/** @internal Whether the process `pid` that started at `start` is still alive on this host. */
export function isProcessAlive(pid: number, start: string): boolean {
  try {
    process.kill(pid, 0);
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
  if (start === '') return true;
  const now = processStart(pid);
  return now === '' || now === start;
}

export const HOST = hostname();
