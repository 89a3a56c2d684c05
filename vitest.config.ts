import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    pool: 'forks',
    maxWorkers: 2,
    testTimeout: 120_000,
    hookTimeout: 60_000,
    reporters: ['default'],
    projects: [
      {
        extends: true,
        test: {
          name: 'unit',
          include: ['test/**/*.test.ts'],
          exclude: ['test/torture/**', 'node_modules/**'],
          sequence: { groupOrder: 0 },
        },
      },
      {
        // The torture suite's CI tier runs alone, after the rest: it spawns its own worker processes on both cores.
        extends: true,
        test: {
          name: 'torture',
          include: ['test/torture/**/*.test.ts'],
          fileParallelism: false,
          testTimeout: 600_000,
          hookTimeout: 600_000,
          sequence: { groupOrder: 1 },
        },
      },
    ],
  },
});
