import type { Agreement } from '../platform/agreement-schema.js';
import type { ReleaseExec, Releaser } from '../platform/duck-store.js';
import { compileRelease, type CompiledSql } from './aggregate-compiler.js';
import { disclosureRules } from './disclosure.js';

/**
 * Stable disclosure over time (docs/privacy.md §3): the release step the store runs for every
 * committed snapshot, in snapshot order, before readers see it (one step at the highest of the
 * snapshots that became ready together, over the KPIs any of them touched). For each KPI, the
 * pending atoms are narrowed to those whose change passes the contributor rule in every
 * readable cell (compileRelease), and those are released at this snapshot. What stays
 * pending is counted in no served value: a cell holding it is *held* at the value of its
 * released points, so one late point never moves a disclosed cell by exactly that point.
 */
export function releaser(agreement: () => Agreement): Releaser {
  return async (exec, snapshot, kpis) => {
    const a = agreement();
    for (const id of kpis) {
      const kpi = a.kpis.find((k) => k.id === id);
      if (!kpi) continue; // not agreed (any more): nobody reads it, its atoms stay pending
      const step = compileRelease(kpi, disclosureRules(a, kpi), snapshot);
      await exec.run(step.candidates.sql, step.candidates.params);
      // Most steps drop nothing: counted straight from the points, the change need not be copied.
      // Counted and checked already, the first round goes straight to the drop.
      let checked = false;
      if (step.quickCounts) {
        await exec.run(step.quickCounts.sql, step.quickCounts.params);
        checked = true;
      }
      if (!checked || !(await anySafe(exec, step.safe))) {
        await exec.run(step.change.sql, step.change.params);
        // Each round removes at least one atom or ends: at most as many rounds as candidates.
        for (;;) {
          if (!checked) {
            if (step.counts) await exec.run(step.counts.sql, step.counts.params);
            if (await anySafe(exec, step.safe)) break;
          }
          if ((await exec.run(step.drop.sql, step.drop.params)) === 0) break;
          await exec.run(step.prune.sql, step.prune.params);
          checked = false;
        }
      }
      await exec.run(step.release.sql, step.release.params);
      for (const s of step.done) await exec.run(s.sql, s.params);
    }
    // Released at once: no row needed (a point without a row of its atom is released).
    await exec.run('DELETE FROM held_atoms WHERE released = $1 AND snapshot = $1', [snapshot]);
  };
}

/** Whether one of the checks says no part of the change can fail (so nothing would drop). */
async function anySafe(exec: ReleaseExec, checks: readonly CompiledSql[]): Promise<boolean> {
  for (const check of checks) if ((await exec.all(check.sql, check.params))[0]?.['safe'] === true) return true;
  return false;
}
