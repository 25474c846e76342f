/** English and German: the language follows the browser, with a switch kept in localStorage. */

import type { ReactiveController, ReactiveControllerHost } from 'lit';

export type Lang = 'en' | 'de';

const en = {
  title: 'Joint KPI dashboard',
  signIn: 'Sign in',
  signOut: 'Sign out',
  tokenLabel: 'Your access token',
  tokenHelp:
    'Paste the user token your partner admin created for you (parity token create). It is kept in a secure session cookie.',
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
  'reason.few_subjects': 'A partner contributes fewer than {k} distinct subjects to this figure.',
  'reason.few_partners': 'Fewer than three partners contribute to this combined figure.',
  'reason.dominance': 'One partner contributes more than {p} % of this sum.',
  'reason.protects': 'Withheld so that another withheld figure cannot be worked out from this one.',
  'reason.retention': "Part of this period is past the agreement's retention; what is left is not shown on its own.",
  'reason.pending':
    'Not shown yet: its points wait until each partner whose data changed here has at least {k} new distinct subjects in the change.',
  'reason.held':
    'The value of snapshot {asOf}: newer points wait until each partner whose data changed here has at least {k} new distinct subjects in the change.',
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
  transparency: 'Transparency',
  transparencyIntro:
    'Which information flowed this month — counts and times only, never values or pseudonyms. Every partner sees the same report (need-to-know KPIs only where you may see them).',
  reportMonth: 'Report month',
  batches: 'Batches',
  pointsAccepted: 'Points accepted',
  pointsRejected: 'Points rejected',
  lastArrival: 'Last arrival',
  feeds: 'Feeds',
  points: 'Points',
  dueBy: 'Due by',
  reads: 'Reads per KPI',
  role: 'Role',
  requests: 'Requests',
  cellsServed: 'Cells served',
  cellsSuppressed: 'Cells suppressed',
  notifications: 'Notifications',
  channel: 'Channel',
  count: 'Count',
  agreementChanges: 'Agreement changes',
  serviceLevels: 'Service levels',
  feedsOnTime: 'Feed periods on time',
  acknowledgedInTime: 'Acknowledged in time',
  resolvedInTime: 'Resolved in time',
  excused: 'excused by maintenance',
  maintenanceWindows: 'Maintenance windows',
  feedsBack: 'Feeds back in time',
  yes: 'yes',
  no: 'no',
  notYetKnown: 'not yet known',
  noLevel: 'no level agreed',
  inMaintenance: 'in maintenance until',
  action: 'Action',
  when: 'When',
  downloadJson: 'Download JSON',
  nothingYet: 'Nothing this month.',
  partnerColumn: 'Partner',
  showReport: 'Show',
  all: 'All',
  activeIncidents: 'Not resolved',
  governance: 'Governance',
  governanceIntro:
    "Changes to the agreement take effect only when every partner's admin has approved them. Each change that loosens privacy is flagged.",
  proposals: 'Proposals',
  proposal: 'Proposal',
  noProposals: 'No proposals.',
  loosensPrivacy: 'loosens privacy',
  proposedBy: 'Proposed by',
  changesVersion: 'changes version',
  expires: 'Expires',
  decisions: 'Decisions',
  waitingFor: 'waiting for',
  noteOrReason: 'Note (reason when rejecting)',
  approveFor: 'Approve for',
  reject: 'Reject',
  versions: 'Versions',
  source: 'Source',
  tokensOf: 'Tokens and users of',
  tokenName: 'Name (user e-mail or system)',
  issueToken: 'Issue token',
  shownOnce: 'The new token is shown once; copy it now',
  rotate: 'Rotate',
  revoke: 'Revoke',
  widensTokens: 'Existing tokens that would read more under this version',
  loading: 'Loading…',
  'state.ok': 'OK',
  'state.pending': 'Pending',
  'state.breach': 'Breach',
  'state.no_data': 'No data',
  'state.suppressed': 'Suppressed',
  'state.held': 'Held',
  'incident.open': 'open',
  'incident.notified': 'notified',
  'incident.acknowledged': 'acknowledged',
  'incident.resolved': 'resolved',
  intent: 'Intent',
  stage: 'Stage',
  nextStage: 'To enter {stage}',
  readyForNext: 'every criterion met',
  notReadyForNext: 'not every criterion met yet',
  'stage.proof_of_concept': 'Proof of concept',
  'stage.field_test': 'Field test',
  'stage.rollout': 'Rollout',
  goals: 'Goals',
  goal: 'Goal',
  milestone: 'Milestone',
  nextMilestone: 'Next milestone',
  target: 'Target',
  targetLine: 'Target and milestones',
  due: 'due',
  progress: 'Progress',
  assumptions: 'Assumptions',
  exitCriteria: 'Exit criteria',
  criterionMet: 'met',
  criterionNotMet: 'not met',
  noGoals: 'The agreement names no goals yet.',
  'goal.met': 'Met',
  'goal.missed': 'Missed',
  'goal.on_track': 'On track',
  'goal.at_risk': 'At risk',
  'goal.no_data': 'No data',
  'direction.at_most': 'at most',
  'direction.at_least': 'at least',
  review: 'Monthly review',
  text: 'Text',
  reviewKpis: 'KPIs against their bands',
  kpi: 'KPI',
  inBand: 'Periods in band',
  previousMonth: 'Previous month',
  deviations: 'Largest deviations',
  actions: 'Actions',
  changes: 'Changes',
  improved: 'What improved since last month',
};

