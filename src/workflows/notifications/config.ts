/**
 * Hospital notification settings from the environment (issue 11 §4). Read by
 * src/config/config.ts into `Config.notifications`.
 *
 *   NOTIFICATIONS                  on (default) | off: derive notifications from committed writes
 *   NOTIFICATION_REMINDER_LEAD_SECONDS  how long before Appointment.start the reminder goes (86400 = 24 h, FR-AS-003)
 *   NOTIFICATION_ATTEMPTS          sends of one notification before it is given up (4 = first try + 3 retries, FR-AS-003)
 *   NOTIFICATION_BACKOFF_MS        first retry delay, doubled each further attempt (30000)
 *   NOTIFICATION_DEFAULT_CHANNELS  channels of a user without preferences (email,in-app)
 *   NOTIFICATION_DEFAULT_LANGUAGE  language of a user without Patient/Practitioner.communication (en)
 *   NOTIFICATION_TIME_ZONE         time zone of times in messages (UTC)
 *   NOTIFICATION_HOSPITAL_NAME     the {{hospital_name}} of templates (Hospital)
 *   NOTIFICATION_SMS_WEBHOOK_URL   SMS gateway: the Communication is PUT to [url]/Communication/[id] (unset: no SMS)
 *   NOTIFICATION_SMS_WEBHOOK_HEADER  one "Name: value" header for the gateway (its credential), optional
 */
export type NotificationChannel = 'email' | 'sms' | 'in-app';
export const NOTIFICATION_CHANNELS: readonly NotificationChannel[] = ['email', 'sms', 'in-app'];

export interface NotificationConfig {
  enabled: boolean;
  reminderLeadMs: number;
  attempts: number;
  backoffMs: number;
  defaultChannels: NotificationChannel[];
  defaultLanguage: string;
  timeZone: string;
  hospitalName: string;
  smsWebhookUrl?: string;
  smsWebhookHeader?: string;
}

export class NotificationConfigError extends Error {}

function int(env: NodeJS.ProcessEnv, name: string, fallback: number, min: number): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < min) throw new NotificationConfigError(`${name} must be an integer ≥ ${min}, got "${raw}"`);
  return value;
}

export function notificationConfigFrom(env: NodeJS.ProcessEnv): NotificationConfig {
  const enabledRaw = env.NOTIFICATIONS || 'on';
  if (enabledRaw !== 'on' && enabledRaw !== 'off') throw new NotificationConfigError(`NOTIFICATIONS must be on or off, got "${enabledRaw}"`);
  const channels = (env.NOTIFICATION_DEFAULT_CHANNELS ?? 'email,in-app').split(',').map((c) => c.trim()).filter(Boolean);
  for (const c of channels) {
    if (!NOTIFICATION_CHANNELS.includes(c as NotificationChannel)) throw new NotificationConfigError(`NOTIFICATION_DEFAULT_CHANNELS: unknown channel "${c}" (known: ${NOTIFICATION_CHANNELS.join(', ')})`);
  }
  const timeZone = env.NOTIFICATION_TIME_ZONE || 'UTC';
  try {
    new Intl.DateTimeFormat('en', { timeZone });
  } catch {
    throw new NotificationConfigError(`NOTIFICATION_TIME_ZONE is not a time zone: "${timeZone}"`);
  }
  const smsWebhookUrl = env.NOTIFICATION_SMS_WEBHOOK_URL || undefined;
  if (smsWebhookUrl && !/^https?:\/\//.test(smsWebhookUrl)) throw new NotificationConfigError('NOTIFICATION_SMS_WEBHOOK_URL must be an http(s) URL');
  const smsWebhookHeader = env.NOTIFICATION_SMS_WEBHOOK_HEADER || undefined;
  if (smsWebhookHeader && !/^[!#$%&'*+.^_`|~0-9A-Za-z-]+:[^\r\n]*$/.test(smsWebhookHeader)) throw new NotificationConfigError('NOTIFICATION_SMS_WEBHOOK_HEADER must be "Name: value"');
  return {
    enabled: enabledRaw === 'on',
    reminderLeadMs: int(env, 'NOTIFICATION_REMINDER_LEAD_SECONDS', 24 * 3600, 0) * 1000,
    attempts: int(env, 'NOTIFICATION_ATTEMPTS', 4, 1),
    backoffMs: int(env, 'NOTIFICATION_BACKOFF_MS', 30_000, 10),
    defaultChannels: channels as NotificationChannel[],
    defaultLanguage: (env.NOTIFICATION_DEFAULT_LANGUAGE || 'en').toLowerCase(),
    timeZone,
    hospitalName: env.NOTIFICATION_HOSPITAL_NAME || 'Hospital',
    ...(smsWebhookUrl ? { smsWebhookUrl } : {}),
    ...(smsWebhookHeader ? { smsWebhookHeader } : {}),
  };
}
