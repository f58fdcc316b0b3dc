import { configDefaults, defineConfig } from 'vitest/config';

const INCLUDE = ['src/**/*.test.ts', 'test/**/*.test.ts'];

/**
 * Test files that must not share the machine with another test file: they load the CPU flat out
 * on purpose (a load test's flat-out phase, whose every request must succeed). They run after
 * all others, one at a time.
 */
const ALONE = ['test/integration/loadtest-short.test.ts'];

/**
 * Test files run in parallel worker processes: TEST_WORKERS of them (CI sets 2), else vitest's
 * default (one per core less one). Every test file has a database of its own (an in-memory
 * embedded one, or a schema of its own on PostgreSQL), its own Redis key prefix and free ports.
 */
const workers = Number(process.env.TEST_WORKERS) || undefined;

export default defineConfig({
  test: {
    testTimeout: 60_000,
    hookTimeout: 120_000,
    pool: 'forks',
    // On the embedded database: one migrated template that every test app starts from.
    globalSetup: ['test/support/global-setup.ts'],
    ...(workers ? { maxWorkers: workers } : {}),
    projects: [
      { extends: true, test: { name: 'parallel', include: INCLUDE, exclude: [...configDefaults.exclude, ...ALONE] } },
      { extends: true, test: { name: 'alone', include: ALONE, fileParallelism: false } },
    ],
  },
});
