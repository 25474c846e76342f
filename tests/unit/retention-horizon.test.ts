import { describe, expect, it } from 'vitest';
import { retentionHorizon } from '../../services/governance/retention.js';

describe('retentionHorizon', () => {
  it('counts years, months, weeks and days on the calendar (clamped to the end of a shorter month); a time part in whole days', () => {
    expect(retentionHorizon('2026-11-23', 'P3Y')).toBe('2023-11-23');
    expect(retentionHorizon('2024-02-29', 'P1Y')).toBe('2023-02-28');
    expect(retentionHorizon('2026-03-31', 'P1M')).toBe('2026-02-28');
    expect(retentionHorizon('2026-01-15', 'P13M')).toBe('2024-12-15');
    expect(retentionHorizon('2026-01-10', 'P2W')).toBe('2025-12-27');
    expect(retentionHorizon('2026-01-10', 'P1Y2M3D')).toBe('2024-11-07');
    expect(retentionHorizon('2026-01-10', 'PT36H')).toBe('2026-01-08');
    expect(() => retentionHorizon('2026-01-10', '3 years')).toThrow(/ISO-8601/);
  });
});
