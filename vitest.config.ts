import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    projects: [
      {
        test: { name: 'unit', include: ['test/unit/**/*.test.ts'], environment: 'node' },
      },
      {
        test: {
          name: 'integration',
          include: ['test/integration/**/*.test.ts'],
          environment: 'node',
          globalSetup: ['test/setup/pacs.ts'],
          testTimeout: 60_000,
          hookTimeout: 120_000,
          // One Orthanc for the whole run; test files share it and must not store into each other's series.
          fileParallelism: false,
        },
      },
      {
        test: {
          // Fuzzing, security, PACS faults and load (test/RELIABILITY.md). Short by default; LDFSAM_RELIABILITY=full
          // (npm run test:reliability) runs the long version. Files start their own Orthanc when they need one.
          name: 'reliability',
          include: ['test/reliability/**/*.test.ts'],
          environment: 'node',
          globalSetup: ['test/reliability/setup.ts'],
          fileParallelism: false,
          testTimeout: 120_000,
          hookTimeout: 120_000,
        },
      },
      {
        test: {
          name: 'e2e',
          include: ['test/e2e/**/*.test.ts'],
          environment: 'node',
          // Each file starts its own Orthanc + server + Chromium; one at a time on small machines.
          fileParallelism: false,
          testTimeout: 120_000,
          hookTimeout: 240_000,
        },
      },
    ],
  },
});
