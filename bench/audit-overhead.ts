/**
 * The auth and audit section of `npm run bench` on its own (bench/auth-overhead.ts): reads and
 * searches per second with auth and audit on beside auth off, in one process. Embedded
 * database by default, a real PostgreSQL with DATABASE_URL.
 *
 *   npx tsx bench/audit-overhead.ts [seconds-per-round=3] [concurrency=8] [rounds=3] [patients=100]
 */
import { benchAuthOverhead, printAuthOverhead, type AuthOverheadOptions } from './auth-overhead.js';

const options: AuthOverheadOptions = {
  databaseUrl: process.env.DATABASE_URL,
  seconds: Number(process.argv[2] ?? 3),
  concurrency: Number(process.argv[3] ?? 8),
  rounds: Number(process.argv[4] ?? 3),
  patients: Number(process.argv[5] ?? 100),
};
printAuthOverhead(await benchAuthOverhead(options), options);
