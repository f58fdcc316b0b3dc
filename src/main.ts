import { buildApp } from './app.js';
import { loadConfigOrExit } from './config/config.js';

/** Reads the configuration, starts the server and closes it gracefully on SIGTERM / SIGINT. */
async function main(): Promise<void> {
  const config = loadConfigOrExit();
  const server = await buildApp(config);
  if (server.devClient) {
    // Printed once, to the console only: the development client of an unconfigured embedded server.
    console.log(
      `No FHIR_BOOTSTRAP_CLIENT_ID/SECRET set: development client created for this run\n` +
        `  client_id=${server.devClient.id}\n  client_secret=${server.devClient.secret}`,
    );
  }
  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    server.http.log.info({ signal, drainMs: config.shutdownDrainMs }, 'shutting down: draining, then finishing in-flight requests');
    try {
      // Behind a load balancer: out of rotation (readiness 503) before the listener closes.
      server.drain();
      if (config.shutdownDrainMs > 0) await new Promise((r) => setTimeout(r, config.shutdownDrainMs));
      await server.close();
      process.exit(0);
    } catch (e) {
      server.http.log.error({ err: e }, 'shutdown failed');
      process.exit(1);
    }
  };
  process.on('SIGTERM', () => void stop('SIGTERM'));
  process.on('SIGINT', () => void stop('SIGINT'));
  await server.http.listen({ port: config.port, host: config.host });
  if (config.hl7MllpPort !== 0) {
    const port = await server.hl7v2.listen(config.hl7MllpPort, config.host);
    server.http.log.info({ port }, 'HL7 v2 MLLP listener started');
  }
}

main().catch((e: unknown) => {
  console.error('failed to start:', e instanceof Error ? e.message : e);
  process.exit(1);
});
