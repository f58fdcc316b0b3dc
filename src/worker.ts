import { buildCore, eventDelivery, jobWiring } from './app.js';
import { loadConfigOrExit } from './config/config.js';
import { createJobs } from './operations/job-wiring.js';

/**
 * `npm run worker`: the job workers without the HTTP server — subscription dispatch and
 * deliveries, $export and $import runs — on the same database (and Redis, when REDIS_URL is
 * set, so HTTP servers and workers share the queues). Stops gracefully on SIGTERM / SIGINT.
 */
async function main(): Promise<void> {
  const config = loadConfigOrExit();
  const quiet = config.logLevel === 'silent';
  // Messages only: job errors name ids and statuses, never resource content.
  const log = (message: string, error?: unknown) => {
    if (!quiet) console.error(message, error instanceof Error ? error.message : (error ?? ''));
  };
  const core = await buildCore(config);
  const { database } = core;
  const delivery = eventDelivery(core, config, log);
  let jobs;
  try {
    jobs = await createJobs(jobWiring(core, config, delivery.queues, log));
  } catch (e) {
    await database.close();
    throw e;
  }
  delivery.start(jobs.runner);
  if (!quiet) console.log(`worker started (${jobs.runner.kind} job runner)`);
  let stopping = false;
  const stop = async () => {
    if (stopping) return;
    stopping = true;
    try {
      await delivery.stop();
      await jobs.close();
      await delivery.subscriptions.closeChannels();
      await core.searchParameters.idle();
      await database.close();
      process.exit(0);
    } catch (e) {
      log('worker shutdown failed', e);
      process.exit(1);
    }
  };
  process.on('SIGTERM', () => void stop());
  process.on('SIGINT', () => void stop());
}

main().catch((e: unknown) => {
  console.error('worker failed to start:', e instanceof Error ? e.message : e);
  process.exit(1);
});
