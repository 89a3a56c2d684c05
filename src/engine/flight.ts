import { closeSync, mkdirSync, openSync, readFileSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * A worker's flight recorder: a small file saying which suspect node it is running alone right now. It is
 * written without fsync, so it survives the process being killed (the kernel keeps the page) though not a
 * power cut, and it is read by the worker that reaps a dead process on the same host. A process that dies
 * while running a suspect alone is that node's fault: one attempt is counted. A process that dies anywhere
 * else (in a commit, between steps) blames no node.
 */
export class FlightRecorder {
  readonly #path: string;
  #fd: number | undefined;

  constructor(workerId: string) {
    this.#path = flightPath(workerId);
  }

  /** Records that the worker now runs node `id` under `epoch` alone, or nothing (`null`). */
  mark(node: { id: number; epoch: number } | null): void {
    try {
      if (this.#fd === undefined) {
        mkdirSync(join(tmpdir(), 'rlm-flight'), { recursive: true });
        this.#fd = openSync(this.#path, 'w');
      }
      const text = (node ? JSON.stringify({ running: node.id, epoch: node.epoch }) : '{}').padEnd(64, ' ');
      writeSync(this.#fd, text, 0, 'utf8');
    } catch {
      // Without a flight file a crash blames nobody: the node stays a suspect and is retried alone again.
    }
  }

  close(): void {
    if (this.#fd !== undefined) closeSync(this.#fd);
    this.#fd = undefined;
    rmSync(this.#path, { force: true });
  }
}

function flightPath(workerId: string): string {
  return join(tmpdir(), 'rlm-flight', workerId.replace(/[^\w.-]/g, '_'));
}

/** What a dead worker of this host was running alone when it died, if anything; removes its file. */
export function readFlight(workerId: string): { id: number; epoch: number } | null {
  const path = flightPath(workerId);
  try {
    const parsed = JSON.parse(readFileSync(path, 'utf8')) as { running?: number; epoch?: number };
    return typeof parsed.running === 'number' && typeof parsed.epoch === 'number' ? { id: parsed.running, epoch: parsed.epoch } : null;
  } catch {
    return null;
  } finally {
    rmSync(path, { force: true });
  }
}
