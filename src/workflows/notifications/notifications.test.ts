import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { Appointment, Observation, Patient } from 'fhir/r4.js';
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../config/config.js';
import { detectEvents } from './events.js';
import { channelsFor, preferencesOf } from './preferences.js';
import { loadNotificationCatalog, renderTemplate } from './rules.js';

const DIR = resolve(import.meta.dirname, '../../../conformance/notifications');
const catalog = loadNotificationCatalog(DIR);
const { rules } = catalog;

describe('notification data (conformance/notifications)', () => {
  it('every event has a template per audience, channel and language; subjects use no PHI variable', () => {
    expect(catalog.templates.size).toBe(17);
    for (const t of catalog.templates.values()) {
      for (const lang of ['en', 'vi']) expect(t.templates.email[lang]!.subject).not.toMatch(/\{\{\s*(?!hospital_name)/);
    }
  });

  it('a subject naming the patient stops start-up, with the file named', () => {
    const dir = mkdtempSync(join(tmpdir(), 'ntf-templates-'));
    try {
      cpSync(DIR, dir, { recursive: true });
      const file = join(dir, 'templates', 'APPOINTMENT_CONFIRMED_PATIENT.json');
      const t = JSON.parse(readFileSync(file, 'utf8'));
      t.templates.email.en.subject = 'Appointment for {{recipient_name}}';
      writeFileSync(file, JSON.stringify(t));
      expect(() => loadNotificationCatalog(dir)).toThrow(/APPOINTMENT_CONFIRMED_PATIENT\.json: .*no PHI in subjects/);
      t.templates.email.en.subject = 'x';
      t.templates.sms.vi.body = '{{invoice_number}}';
      writeFileSync(file, JSON.stringify(t));
      expect(() => loadNotificationCatalog(dir)).toThrow(/undeclared variables invoice_number/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('renders variables; a missing value is empty, never the placeholder', () => {
    expect(renderTemplate('Hi {{ name }}, {{missing}}!', { name: 'An' })).toBe('Hi An, !');
  });
});

describe('events from transitions', () => {
  const appt = (status: Appointment['status'], start = '2030-01-01T10:00:00Z'): Appointment => ({ resourceType: 'Appointment', status, start, participant: [] });
  it('appointments: requested, confirmed, cancelled once each; moving a booked one reschedules its reminder', () => {
    expect(detectEvents(appt('proposed'), undefined, rules)).toEqual({ events: ['APPOINTMENT_REQUESTED'] });
    expect(detectEvents(appt('pending'), appt('proposed'), rules)).toEqual({ events: [] });
    expect(detectEvents(appt('booked'), appt('pending'), rules)).toEqual({ events: ['APPOINTMENT_CONFIRMED'], reminder: 'schedule' });
    expect(detectEvents(appt('booked'), appt('booked'), rules)).toEqual({ events: [] });
    expect(detectEvents(appt('booked', '2030-01-02T10:00:00Z'), appt('booked'), rules)).toEqual({ events: [], reminder: 'schedule' });
    expect(detectEvents(appt('cancelled'), appt('booked'), rules)).toEqual({ events: ['APPOINTMENT_CANCELLED'], reminder: 'cancel' });
    expect(detectEvents(undefined, appt('booked'), rules)).toEqual({ events: [], reminder: 'cancel' });
    // Loaded as history in a final state: nobody is told.
    expect(detectEvents(appt('cancelled'), undefined, rules)).toEqual({ events: [] });
  });

  it('critical results: HH / LL / AA or the text "critical", on a result status, once', () => {
    const obs = (code: string, status: Observation['status'] = 'final'): Observation => ({ resourceType: 'Observation', status, code: {}, interpretation: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation', code }] }] });
    expect(detectEvents(obs('HH'), undefined, rules).events).toEqual(['CRITICAL_LAB_RESULT']);
    // Critical while still preliminary (issue 14, rules.json criticalResultStatuses): notified at once, not again when verified.
    expect(detectEvents(obs('LL'), obs('LL', 'preliminary'), rules).events).toEqual([]);
    expect(detectEvents(obs('LL', 'preliminary'), obs('N', 'preliminary'), rules).events).toEqual(['CRITICAL_LAB_RESULT']);
    expect(detectEvents(obs('HH', 'amended'), obs('HH'), rules).events).toEqual([]);
    expect(detectEvents(obs('H'), undefined, rules).events).toEqual([]);
    expect(detectEvents(obs('HH', 'preliminary'), undefined, rules).events).toEqual(['CRITICAL_LAB_RESULT']);
    expect(detectEvents(obs('HH', 'registered'), undefined, rules).events).toEqual([]);
  });
});

describe('preferences', () => {
  const person: Patient = {
    resourceType: 'Patient',
    communication: [{ language: { coding: [{ code: 'en-GB' }] } }, { language: { coding: [{ code: 'vi-VN' }] }, preferred: true }],
    telecom: [
      { system: 'email', value: 'old@example.org', period: { end: '2020-01-01' } },
      { system: 'email', value: 'second@example.org', rank: 2 },
      { system: 'email', value: 'first@example.org', rank: 1 },
      { system: 'phone', use: 'mobile', value: '+84 90' },
    ],
    extension: [{ url: rules.preferencesExtension, extension: [{ url: 'channel', valueCode: 'sms' }, { url: 'optOut', valueCode: '*' }] }],
  };
  const config = { defaultChannels: ['email' as const, 'in-app' as const], defaultLanguage: 'en' };

  it('language, addresses by rank, channels and opt-outs from the person resource', () => {
    expect(preferencesOf(person, rules, config)).toEqual({ language: 'vi', channels: ['sms'], optOuts: ['*'], email: 'first@example.org', sms: '+84 90' });
    expect(preferencesOf({ resourceType: 'Patient' }, rules, config)).toEqual({ language: 'en', channels: ['email', 'in-app'], optOuts: [] });
  });

  it('opting out of everything silences patients; a clinician still gets critical results, in-app at least', () => {
    const prefs = preferencesOf(person, rules, config);
    expect(channelsFor(prefs, 'LAB_RESULT_READY', 'patient', rules)).toEqual([]);
    expect(channelsFor(prefs, 'CRITICAL_LAB_RESULT', 'practitioner', rules)).toEqual(['sms', 'in-app']);
    expect(channelsFor(prefs, 'APPOINTMENT_REMINDER', 'practitioner', rules)).toEqual([]);
    const one = { ...prefs, optOuts: ['APPOINTMENT_REMINDER_PATIENT'] };
    expect(channelsFor(one, 'APPOINTMENT_REMINDER', 'patient', rules, 'APPOINTMENT_REMINDER_PATIENT')).toEqual([]);
    expect(channelsFor(one, 'APPOINTMENT_CONFIRMED', 'patient', rules, 'APPOINTMENT_CONFIRMED_PATIENT')).toEqual(['sms']);
  });

  it('bad settings stop start-up', () => {
    expect(() => loadConfig({ NOTIFICATION_DEFAULT_CHANNELS: 'email,pigeon' })).toThrow(ConfigError);
    expect(() => loadConfig({ NOTIFICATION_TIME_ZONE: 'Mars/Olympus' })).toThrow(/NOTIFICATION_TIME_ZONE/);
    expect(() => loadConfig({ NOTIFICATION_SMS_WEBHOOK_URL: 'ftp://x' })).toThrow(/NOTIFICATION_SMS_WEBHOOK_URL/);
    expect(() => loadConfig({ NOTIFICATIONS: 'maybe' })).toThrow(/NOTIFICATIONS/);
    expect(loadConfig({}).notifications).toMatchObject({ enabled: true, reminderLeadMs: 86_400_000, attempts: 4, defaultChannels: ['email', 'in-app'] });
  });
});
