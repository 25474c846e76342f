import { tableFromArrays, tableToIPC } from 'apache-arrow';

export interface TestPoint {
  kpi: string;
  at: string;
  value: number;
  subject: string;
  dims?: Record<string, string>;
}

export const ndjson = (points: readonly TestPoint[]) => points.map((p) => JSON.stringify(p)).join('\n') + '\n';
export const jsonBody = (points: readonly TestPoint[]) => JSON.stringify({ points });

export function csv(points: readonly TestPoint[], dimKeys = ['region']): string {
  const esc = (s: string) => (/[",\n]/.test(s) ? `"${s.replaceAll('"', '""')}"` : s);
  const lines = [['kpi', 'at', 'value', 'subject', ...dimKeys].join(',')];
  for (const p of points)
    lines.push([p.kpi, p.at, String(p.value), esc(p.subject), ...dimKeys.map((k) => p.dims?.[k] ?? '')].join(','));
  return lines.join('\n') + '\n';
}

export function arrow(points: readonly TestPoint[], dimKeys = ['region']): Uint8Array {
  const cols: Record<string, unknown[]> = {
    kpi: points.map((p) => p.kpi),
    at: points.map((p) => p.at),
    value: Float64Array.from(points.map((p) => p.value)) as unknown as unknown[],
    subject: points.map((p) => p.subject),
  };
  for (const k of dimKeys) cols[k] = points.map((p) => p.dims?.[k] ?? null);
  return tableToIPC(tableFromArrays(cols as Parameters<typeof tableFromArrays>[0]), 'stream');
}

/** n lead-time points at distinct hours before 2026-11-20, with raw order ids. */
export function leadTimePoints(n: number, prefix = 'ORD'): TestPoint[] {
  const base = Date.parse('2026-11-20T00:00:00Z');
  return Array.from({ length: n }, (_, i) => ({
    kpi: 'lead_time',
    at: new Date(base - i * 3_600_000).toISOString(),
    value: 10 + (i % 50),
    subject: `${prefix}-${String(i).padStart(6, '0')}`,
    ...(i % 3 === 0 ? {} : { dims: { region: i % 2 ? 'north' : 'south' } }),
  }));
}

/** The four body types of POST /v1/points, by kind. */
export const mediaTypes = {
  json: 'application/json',
  ndjson: 'application/x-ndjson',
  csv: 'text/csv',
  arrow: 'application/vnd.apache.arrow.stream',
} as const;
export type BodyKind = keyof typeof mediaTypes;
