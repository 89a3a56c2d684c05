/**
 * Preloaded into every process the bench measures (`node --import ./bench/rss-probe.mjs …`, or through
 * NODE_OPTIONS so that worker processes spawned by `rlm run --workers N` carry it too). On exit it appends
 * `<pid> <peak RSS in KiB>` to the file named by RLM_BENCH_RSS_FILE; the runner reads the peak per process.
 * A process killed with SIGKILL writes nothing.
 */
import { appendFileSync } from 'node:fs';

const file = process.env.RLM_BENCH_RSS_FILE;
if (file) {
  process.on('exit', () => {
    try {
      appendFileSync(file, `${process.pid} ${process.resourceUsage().maxRSS}\n`);
    } catch {
      // The runner reports a missing figure; a probe must never change how the process ends.
    }
  });
}
