import type { ControlTx, NewGoalNotice } from '../platform/control-db.js';

/**
 * Records a goal judgement as notified; true when this call recorded it (a judgement already
 * recorded, by this evaluation's twin or an earlier one, is not notified again).
 */
export async function recordGoalNotice(tx: ControlTx, row: NewGoalNotice): Promise<boolean> {
  const inserted = await tx
    .insertInto('goal_notices')
    .values(row)
    .onConflict((oc) => oc.columns(['goal_id', 'kind', 'key']).doNothing())
    .returning('goal_id')
    .executeTakeFirst();
  return inserted !== undefined;
}
