import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Coding } from 'fhir/r4.js';
import { NOTIFICATION_CHANNELS, type NotificationChannel } from './config.js';

/** The notification events derived from committed writes (issue 11 §4). */
export const NOTIFICATION_EVENTS = [
  'APPOINTMENT_REQUESTED',
  'APPOINTMENT_CONFIRMED',
  'APPOINTMENT_CANCELLED',
  'APPOINTMENT_REMINDER',
  'APPOINTMENT_RESCHEDULE_NEEDED',
  'LAB_RESULT_READY',
  'CRITICAL_LAB_RESULT',
  'PRESCRIPTION_READY',
  'INVOICE_GENERATED',
  'PAYMENT_SUCCESSFUL',
  'CLAIM_STATUS_UPDATED',
  'PHARMACY_STOCK_LOW',
  'PHARMACY_BATCH_EXPIRING',
] as const;
export type NotificationEvent = (typeof NOTIFICATION_EVENTS)[number];
export type Audience = 'patient' | 'practitioner';

export interface ChannelTemplate {
  subject?: string;
  body: string;
}

/** One notification type (a code of the notification-type CodeSystem) with its texts. */
export interface NotificationTemplate {
  type: string;
  event: NotificationEvent;
  audience: Audience;
  variables: string[];
  templates: Record<NotificationChannel, Record<string, ChannelTemplate>>;
}

/** conformance/notifications/rules.json */
export interface NotificationRules {
  notificationTypeSystem: string;
  events: Record<NotificationEvent, Partial<Record<Audience, string>>>;
  urgentEvents: NotificationEvent[];
  clinicianMandatoryEvents: NotificationEvent[];
  criticalInterpretation: { codes: Array<Required<Pick<Coding, 'system' | 'code'>>>; texts: string[] };
  labResultStatuses: string[];
  /** Observation statuses whose critical flags notify at once (default labResultStatuses); lab results are critical while still preliminary (issue 14). */
  criticalResultStatuses?: string[];
  stock: { quantityExtension: string; reorderLevelExtension: string; recipientRole: { system: string; code: string }; batchExpiringExtension: string };
  preferencesExtension: string;
  addressExtension: string;
  channels: NotificationChannel[];
  languages: string[];
}

export interface NotificationCatalog {
  rules: NotificationRules;
  /** by notification-type code */
  templates: Map<string, NotificationTemplate>;
}

/**
 * Variables an email subject may use. Subjects show in mailbox lists, lock screens and mail
 * server logs, so they carry no PHI (no names, times, results): checked when the data loads.
 */
export const SUBJECT_VARIABLES: readonly string[] = ['hospital_name'];

const VARIABLE = /\{\{\s*([a-z_][a-z0-9_]*)\s*\}\}/g;

export function templateVariables(text: string): string[] {
  return [...text.matchAll(VARIABLE)].map((m) => m[1]!);
}

/** `{{name}}` replaced by its value; a variable without a value becomes empty (never the placeholder). */
export function renderTemplate(text: string, values: Readonly<Record<string, string | undefined>>): string {
  return text.replace(VARIABLE, (_, name: string) => values[name] ?? '');
}

/** Loads and checks rules.json and templates/*.json; a broken file stops start-up with its name. */
export function loadNotificationCatalog(dir: string): NotificationCatalog {
  const rules = JSON.parse(readFileSync(join(dir, 'rules.json'), 'utf8')) as NotificationRules;
  const templates = new Map<string, NotificationTemplate>();
  const templateDir = join(dir, 'templates');
  for (const file of readdirSync(templateDir).filter((f) => f.endsWith('.json')).sort()) {
    const template = JSON.parse(readFileSync(join(templateDir, file), 'utf8')) as NotificationTemplate;
    const problems = templateProblems(template, rules);
    if (problems.length > 0) throw new Error(`conformance/notifications/templates/${file}: ${problems.join('; ')}`);
    templates.set(template.type, template);
  }
  for (const event of NOTIFICATION_EVENTS) {
    const audiences = rules.events[event];
    if (!audiences) throw new Error(`conformance/notifications/rules.json: no entry for event ${event}`);
    for (const [audience, code] of Object.entries(audiences)) {
      const template = templates.get(code);
      if (!template) throw new Error(`conformance/notifications/rules.json: ${event}/${audience} names ${code}, which has no template`);
      if (template.event !== event || template.audience !== audience) throw new Error(`conformance/notifications/templates/${code}.json: is for ${template.event}/${template.audience}, rules.json uses it for ${event}/${audience}`);
    }
  }
  return { rules, templates };
}

function templateProblems(t: NotificationTemplate, rules: NotificationRules): string[] {
  const problems: string[] = [];
  if (!NOTIFICATION_EVENTS.includes(t.event)) problems.push(`unknown event ${t.event}`);
  if (t.audience !== 'patient' && t.audience !== 'practitioner') problems.push(`audience must be patient or practitioner`);
  for (const channel of NOTIFICATION_CHANNELS) {
    const byLanguage = t.templates?.[channel];
    if (!byLanguage) {
      problems.push(`no ${channel} template`);
      continue;
    }
    for (const language of rules.languages) {
      const text = byLanguage[language];
      if (!text?.body) {
        problems.push(`no ${channel} body in ${language}`);
        continue;
      }
      const used = [...templateVariables(text.body), ...templateVariables(text.subject ?? '')];
      const unknown = used.filter((v) => !t.variables.includes(v));
      if (unknown.length > 0) problems.push(`${channel}/${language} uses undeclared variables ${unknown.join(', ')}`);
      if (channel === 'email') {
        if (!text.subject) problems.push(`email/${language} needs a subject`);
        const phi = templateVariables(text.subject ?? '').filter((v) => !SUBJECT_VARIABLES.includes(v));
        if (phi.length > 0) problems.push(`email/${language} subject may use only ${SUBJECT_VARIABLES.join(', ')} (no PHI in subjects), not ${phi.join(', ')}`);
      }
    }
  }
  return problems;
}
