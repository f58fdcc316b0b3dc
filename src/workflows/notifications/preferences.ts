import type { ContactPoint, Extension, Patient, Practitioner, RelatedPerson } from 'fhir/r4.js';
import { NOTIFICATION_CHANNELS, type NotificationChannel, type NotificationConfig } from './config.js';
import type { NotificationEvent, NotificationRules } from './rules.js';

export type Person = Patient | Practitioner | RelatedPerson;

/**
 * A user's notification preferences, read from their own FHIR resource (no table of our own):
 *
 * - language: the preferred `communication.language` (Patient, RelatedPerson) or the first
 *   `communication` (Practitioner), first two letters; a language without templates falls back
 *   to NOTIFICATION_DEFAULT_LANGUAGE.
 * - addresses: `telecom` (email: system email; sms: system sms, else a mobile phone), lowest
 *   `rank` first, contact points whose `period` ended skipped.
 * - channels and opt-outs: the extension rules.json `preferencesExtension`
 *   (https://fhir.hospital.example.org/StructureDefinition/notification-preferences) with
 *   sub-extensions `channel` (valueCode email | sms | in-app, repeating: the channels wanted;
 *   none: NOTIFICATION_DEFAULT_CHANNELS) and `optOut` (valueCode: an event such as
 *   APPOINTMENT_REMINDER, a notification-type code such as APPOINTMENT_REMINDER_PATIENT, or `*`
 *   for all), e.g.
 *   `{"url": "…/notification-preferences", "extension": [{"url": "channel", "valueCode": "sms"}, {"url": "optOut", "valueCode": "APPOINTMENT_REMINDER"}]}`.
 *   Events in rules.json `clinicianMandatoryEvents` (CRITICAL_LAB_RESULT) ignore opt-outs for
 *   practitioners and always include in-app (seed 004 FR-LAB-002: critical results notify at once).
 */
export interface Preferences {
  language: string;
  channels: NotificationChannel[];
  optOuts: string[];
  email?: string;
  sms?: string;
}

function current(points: ContactPoint[] | undefined, at: number): ContactPoint[] {
  return (points ?? [])
    .filter((p) => p.value && !(p.period?.end && Date.parse(p.period.end) < at))
    .sort((a, b) => (a.rank ?? Number.MAX_SAFE_INTEGER) - (b.rank ?? Number.MAX_SAFE_INTEGER));
}

function languageOf(person: Person): string | undefined {
  const list = (person.communication ?? []) as Array<{ language?: { coding?: Array<{ code?: string }> }; preferred?: boolean }>;
  const chosen = list.find((c) => c.preferred) ?? list[0];
  const code = (chosen as { language?: { coding?: Array<{ code?: string }> } } | undefined)?.language?.coding?.find((c) => c.code)?.code
    // Practitioner.communication is a CodeableConcept itself.
    ?? (chosen as { coding?: Array<{ code?: string }> } | undefined)?.coding?.find((c) => c.code)?.code;
  return code?.slice(0, 2).toLowerCase();
}

export function preferencesOf(person: Person, rules: NotificationRules, config: Pick<NotificationConfig, 'defaultChannels' | 'defaultLanguage'>, at = Date.now()): Preferences {
  const ext: Extension | undefined = person.extension?.find((e) => e.url === rules.preferencesExtension);
  const chosen = (ext?.extension ?? []).filter((e) => e.url === 'channel').map((e) => e.valueCode).filter((c): c is NotificationChannel => NOTIFICATION_CHANNELS.includes(c as NotificationChannel));
  const optOuts = (ext?.extension ?? []).filter((e) => e.url === 'optOut').map((e) => e.valueCode).filter((c): c is string => Boolean(c));
  const language = languageOf(person);
  const telecom = current(person.telecom, at);
  const email = telecom.find((p) => p.system === 'email')?.value;
  const sms = (telecom.find((p) => p.system === 'sms') ?? telecom.find((p) => p.system === 'phone' && p.use === 'mobile'))?.value;
  return {
    language: language && rules.languages.includes(language) ? language : config.defaultLanguage,
    channels: chosen.length > 0 ? [...new Set(chosen)] : [...config.defaultChannels],
    optOuts,
    ...(email ? { email } : {}),
    ...(sms ? { sms } : {}),
  };
}

/** The channels `event` goes out on for this person; empty when they opted out. */
export function channelsFor(prefs: Preferences, event: NotificationEvent, audience: 'patient' | 'practitioner', rules: NotificationRules, type?: string): NotificationChannel[] {
  const mandatory = audience === 'practitioner' && rules.clinicianMandatoryEvents.includes(event);
  if (mandatory) return [...new Set<NotificationChannel>([...prefs.channels, 'in-app'])];
  if (prefs.optOuts.some((o) => o === '*' || o === event || o === type)) return [];
  return prefs.channels;
}
