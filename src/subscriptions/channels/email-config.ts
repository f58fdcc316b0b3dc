/**
 * SMTP settings of the email channel, from the environment. Nothing is assumed: without
 * SMTP_URL or SMTP_HOST the email channel is simply not offered (a Subscription asking for it
 * is refused), and no credential has a default.
 *
 *   SMTP_URL                 smtp://user:password@host:587 or smtps://…:465 (instead of the below)
 *   SMTP_HOST, SMTP_PORT     port 587 unless given
 *   SMTP_SECURE              on = TLS from the start (port 465); off = STARTTLS when offered. Default: on for 465
 *   SMTP_USER, SMTP_PASSWORD together, or neither
 *   SMTP_FROM                the sender address (required when SMTP is configured)
 */
export interface SmtpConfig {
  url?: string;
  host?: string;
  port: number;
  secure: boolean;
  auth?: { user: string; pass: string };
  from: string;
}

export class SmtpConfigError extends Error {}

const ADDRESS = /^[^\s@<>,;"]+@[^\s@<>,;"]+$/;

export function smtpConfigFrom(env: NodeJS.ProcessEnv): SmtpConfig | undefined {
  const url = env.SMTP_URL || undefined;
  const host = env.SMTP_HOST || undefined;
  if (!url && !host) {
    if (env.SMTP_USER || env.SMTP_PASSWORD || env.SMTP_FROM) throw new SmtpConfigError('SMTP_USER / SMTP_PASSWORD / SMTP_FROM need SMTP_URL or SMTP_HOST');
    return undefined;
  }
  if (url && host) throw new SmtpConfigError('set SMTP_URL or SMTP_HOST, not both');
  const from = env.SMTP_FROM;
  if (!from || !ADDRESS.test(from)) throw new SmtpConfigError('SMTP_FROM must be set to the sender address (name@domain) when SMTP is configured');
  if (url) {
    let parsed: URL;
    try {
      parsed = new URL(url);
    } catch {
      throw new SmtpConfigError('SMTP_URL is not a URL');
    }
    if (parsed.protocol !== 'smtp:' && parsed.protocol !== 'smtps:') throw new SmtpConfigError('SMTP_URL must start with smtp:// or smtps://');
    return { url, port: Number(parsed.port || (parsed.protocol === 'smtps:' ? 465 : 587)), secure: parsed.protocol === 'smtps:', from };
  }
  const rawPort = env.SMTP_PORT || '587';
  const port = Number(rawPort);
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new SmtpConfigError(`SMTP_PORT must be a port number, got "${rawPort}"`);
  const secureRaw = env.SMTP_SECURE || (port === 465 ? 'on' : 'off');
  if (secureRaw !== 'on' && secureRaw !== 'off') throw new SmtpConfigError(`SMTP_SECURE must be on or off, got "${secureRaw}"`);
  const user = env.SMTP_USER || undefined;
  const pass = env.SMTP_PASSWORD || undefined;
  if (!!user !== !!pass) throw new SmtpConfigError('SMTP_USER and SMTP_PASSWORD must be set together');
  return { host, port, secure: secureRaw === 'on', ...(user && pass ? { auth: { user, pass } } : {}), from };
}
