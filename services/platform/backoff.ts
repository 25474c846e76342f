/**
 * The pause before trying again after `failedInARow` failures (≥ 1): `firstMs`, doubling with
 * each failure, at most `maxMs` — shared by the background loops, the release step and the push
 * client.
 */
export function retryPause(failedInARow: number, retry: { firstMs: number; maxMs: number }): number {
  return Math.min(retry.maxMs, retry.firstMs * 2 ** Math.min(30, failedInARow - 1));
}
