import type { RunRecord } from '../store/store.js';

/** A one-line progress bar on a TTY: done, frontier, rate and dead-letter queue, redrawn in place. */
export class ProgressBar {
  readonly #stream: NodeJS.WriteStream;
  #lastDone = 0;
  #lastAt = performance.now();
  #rate = 0;
  #drawn = false;

  constructor(stream: NodeJS.WriteStream = process.stderr) {
    this.#stream = stream;
  }

  static enabled(stream: NodeJS.WriteStream = process.stderr): boolean {
    return stream.isTTY === true && process.env.RLM_NO_PROGRESS === undefined;
  }

  update(run: RunRecord): void {
    const c = run.counts;
    const now = performance.now();
    const elapsed = (now - this.#lastAt) / 1000;
    if (elapsed >= 0.5) {
      const instant = (c.done - this.#lastDone) / elapsed;
      this.#rate = this.#rate === 0 ? instant : this.#rate * 0.6 + instant * 0.4;
      this.#lastDone = c.done;
      this.#lastAt = now;
    }
    const known = c.done + c.dead + c.pending + c.running + c.waiting + c.parked;
    const ratio = known === 0 ? 0 : (c.done + c.dead) / known;
    const width = 24;
    const filled = Math.round(ratio * width);
    const bar = `${'█'.repeat(filled)}${'░'.repeat(width - filled)}`;
    const frontier = c.pending + c.running + c.waiting;
    const line =
      `${bar} ${(ratio * 100).toFixed(1).padStart(5)}% of known | done ${fmt(c.done)} | frontier ${fmt(frontier)} | ` +
      `${fmt(Math.round(this.#rate))}/s | dlq ${fmt(c.dead)}${c.parked ? ` | parked ${fmt(c.parked)}` : ''}`;
    const columns = this.#stream.columns ?? 120;
    this.#stream.write(`\r${line.slice(0, columns - 1)}\u001b[K`);
    this.#drawn = true;
  }

  done(): void {
    if (this.#drawn) this.#stream.write('\n');
    this.#drawn = false;
  }
}

function fmt(n: number): string {
  return n.toLocaleString('en-US');
}