const de: Record<keyof typeof en, string> = {
  title: 'Gemeinsames KPI-Dashboard',
  signIn: 'Anmelden',
  signOut: 'Abmelden',
  tokenLabel: 'Ihr Zugangstoken',
  tokenHelp:
    'Fügen Sie das Benutzer-Token ein, das Ihr Partner-Admin erstellt hat (parity token create). Es wird in einem sicheren Sitzungs-Cookie gehalten.',
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
  'reason.few_subjects': 'Ein Partner trägt weniger als {k} verschiedene Fälle zu dieser Zahl bei.',
  'reason.few_partners': 'Weniger als drei Partner tragen zu dieser gemeinsamen Zahl bei.',
  'reason.dominance': 'Ein Partner trägt mehr als {p} % zu dieser Summe bei.',
  'reason.protects': 'Zurückgehalten, damit sich eine andere zurückgehaltene Zahl nicht aus dieser errechnen lässt.',
  'reason.retention':
    'Ein Teil dieser Periode liegt jenseits der vereinbarten Aufbewahrungsfrist; der Rest wird nicht allein gezeigt.',
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
  transparency: 'Transparenz',
  transparencyIntro:
    'Welche Informationen in diesem Monat geflossen sind — nur Anzahlen und Zeiten, nie Werte oder Pseudonyme. Alle Partner sehen denselben Bericht (Need-to-know-Kennzahlen nur, wo Sie sie sehen dürfen).',
  reportMonth: 'Berichtsmonat',
  batches: 'Lieferungen',
  pointsAccepted: 'Angenommene Punkte',
  pointsRejected: 'Abgelehnte Punkte',
  lastArrival: 'Letzte Lieferung',
  feeds: 'Datenströme',
  points: 'Punkte',
  dueBy: 'Fällig bis',
  reads: 'Abrufe je Kennzahl',
  role: 'Rolle',
  requests: 'Abrufe',
  cellsServed: 'Gelieferte Zellen',
  cellsSuppressed: 'Unterdrückte Zellen',
  notifications: 'Benachrichtigungen',
  channel: 'Kanal',
  count: 'Anzahl',
  agreementChanges: 'Änderungen der Vereinbarung',
  serviceLevels: 'Servicelevel',
  feedsOnTime: 'Pünktlich gelieferte Zeiträume',
  acknowledgedInTime: 'Rechtzeitig bestätigt',
  resolvedInTime: 'Rechtzeitig behoben',
  excused: 'wegen Wartung ausgenommen',
  maintenanceWindows: 'Wartungsfenster',
  feedsBack: 'Lieferungen rechtzeitig wieder da',
  yes: 'ja',
  no: 'nein',
  notYetKnown: 'noch offen',
  noLevel: 'kein Servicelevel vereinbart',
  inMaintenance: 'in Wartung bis',
  action: 'Vorgang',
  when: 'Wann',
  downloadJson: 'JSON herunterladen',
  nothingYet: 'Nichts in diesem Monat.',
  partnerColumn: 'Partner',
  showReport: 'Anzeigen',
  all: 'Alle',
  activeIncidents: 'Nicht abgeschlossen',
  governance: 'Steuerung',
  governanceIntro:
    'Änderungen der Vereinbarung gelten erst, wenn die Admins aller Partner zugestimmt haben. Jede Änderung, die den Datenschutz lockert, ist markiert.',
  proposals: 'Vorschläge',
  proposal: 'Vorschlag',
  noProposals: 'Keine Vorschläge.',
  loosensPrivacy: 'lockert den Datenschutz',
  proposedBy: 'Vorgeschlagen von',
  changesVersion: 'ändert Version',
  expires: 'Läuft ab',
  decisions: 'Entscheidungen',
  waitingFor: 'wartet auf',
  noteOrReason: 'Notiz (Begründung bei Ablehnung)',
  approveFor: 'Zustimmen für',
  reject: 'Ablehnen',
  versions: 'Versionen',
  source: 'Quelle',
  tokensOf: 'Tokens und Benutzer von',
  tokenName: 'Name (E-Mail oder System)',
  issueToken: 'Token ausstellen',
  shownOnce: 'Das neue Token wird nur einmal gezeigt; jetzt kopieren',
  rotate: 'Erneuern',
  revoke: 'Widerrufen',
  widensTokens: 'Bestehende Tokens, die mit dieser Version mehr lesen würden',
  loading: 'Lädt…',
  'reason.pending':
    'Noch nicht gezeigt: die Punkte warten, bis jeder Partner, dessen Daten sich hier geändert haben, mindestens {k} neue verschiedene Fälle beiträgt.',
  'reason.held':
    'Der Wert von Stand {asOf}: neuere Punkte warten, bis jeder Partner, dessen Daten sich hier geändert haben, mindestens {k} neue verschiedene Fälle beiträgt.',
  'state.ok': 'OK',
  'state.pending': 'Auffällig',
  'state.breach': 'Verletzt',
  'state.no_data': 'Keine Daten',
  'state.suppressed': 'Unterdrückt',
  'state.held': 'Gehalten',
  'incident.open': 'offen',
  'incident.notified': 'benachrichtigt',
  'incident.acknowledged': 'bestätigt',
  'incident.resolved': 'abgeschlossen',
  intent: 'Ziel der Partnerschaft',
  stage: 'Phase',
  nextStage: 'Für den Eintritt in {stage}',
  readyForNext: 'alle Kriterien erfüllt',
  notReadyForNext: 'noch nicht alle Kriterien erfüllt',
  'stage.proof_of_concept': 'Machbarkeitsnachweis',
  'stage.field_test': 'Feldtest',
  'stage.rollout': 'Rollout',
  goals: 'Ziele',
  goal: 'Ziel',
  milestone: 'Meilenstein',
  nextMilestone: 'Nächster Meilenstein',
  target: 'Zielwert',
  targetLine: 'Zielwert und Meilensteine',
  due: 'fällig',
  progress: 'Fortschritt',
  assumptions: 'Annahmen',
  exitCriteria: 'Ausstiegskriterien',
  criterionMet: 'erfüllt',
  criterionNotMet: 'nicht erfüllt',
  noGoals: 'Die Vereinbarung nennt noch keine Ziele.',
  'goal.met': 'Erreicht',
  'goal.missed': 'Verfehlt',
  'goal.on_track': 'Im Plan',
  'goal.at_risk': 'Gefährdet',
  'goal.no_data': 'Keine Daten',
  'direction.at_most': 'höchstens',
  'direction.at_least': 'mindestens',
  review: 'Monatsbericht',
  text: 'Text',
  reviewKpis: 'KPIs im Vergleich zu ihren Bändern',
  kpi: 'KPI',
  inBand: 'Perioden im Band',
  previousMonth: 'Vormonat',
  deviations: 'Größte Abweichungen',
  actions: 'Maßnahmen',
  changes: 'Änderungen',
  improved: 'Was sich seit dem Vormonat verbessert hat',
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
  t(key: Key): string {
    return dictionaries[current][key];
  },
  /** Why a cell is withheld, in the reader's language, from the API's stable code (docs/privacy.md §5). */
  reason(
    cell: { reasonCode?: string | undefined; reason?: string | undefined; asOf?: number | undefined },
    rules: { minGroupSize: number; dominance?: number | null | undefined },
  ): string {
    const key = `reason.${cell.reasonCode}`;
    if (cell.reasonCode === undefined || !(key in dictionaries[current])) return cell.reason ?? '';
    return dictionaries[current][key as Key]
      .replace('{k}', String(rules.minGroupSize))
      .replace('{p}', this.number(rules.dominance ?? 100, 1))
      .replace('{asOf}', String(cell.asOf ?? '—'));
  },
  /** A number in the reader's locale, to at most `digits` fraction digits. */
  number(v: number | null | undefined, digits = 2): string {
    if (v === null || v === undefined) return '—';
    return new Intl.NumberFormat(current === 'de' ? 'de-DE' : 'en-GB', { maximumFractionDigits: digits }).format(v);
  },
  date(iso: string | null | undefined): string {
    if (!iso) return '—';
    const d = iso.length === 10 ? new Date(`${iso}T00:00:00Z`) : new Date(iso);
    return new Intl.DateTimeFormat(
      current === 'de' ? 'de-DE' : 'en-GB',
      iso.length === 10 ? { dateStyle: 'medium', timeZone: 'UTC' } : { dateStyle: 'medium', timeStyle: 'short' },
    ).format(d);
  },
};
export const t = i18n.t;

/**
 * The one way an element follows the language switch: added in its constructor
 * (`new I18nController(this)`), it asks the element to render again whenever the language
 * changes, for as long as the element is connected. `also` runs on a change as well (the chart
 * redraws its Vega view, which a render does not touch).
 */
export class I18nController implements ReactiveController {
  readonly #host: ReactiveControllerHost;
  readonly #also: (() => void) | undefined;
  readonly #changed = () => {
    this.#host.requestUpdate();
    this.#also?.();
  };

  constructor(host: ReactiveControllerHost, also?: () => void) {
    this.#host = host;
    this.#also = also;
    host.addController(this);
  }

  hostConnected(): void {
    listeners.add(this.#changed);
  }

  hostDisconnected(): void {
    listeners.delete(this.#changed);
  }
}
