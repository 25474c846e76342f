/** English and German: the language follows the browser, with a switch kept in localStorage. */
export type Lang = 'en' | 'de';

const en = {
  title: 'Joint KPI dashboard',
  signIn: 'Sign in',
  signOut: 'Sign out',
  tokenLabel: 'Your access token',
  tokenHelp: 'Paste the user token your partner admin created for you (parity token create). It is kept in a secure session cookie.',
  signedInAs: 'Signed in as',
  forPartner: 'for',
  language: 'Language',
  partnership: 'Partnership',
  partners: 'Partners',
  agreementVersion: 'Agreement version',
  sameSource: 'Same source',
  snapshot: 'Snapshot',
  asOf: 'as of',
  digest: 'Digest',
  copy: 'Copy',
  copied: 'Copied',
  freshness: 'Feed freshness',
  lastBatch: 'last batch',
  noBatch: 'no batch yet',
  stale: 'stale',
  fresh: 'fresh',
  kpis: 'KPIs',
  lastClosed: 'Last closed',
  provisional: 'Open period (provisional)',
  change: 'Change',
  band: 'Band',
  noBand: 'no band yet',
  combined: 'combined',
  withheld: 'withheld',
  details: 'Details',
  back: 'Back to the overview',
  grain: 'Grain',
  day: 'Day',
  week: 'Week',
  month: 'Month',
  from: 'From',
  to: 'To',
  breakdown: 'Breakdown',
  none: 'Combined',
  partner: 'By partner',
  table: 'Table of the same cells',
  period: 'Period',
  group: 'Group',
  value: 'Value',
  subjects: 'Subjects',
  state: 'State',
  reason: 'Reason',
  downloadCsv: 'Download CSV',
  downloadArrow: 'Download Arrow',
  chartLabel: 'Chart of the series',
  incidents: 'Incidents',
  noIncidents: 'No incidents.',
  owner: 'Owners',
  ackDue: 'Acknowledge by',
  escalated: 'Escalated',
  acknowledge: 'Acknowledge',
  resolve: 'Resolve with a fact sheet',
  cause: 'Cause category',
  narrative: 'What happened',
  actionDescription: 'Action',
  actionOwner: 'Action owner',
  actionDue: 'Due',
  submitResolve: 'Resolve',
  factSheet: 'Fact sheet',
  loading: 'Loading…',
  'state.ok': 'OK',
  'state.pending': 'Pending',
  'state.breach': 'Breach',
  'state.no_data': 'No data',
  'state.suppressed': 'Suppressed',
  'incident.open': 'open',
  'incident.notified': 'notified',
  'incident.acknowledged': 'acknowledged',
  'incident.resolved': 'resolved',
};

const de: Record<keyof typeof en, string> = {
  title: 'Gemeinsames KPI-Dashboard',
  signIn: 'Anmelden',
  signOut: 'Abmelden',
  tokenLabel: 'Ihr Zugangstoken',
  tokenHelp: 'Fügen Sie das Benutzer-Token ein, das Ihr Partner-Admin erstellt hat (parity token create). Es wird in einem sicheren Sitzungs-Cookie gehalten.',
  signedInAs: 'Angemeldet als',
  forPartner: 'für',
  language: 'Sprache',
  partnership: 'Partnerschaft',
  partners: 'Partner',
  agreementVersion: 'Vereinbarungsversion',
  sameSource: 'Gleiche Quelle',
  snapshot: 'Snapshot',
  asOf: 'Stand',
  digest: 'Prüfsumme',
  copy: 'Kopieren',
  copied: 'Kopiert',
  freshness: 'Aktualität der Lieferungen',
  lastBatch: 'letzte Lieferung',
  noBatch: 'noch keine Lieferung',
  stale: 'überfällig',
  fresh: 'aktuell',
  kpis: 'Kennzahlen',
  lastClosed: 'Letzte abgeschlossene Periode',
  provisional: 'Offene Periode (vorläufig)',
  change: 'Veränderung',
  band: 'Toleranzband',
  noBand: 'noch kein Band',
  combined: 'gesamt',
  withheld: 'zurückgehalten',
  details: 'Details',
  back: 'Zurück zur Übersicht',
  grain: 'Zeitraster',
  day: 'Tag',
  week: 'Woche',
  month: 'Monat',
  from: 'Von',
  to: 'Bis',
  breakdown: 'Aufschlüsselung',
  none: 'Gesamt',
  partner: 'Nach Partner',
  table: 'Tabelle derselben Zellen',
  period: 'Periode',
  group: 'Gruppe',
  value: 'Wert',
  subjects: 'Fälle',
  state: 'Zustand',
  reason: 'Grund',
  downloadCsv: 'CSV herunterladen',
  downloadArrow: 'Arrow herunterladen',
  chartLabel: 'Diagramm der Reihe',
  incidents: 'Vorfälle',
  noIncidents: 'Keine Vorfälle.',
  owner: 'Verantwortliche',
  ackDue: 'Bestätigen bis',
  escalated: 'Eskaliert',
  acknowledge: 'Bestätigen',
  resolve: 'Mit Faktenblatt abschließen',
  cause: 'Ursachenkategorie',
  narrative: 'Was ist passiert',
  actionDescription: 'Maßnahme',
  actionOwner: 'Verantwortlich',
  actionDue: 'Fällig',
  submitResolve: 'Abschließen',
  factSheet: 'Faktenblatt',
  loading: 'Lädt…',
  'state.ok': 'OK',
  'state.pending': 'Auffällig',
  'state.breach': 'Verletzt',
  'state.no_data': 'Keine Daten',
  'state.suppressed': 'Unterdrückt',
  'incident.open': 'offen',
  'incident.notified': 'benachrichtigt',
  'incident.acknowledged': 'bestätigt',
  'incident.resolved': 'abgeschlossen',
};

export type Key = keyof typeof en;
const dictionaries: Record<Lang, Record<Key, string>> = { en, de };
const listeners = new Set<() => void>();

function initial(): Lang {
  const kept = globalThis.localStorage?.getItem('parity.lang');
  if (kept === 'en' || kept === 'de') return kept;
  return (globalThis.navigator?.language ?? 'en').toLowerCase().startsWith('de') ? 'de' : 'en';
}

let current: Lang = initial();

export const i18n = {
  get lang(): Lang {
    return current;
  },
  set(lang: Lang): void {
    current = lang;
    globalThis.localStorage?.setItem('parity.lang', lang);
    document.documentElement.lang = lang;
    for (const l of listeners) l();
  },
  onChange(fn: () => void): () => void {
    listeners.add(fn);
    return () => listeners.delete(fn);
  },
  t(key: Key): string {
    return dictionaries[current][key];
  },
  /** A number in the reader's locale, to at most `digits` fraction digits. */
  number(v: number | null | undefined, digits = 2): string {
    if (v === null || v === undefined) return '—';
    return new Intl.NumberFormat(current === 'de' ? 'de-DE' : 'en-GB', { maximumFractionDigits: digits }).format(v);
  },
  date(iso: string | null | undefined): string {
    if (!iso) return '—';
    const d = iso.length === 10 ? new Date(`${iso}T00:00:00Z`) : new Date(iso);
    return new Intl.DateTimeFormat(current === 'de' ? 'de-DE' : 'en-GB', iso.length === 10 ? { dateStyle: 'medium', timeZone: 'UTC' } : { dateStyle: 'medium', timeStyle: 'short' }).format(d);
  },
};
export const t = i18n.t;
