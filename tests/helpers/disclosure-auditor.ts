/**
 * Disclosure auditor (issue #12): an independent, product-free check that nothing a partner can read
 * determines a withheld figure. Plain TypeScript; it imports nothing from the product.
 *
 * # The attacker
 * One partner (the "attacker"). It knows every point it pushed (it may have fabricated them to pad a
 * cell), and it reads every cell the agreement lets it read: all grains x breakdowns x periods x the
 * snapshots taken. Everything it reads is fed to the auditor as a list of served cells; the auditor
 * recomputes the cells' exact values from the points (so it checks the *structure* of what is disclosed;
 * whether the product computed the right numbers is the query oracle's job).
 *
 * # The model: atoms and linear observations
 * An *atom* is the additive contribution of one partner to one slot: (partner, local day, full dimension
 * tuple, snapshot at which the points landed, snapshot at which retention removed them). Late points
 * and retention therefore make their own atoms, so the difference of one cell between two snapshots is a
 * sum of atoms. Each atom has two additive quantities: S (sum of values) and N (number of points).
 * Distinct subjects are not additive across days, so D (distinct subjects) is a quantity of a *region*:
 * the set of one partner's atoms a cell covers (subjects are scoped per partner, so D is additive across
 * partners). Two cells that cover the same atoms of a partner share that partner's D unknown; a week and
 * its days do not. When the data has one point per subject (`pointsPerSubject: 'one'`), or one per
 * subject and day (`'onePerDay'`, for single-day regions), D is the N of the region instead, which is
 * what lets `avg x n = sum` leak; the builder checks the data obeys the declared mode.
 *
 * A served cell discloses linear equations over these unknowns, with exact rational coefficients:
 *   sum: sum S = v;  count: sum N = v;  distinct: sum D = v;
 *   avg, rate: sum S - v * sum N = 0 (a ratio is a homogeneous linear equation);  n shown: sum D = n;
 *   a metadata count of points: sum N = points.  Quantiles disclose no linear equation (see below).
 * The attacker's own S, N (every own atom) and D (every own region) are known facts.
 *
 * Only atoms that hold at least one point exist in the model: the attacker is granted the knowledge of
 * which (partner, day, dims, landing, removal) combinations are non-empty. This over-approximates what it
 * knows, so "not determined" verdicts are safe to rely on. A "determined" verdict may rest on that
 * emptiness (e.g. week - Monday = Tuesday only if the partner has nothing on the other days), which the
 * witness does not name; the product discloses much of it anyway (a period or group without points is
 * absent from a read), but where it does not, such a verdict is a false alarm, never a missed leak.
 *
 * # What is proved: the rank test
 * A linear target t is determined by the observations A x = b iff t lies in the row space of A (exact
 * elimination over BigInt rationals, no tolerances). The auditor keeps a reduced row echelon form with
 * the provenance of every row, so a determined verdict carries a *witness*: the observations and own
 * facts, with coefficients, whose combination is exactly the target, and the recovered value. A verdict
 * "not determined" carries a *direction*: a vector d with A d = 0, d = 0 on every known quantity, and
 * t . d != 0; truth + d is a second completion consistent with everything read in which the target
 * differs. Both certificates can be checked without the elimination (`checkWitness`, `checkDirection`).
 * A ratio target S/N (a withheld avg or rate) is determined iff some S - c N is determined to be 0; it
 * is tested exactly, without linearising, and its direction is the gradient direction at the truth.
 *
 * # What is not proved
 * - The rank test works over the reals. Bounds (N >= 1, values in the KPI's range, D <= N, "fewer than k
 *   subjects" from a suppression reason) and integrality can pin more. `feasibleInterval` solves the
 *   linear relaxation with these bounds exactly (rational simplex): a zero-width interval proves a leak;
 *   a wide one is evidence, not proof, because integrality (counts are integers) is relaxed.
 * - Inequalities revealed by non-linear surfaces (run rules judged on withheld values, band verdicts,
 *   "suppressed" itself) are not in the rank test; only the suppression reason "small" is, as a bound.
 * - Quantiles (p50/p90/p95): no linear theory. `quantileFindings` checks, for every disclosed quantile
 *   cell: (a) exactly, the padding attack: a cell whose foreign part is a single point is inverted
 *   against the attacker's own points (the preimage of the disclosed quantile is an interval; a single
 *   point is "pinned"), granting the attacker the number of foreign points; (b) conservatively, that no
 *   foreign partner's part of a disclosed cell has fewer than k distinct subjects; (c) the stepping
 *   attack: one cell disclosed over the same foreign points with three or more different sets of the
 *   attacker's own (each disclosure lets it place the quantile on another order statistic of the
 *   others' points; the room allows two: the move that changed the others' points and one own move
 *   after it, docs/privacy.md §2.3). Quantiles of cells with two or more foreign points, and
 *   differences of quantiles across snapshots, are not inverted.
 * - Targets are what the builder enumerates: every withheld served cell (value and n), every foreign
 *   partner's part of a readable cell that has fewer than k subjects (or every part, for combined KPIs),
 *   and every foreign partner's change of a readable cell between consecutive snapshots with fewer than k
 *   subjects. Targets with the same unknowns are reported once, under the first name. Other unions of
 *   small parts are not enumerated (a determined union of small parts that is not itself a cell, a part
 *   or a change is not reported).
 *
 * # Use
 * `auditScenario(scenario, served, { attacker, k })` returns the verdicts, the leaks (each explained by
 * `report()`), and the quantile findings; a suite asserts `leaks` and the pinned/small-part findings are
 * empty. `serveToday` reproduces today's per-response rule (it leaks; the unit tests show each family),
 * `serve` takes any per-cell rule. The generic core (`audit` over `Observation`/`Known`/`Target`) can be
 * fed directly for surfaces the builder does not know.
 */

// ---------------------------------------------------------------------------------------------------
// Exact rationals
// ---------------------------------------------------------------------------------------------------

const babs = (x: bigint): bigint => (x < 0n ? -x : x);
function bgcd(a: bigint, b: bigint): bigint {
  a = babs(a);
  b = babs(b);
  while (b !== 0n) [a, b] = [b, a % b];
  return a;
}

export type Rat = Q | number | bigint;

/** An exact rational number, BigInt numerator over positive BigInt denominator, in lowest terms. */
export class Q {
  private constructor(
    readonly num: bigint,
    readonly den: bigint,
  ) {}

  static readonly ZERO = new Q(0n, 1n);
  static readonly ONE = new Q(1n, 1n);

  static make(num: bigint, den = 1n): Q {
    if (den === 0n) throw new RangeError('division by zero');
    if (den < 0n) {
      num = -num;
      den = -den;
    }
    const g = bgcd(num, den);
    return g > 1n ? new Q(num / g, den / g) : new Q(num, den);
  }

  /** Exact: every finite double is a dyadic rational. */
  static of(x: Rat): Q {
    if (x instanceof Q) return x;
    if (typeof x === 'bigint') return new Q(x, 1n);
    if (!Number.isFinite(x)) throw new RangeError(`not a finite number: ${x}`);
    if (Number.isInteger(x)) return new Q(BigInt(x), 1n);
    let k = 0n;
    while (!Number.isInteger(x)) {
      x *= 2; // exact in binary floating point
      k += 1n;
    }
    return Q.make(BigInt(x), 1n << k);
  }

  add(o: Q): Q {
    if (this.den === 1n && o.den === 1n) return new Q(this.num + o.num, 1n);
    return Q.make(this.num * o.den + o.num * this.den, this.den * o.den);
  }
  sub(o: Q): Q {
    return this.add(o.neg());
  }
  mul(o: Q): Q {
    if (this.den === 1n && o.den === 1n) return new Q(this.num * o.num, 1n);
    return Q.make(this.num * o.num, this.den * o.den);
  }
  div(o: Q): Q {
    return Q.make(this.num * o.den, this.den * o.num);
  }
  neg(): Q {
    return new Q(-this.num, this.den);
  }
  isZero(): boolean {
    return this.num === 0n;
  }
  sign(): number {
    return this.num > 0n ? 1 : this.num < 0n ? -1 : 0;
  }
  cmp(o: Q): number {
    return this.sub(o).sign();
  }
  eq(o: Q): boolean {
    return this.num === o.num && this.den === o.den;
  }
  floor(): bigint {
    const q = this.num / this.den;
    return this.num < 0n && q * this.den !== this.num ? q - 1n : q;
  }
  toNumber(): number {
    return Number(this.num) / Number(this.den);
  }
  toString(): string {
    return this.den === 1n ? `${this.num}` : `${this.num}/${this.den}`;
  }
}

const lcm = (a: bigint, b: bigint): bigint => (a / bgcd(a, b)) * b;

// ---------------------------------------------------------------------------------------------------
// The generic model: observations, known facts, targets
// ---------------------------------------------------------------------------------------------------

/** S: sum of values, N: number of points, D: distinct subjects (of a region). */
export type Quantity = 'S' | 'N' | 'D';

/** coef defaults to 1. */
export interface Term {
  atom: string;
  quantity: Quantity;
  coef?: Rat;
}

/** A disclosed equation: sum of terms = value. */
export interface Observation {
  id: string;
  terms: readonly Term[];
  value: Rat;
}

/** A quantity the attacker knows (its own data). */
export interface Known {
  atom: string;
  quantity: Quantity;
  value: Rat;
}

/** What a builder's target stands for, for reports and independent checks. */
export interface TargetAbout {
  field: 'value' | 'n';
  cell?: CellSpec;
  partner?: string;
  change?: readonly [number, number];
}

/** A withheld figure: a linear form, or a ratio of two (a withheld avg or rate). */
export type Target =
  | { id: string; kind: 'linear'; terms: readonly Term[]; truth?: Rat; about?: TargetAbout }
  | {
      id: string;
      kind: 'ratio';
      num: readonly Term[];
      den: readonly Term[];
      truth?: { num: Rat; den: Rat };
      about?: TargetAbout;
    };

/** A linear inequality, used only by `feasibleInterval`. */
export interface Bound {
  id: string;
  terms: readonly Term[];
  op: '>=' | '<=';
  value: Rat;
}

export interface DisclosureSystem {
  observations: readonly Observation[];
  known: readonly Known[];
  targets: readonly Target[];
  bounds?: readonly Bound[];
}

export interface Witness {
  observations: { id: string; coef: Q; value: Q }[];
  known: { atom: string; quantity: Quantity; coef: Q; value: Q }[];
}

export interface Verdict {
  target: string;
  determined: boolean;
  /** The recovered value (for a ratio, the ratio), when determined. */
  value?: Q;
  /** How it is recovered: sum coef x observation (+ own facts) = target (ratio: = num - value x den, = 0). */
  witness?: Witness;
  /** When not determined: a change of the unknowns invisible to the attacker that moves the target. */
  direction?: Map<string, Q>;
}

export const varKey = (atom: string, quantity: Quantity): string => `${quantity}:${atom}`;

type Form = Map<string, Q>;

/** A linear form by variable key (`Q:atom`), terms on the same variable added up. */
export function formOf(terms: readonly Term[]): Form {
  const f: Form = new Map();
  for (const t of terms) addTo(f, varKey(t.atom, t.quantity), Q.of(t.coef ?? 1));
  return f;
}

function addTo<K>(f: Map<K, Q>, k: K, c: Q): void {
  const v = (f.get(k) ?? Q.ZERO).add(c);
  if (v.isZero()) f.delete(k);
  else f.set(k, v);
}

function axpy<K>(target: Map<K, Q>, src: ReadonlyMap<K, Q>, c: Q): void {
  if (c.isZero()) return;
  for (const [k, v] of src) addTo(target, k, v.mul(c));
}

function scaled<K>(src: ReadonlyMap<K, Q>, c: Q): Map<K, Q> {
  const out = new Map<K, Q>();
  axpy(out, src, c);
  return out;
}

/** The value of a form at an assignment of the variables (missing variables are 0). */
export function evaluate(terms: readonly Term[] | Form, at: ReadonlyMap<string, Q>): Q {
  const f = terms instanceof Map ? terms : formOf(terms);
  let s = Q.ZERO;
  for (const [k, c] of f) s = s.add(c.mul(at.get(k) ?? Q.ZERO));
  return s;
}

/** A canonical string of a form, to deduplicate targets. */
export function formKey(f: Form): string {
  return [...f.entries()]
    .sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0))
    .map(([k, c]) => `${c}*${k}`)
    .join(' ');
}

// Exact elimination to reduced row echelon form, each row carrying its provenance (which input rows,
// with which coefficients, add up to it).
type Row = Map<number, Q>;
interface PivotRow {
  col: number;
  row: Row;
  rhs: Q;
  prov: Row;
}

export class InconsistentDisclosure extends Error {}

class Elimination {
  readonly cols = new Map<string, number>();
  readonly names: string[] = [];
  readonly pivots = new Map<number, PivotRow>();

  col(name: string): number {
    let c = this.cols.get(name);
    if (c === undefined) {
      c = this.names.length;
      this.names.push(name);
      this.cols.set(name, c);
    }
    return c;
  }

  toRow(f: Form): Row {
    const r: Row = new Map();
    for (const [k, c] of f) r.set(this.col(k), c);
    return r;
  }

  reduce(row: Row): { residual: Row; value: Q; prov: Row } {
    const residual: Row = new Map(row);
    let value = Q.ZERO;
    const prov: Row = new Map();
    for (const [col, coef] of row) {
      const p = this.pivots.get(col);
      if (!p) continue;
      axpy(residual, p.row, coef.neg());
      value = value.add(coef.mul(p.rhs));
      axpy(prov, p.prov, coef);
    }
    return { residual, value, prov };
  }

  insert(f: Form, rhs: Q, source: number, label: string): void {
    const { residual, value, prov } = this.reduce(this.toRow(f));
    let r = rhs.sub(value);
    let pv = scaled(prov, Q.ONE.neg());
    addTo(pv, source, Q.ONE);
    if (residual.size === 0) {
      if (!r.isZero()) throw new InconsistentDisclosure(`${label} contradicts the rows before it (off by ${r})`);
      return;
    }
    const col = Math.min(...residual.keys());
    const inv = Q.ONE.div(residual.get(col)!);
    const row = scaled(residual, inv);
    r = r.mul(inv);
    pv = scaled(pv, inv);
    for (const p of this.pivots.values()) {
      const c = p.row.get(col);
      if (!c) continue;
      axpy(p.row, row, c.neg());
      p.rhs = p.rhs.sub(c.mul(r));
      axpy(p.prov, pv, c.neg());
    }
    this.pivots.set(col, { col, row, rhs: r, prov: pv });
  }

  /** A null-space vector of the rows that moves a form whose residual is `residual`. */
  direction(residual: Row): Map<string, Q> {
    const j = Math.min(...residual.keys());
    const d = new Map<string, Q>([[this.names[j]!, Q.ONE]]);
    for (const p of this.pivots.values()) {
      const c = p.row.get(j);
      if (c) d.set(this.names[p.col]!, c.neg());
    }
    return d;
  }
}

function eliminate(system: DisclosureSystem): Elimination {
  const e = new Elimination();
  const seen = new Set<string>();
  system.observations.forEach((o, i) => {
    if (seen.has(o.id)) throw new Error(`duplicate observation id ${o.id}`);
    seen.add(o.id);
    e.insert(formOf(o.terms), Q.of(o.value), i, `observation ${o.id}`);
  });
  const base = system.observations.length;
  system.known.forEach((k, i) =>
    e.insert(
      new Map([[varKey(k.atom, k.quantity), Q.ONE]]),
      Q.of(k.value),
      base + i,
      `known ${varKey(k.atom, k.quantity)}`,
    ),
  );
  return e;
}

function witnessOf(system: DisclosureSystem, prov: Row): Witness {
  const base = system.observations.length;
  const w: Witness = { observations: [], known: [] };
  for (const [i, coef] of [...prov.entries()].sort((a, b) => a[0] - b[0])) {
    if (i < base) {
      const o = system.observations[i]!;
      w.observations.push({ id: o.id, coef, value: Q.of(o.value) });
    } else {
      const k = system.known[i - base]!;
      w.known.push({ atom: k.atom, quantity: k.quantity, coef, value: Q.of(k.value) });
    }
  }
  return w;
}

function ratioGradient(t: Extract<Target, { kind: 'ratio' }>): Form | undefined {
  if (!t.truth) return undefined;
  // d(num/den) is proportional to den0 * d(num) - num0 * d(den).
  const f = scaled(formOf(t.num), Q.of(t.truth.den));
  axpy(f, formOf(t.den), Q.of(t.truth.num).neg());
  return f;
}

/** The rank test for every target of the system. Throws InconsistentDisclosure if the rows contradict. */
export function audit(system: DisclosureSystem): Verdict[] {
  const e = eliminate(system);
  return system.targets.map((t): Verdict => {
    if (t.kind === 'linear') {
      const { residual, value, prov } = e.reduce(e.toRow(formOf(t.terms)));
      if (residual.size === 0) return { target: t.id, determined: true, value, witness: witnessOf(system, prov) };
      return { target: t.id, determined: false, direction: e.direction(residual) };
    }
    const n = e.reduce(e.toRow(formOf(t.num)));
    const d = e.reduce(e.toRow(formOf(t.den)));
    let c: Q | undefined;
    if (d.residual.size === 0) {
      if (n.residual.size === 0 && !d.value.isZero()) c = n.value.div(d.value);
    } else {
      const j = Math.min(...d.residual.keys());
      const cand = (n.residual.get(j) ?? Q.ZERO).div(d.residual.get(j)!);
      const rest = new Map(n.residual);
      axpy(rest, d.residual, cand.neg());
      if (rest.size === 0 && n.value.sub(cand.mul(d.value)).isZero()) c = cand;
    }
    if (c !== undefined) {
      const prov = new Map(n.prov);
      axpy(prov, d.prov, c.neg());
      return { target: t.id, determined: true, value: c, witness: witnessOf(system, prov) };
    }
    const g = ratioGradient(t);
    const verdict: Verdict = { target: t.id, determined: false };
    if (g) {
      const r = e.reduce(e.toRow(g)).residual;
      if (r.size > 0) verdict.direction = e.direction(r);
    }
    return verdict;
  });
}

/**
 * Checks a determined verdict's witness without the elimination: the combination of the named
 * observations and own facts must be exactly the target's form (a ratio: num - value x den) and its
 * value the recovered value (a ratio: 0). Returns null when it holds, else what is wrong.
 */
export function checkWitness(system: DisclosureSystem, target: Target, verdict: Verdict): string | null {
  if (!verdict.determined || !verdict.witness || !verdict.value) return 'not a determined verdict with a witness';
  const byId = new Map(system.observations.map((o) => [o.id, o]));
  const form: Form = new Map();
  let value = Q.ZERO;
  for (const w of verdict.witness.observations) {
    const o = byId.get(w.id);
    if (!o) return `unknown observation ${w.id}`;
    axpy(form, formOf(o.terms), w.coef);
    value = value.add(w.coef.mul(Q.of(o.value)));
  }
  for (const k of verdict.witness.known) {
    const fact = system.known.find((x) => x.atom === k.atom && x.quantity === k.quantity);
    if (!fact) return `unknown fact ${varKey(k.atom, k.quantity)}`;
    addTo(form, varKey(k.atom, k.quantity), k.coef);
    value = value.add(k.coef.mul(Q.of(fact.value)));
  }
  let want: Form;
  let wantValue: Q;
  if (target.kind === 'linear') {
    want = formOf(target.terms);
    wantValue = verdict.value;
  } else {
    want = formOf(target.num);
    axpy(want, formOf(target.den), verdict.value.neg());
    wantValue = Q.ZERO;
  }
  const diff = new Map(form);
  axpy(diff, want, Q.ONE.neg());
  if (diff.size > 0) return `the combination differs from the target by ${formKey(diff)}`;
  if (!value.eq(wantValue)) return `the combination's value is ${value}, not ${wantValue}`;
  return null;
}

/**
 * Checks a "not determined" verdict's direction without the elimination: every observation and every
 * own fact is unchanged along it, and the target (a ratio: its gradient at the truth) is not.
 */
export function checkDirection(system: DisclosureSystem, target: Target, verdict: Verdict): string | null {
  const d = verdict.direction;
  if (verdict.determined || !d) return 'not an undetermined verdict with a direction';
  for (const o of system.observations) {
    const moved = evaluate(o.terms, d);
    if (!moved.isZero()) return `observation ${o.id} moves by ${moved}`;
  }
  for (const k of system.known) {
    const moved = d.get(varKey(k.atom, k.quantity));
    if (moved && !moved.isZero()) return `own fact ${varKey(k.atom, k.quantity)} moves`;
  }
  const f = target.kind === 'linear' ? formOf(target.terms) : ratioGradient(target);
  if (!f) return 'a ratio target needs its truth to check a direction';
  if (evaluate(f, d).isZero()) return 'the target does not move along the direction';
  return null;
}

/** The direction scaled to integers (smallest common multiple of the denominators). */
export function integerDirection(d: ReadonlyMap<string, Q>): Map<string, bigint> {
  let m = 1n;
  for (const c of d.values()) m = lcm(m, c.den);
  return new Map([...d].map(([k, c]) => [k, (c.num * m) / c.den]));
}

/** A readable account of a verdict, for test failure messages. */
export function explain(verdict: Verdict): string {
  if (!verdict.determined) {
    const d = verdict.direction ? ` (invisible change: ${formKey(verdict.direction)})` : '';
    return `${verdict.target}: not determined${d}`;
  }
  const lines = [`${verdict.target}: DETERMINED = ${verdict.value} (${verdict.value?.toNumber()})`];
  const sign = (c: Q) => (c.sign() < 0 ? `- ${c.neg()}` : `+ ${c}`);
  for (const o of verdict.witness?.observations ?? []) lines.push(`  ${sign(o.coef)} x [${o.id}] (= ${o.value})`);
  for (const k of verdict.witness?.known ?? [])
    lines.push(`  ${sign(k.coef)} x own ${varKey(k.atom, k.quantity)} (= ${k.value})`);
  return lines.join('\n');
}

// ---------------------------------------------------------------------------------------------------
// Feasible interval of the linear relaxation (exact two-phase simplex, Bland's rule)
// ---------------------------------------------------------------------------------------------------

export interface Interval {
  /** null: unbounded below. */
  min: Q | null;
  /** null: unbounded above. */
  max: Q | null;
}

/**
 * The smallest and largest value of a linear form over all real completions consistent with the
 * observations, the own facts and the bounds. Integrality is relaxed: a zero-width interval proves
 * the form is pinned; a wide one is an upper estimate of what the attacker cannot tell.
 */
export function feasibleInterval(
  system: DisclosureSystem,
  terms: readonly Term[],
  bounds: readonly Bound[] = system.bounds ?? [],
): Interval {
  const e = eliminate(system);
  // Express every variable as an affine function of the free variables t.
  const freeIndex = new Map<number, number>();
  const affine = (f: Form): { coef: Map<number, Q>; c: Q } => {
    const { residual, value } = e.reduce(e.toRow(f));
    const coef = new Map<number, Q>();
    for (const [col, v] of residual) {
      let j = freeIndex.get(col);
      if (j === undefined) freeIndex.set(col, (j = freeIndex.size));
      coef.set(j, v);
    }
    return { coef, c: value };
  };
  const obj = affine(formOf(terms));
  const rows = bounds.map((b) => {
    const a = affine(formOf(b.terms));
    const sign = b.op === '>=' ? Q.ONE : Q.ONE.neg();
    // sign * (a.coef . t + a.c) >= sign * value
    return { coef: scaled(a.coef, sign), h: sign.mul(Q.of(b.value).sub(a.c)) };
  });
  if (obj.coef.size === 0) return { min: obj.c, max: obj.c };
  const f = freeIndex.size;
  const G = rows.map((r) => Array.from({ length: f }, (_, j) => r.coef.get(j) ?? Q.ZERO));
  const h = rows.map((r) => r.h);
  const c = Array.from({ length: f }, (_, j) => obj.coef.get(j) ?? Q.ZERO);
  const lo = lpMin(G, h, c);
  const hi = lpMin(
    G,
    h,
    c.map((x) => x.neg()),
  );
  return { min: lo === null ? null : lo.add(obj.c), max: hi === null ? null : hi.neg().add(obj.c) };
}

/** min c.t subject to G t >= h, t free; null when unbounded. Throws when infeasible. */
function lpMin(G: Q[][], h: Q[], c: Q[]): Q | null {
  const m = G.length;
  const f = c.length;
  // Columns: u (f), w (f), surplus s (m), artificial a (m); t = u - w.
  const nv = 2 * f + 2 * m;
  const T: Q[][] = G.map((g, i) => {
    const neg = h[i]!.sign() < 0;
    const s = neg ? Q.ONE.neg() : Q.ONE;
    const row: Q[] = new Array<Q>(nv + 1).fill(Q.ZERO);
    for (let j = 0; j < f; j++) {
      row[j] = g[j]!.mul(s);
      row[f + j] = g[j]!.mul(s).neg();
    }
    row[2 * f + i] = s.neg();
    row[2 * f + m + i] = Q.ONE;
    row[nv] = h[i]!.mul(s);
    return row;
  });
  const basis = Array.from({ length: m }, (_, i) => 2 * f + m + i);
  const isArt = (j: number) => j >= 2 * f + m;
  const pivot = (r: number, col: number) => {
    const inv = Q.ONE.div(T[r]![col]!);
    T[r] = T[r]!.map((x) => x.mul(inv));
    for (let i = 0; i < m; i++) {
      if (i === r) continue;
      const k = T[i]![col]!;
      if (k.isZero()) continue;
      T[i] = T[i]!.map((x, j) => x.sub(k.mul(T[r]![j]!)));
    }
    basis[r] = col;
  };
  const run = (cost: Q[], allowed: (j: number) => boolean): 'optimal' | 'unbounded' => {
    for (;;) {
      const basic = new Set(basis);
      let enter = -1;
      for (let j = 0; j < nv && enter < 0; j++) {
        if (!allowed(j) || basic.has(j)) continue;
        let r = cost[j]!;
        for (let i = 0; i < m; i++) r = r.sub(cost[basis[i]!]!.mul(T[i]![j]!));
        if (r.sign() < 0) enter = j;
      }
      if (enter < 0) return 'optimal';
      let leave = -1;
      let best = Q.ZERO;
      for (let i = 0; i < m; i++) {
        const a = T[i]![enter]!;
        if (a.sign() <= 0) continue;
        const ratio = T[i]![nv]!.div(a);
        const k = leave < 0 ? -1 : ratio.cmp(best);
        if (leave < 0 || k < 0 || (k === 0 && basis[i]! < basis[leave]!)) {
          leave = i;
          best = ratio;
        }
      }
      if (leave < 0) return 'unbounded';
      pivot(leave, enter);
    }
  };
  const value = (cost: Q[]) => basis.reduce((s, b, i) => s.add(cost[b]!.mul(T[i]![nv]!)), Q.ZERO);
  const phase1 = Array.from({ length: nv }, (_, j) => (isArt(j) ? Q.ONE : Q.ZERO));
  run(phase1, () => true);
  if (!value(phase1).isZero()) throw new InconsistentDisclosure('the bounds exclude every completion (the truth too)');
  for (let i = 0; i < m; i++) {
    if (!isArt(basis[i]!)) continue;
    const j = T[i]!.findIndex((x, k) => k < 2 * f + m && !x.isZero());
    if (j >= 0) pivot(i, j);
  }
  const phase2 = Array.from({ length: nv }, (_, j) => (j < f ? c[j]! : j < 2 * f ? c[j - f]!.neg() : Q.ZERO));
  if (run(phase2, (j) => !isArt(j)) === 'unbounded') return null;
  return value(phase2);
}

// ---------------------------------------------------------------------------------------------------
// Quantiles
// ---------------------------------------------------------------------------------------------------

export const QUANTILE: Readonly<Record<'p50' | 'p90' | 'p95', Q>> = {
  p50: Q.make(1n, 2n),
  p90: Q.make(9n, 10n),
  p95: Q.make(19n, 20n),
};

/** Linear interpolation between order statistics (numpy 'linear', DuckDB quantile_cont), exactly. */
export function quantileOf(values: readonly Q[], q: Q): Q {
  if (values.length === 0) throw new RangeError('quantile of nothing');
  const s = [...values].sort((a, b) => a.cmp(b));
  const pos = Q.of(s.length - 1).mul(q);
  const lo = Number(pos.floor());
  const frac = pos.sub(Q.of(lo));
  const a = s[lo]!;
  if (frac.isZero()) return a;
  return a.add(s[lo + 1]!.sub(a).mul(frac));
}

/**
 * Every value x of a single unknown point such that quantile(own + [x]) = disclosed, as an interval
 * (the quantile is continuous and non-decreasing in x, so the preimage is one); null when empty.
 */
export function quantilePreimage(own: readonly Q[], q: Q, disclosed: Q): Interval | null {
  const o = [...own].sort((a, b) => a.cmp(b));
  const m = o.length;
  const pos = Q.of(m).mul(q); // (n - 1) q with n = m + 1
  const lo = Number(pos.floor());
  const frac = pos.sub(Q.of(lo));
  const weights: [number, Q][] = [[lo, Q.ONE.sub(frac)]];
  if (!frac.isZero()) weights.push([lo + 1, frac]);
  let min: Q | null | undefined;
  let max: Q | null | undefined;
  const take = (a: Q | null, b: Q | null) => {
    if (min === undefined || (min !== null && (a === null || a.cmp(min) < 0))) min = a;
    if (max === undefined || (max !== null && (b === null || b.cmp(max) > 0))) max = b;
  };
  for (let i = 0; i <= m; i++) {
    // x has rank i: o[i-1] <= x <= o[i]; the union sorted is o[0..i-1], x, o[i..].
    const L = i === 0 ? null : o[i - 1]!;
    const U = i === m ? null : o[i]!;
    let a = Q.ZERO;
    let b = Q.ZERO;
    for (const [idx, w] of weights) {
      if (idx === i) a = a.add(w);
      else b = b.add(w.mul(o[idx < i ? idx : idx - 1]!));
    }
    if (a.isZero()) {
      if (b.eq(disclosed)) take(L, U);
      continue;
    }
    const x = disclosed.sub(b).div(a);
    if ((L === null || x.cmp(L) >= 0) && (U === null || x.cmp(U) <= 0)) take(x, x);
  }
  return min === undefined || max === undefined ? null : { min, max };
}

// ---------------------------------------------------------------------------------------------------
// Scenarios: points, cells, what was served
// ---------------------------------------------------------------------------------------------------

export type Grain = 'day' | 'week' | 'month';
export type Measure = 'avg' | 'sum' | 'count' | 'rate' | 'p50' | 'p90' | 'p95' | 'distinct';
export const MEASURES: readonly Measure[] = ['avg', 'sum', 'count', 'rate', 'p50', 'p90', 'p95', 'distinct'];
const isQuantile = (m: Measure): m is 'p50' | 'p90' | 'p95' => m === 'p50' || m === 'p90' || m === 'p95';

/** A point as pushed: local day, snapshot it landed at, snapshot retention removed it at (if any). */
export interface Point {
  partner: string;
  day: string;
  dims?: Readonly<Record<string, string>>;
  subject: string;
  value: number;
  snapshot: number;
  removedAt?: number;
  /** The snapshot the room released the point at (default: its landing snapshot; Infinity: never). */
  released?: number;
}

export interface Scenario {
  measure: Measure;
  points: readonly Point[];
  /** What the attacker may assume about subjects and points (checked against the data). Default 'any'. */
  pointsPerSubject?: 'any' | 'onePerDay' | 'one';
  /** The KPI's value range, for the interval bounds (rate: [0, 1]). */
  range?: readonly [number, number];
}

/** One cell of one read: by is 'none', 'partner' or a dimension key. */
export interface CellSpec {
  grain: Grain;
  period: string;
  by: string;
  group: string | null;
  snapshot: number;
}

/** What a read returned for a cell. shows defaults to value and n when ok, nothing when suppressed. */
export interface ServedCell extends CellSpec {
  /** held: the cell shows its points released by its snapshot (Point.released), not all of them. */
  state: 'ok' | 'suppressed' | 'held';
  /** 'small' (fewer than k subjects) becomes a bound; anything else is informational. */
  reason?: string;
  shows?: { value?: boolean; n?: boolean; points?: boolean };
}

export interface Surface {
  grains: readonly Grain[];
  bys: readonly string[];
  snapshots: readonly number[];
}

const DAY_MS = 86_400_000;
export function addDays(day: string, k: number): string {
  const [y, m, d] = day.split('-').map(Number) as [number, number, number];
  return new Date(Date.UTC(y, m - 1, d, 12) + k * DAY_MS).toISOString().slice(0, 10);
}

/** The first day of the period a local day falls in (ISO weeks start on Monday). */
export function periodStart(day: string, grain: Grain): string {
  if (grain === 'day') return day;
  if (grain === 'month') return `${day.slice(0, 8)}01`;
  const [y, m, d] = day.split('-').map(Number) as [number, number, number];
  const sinceMonday = (new Date(Date.UTC(y, m - 1, d, 12)).getUTCDay() + 6) % 7;
  return addDays(day, -sinceMonday);
}

export function cellLabel(c: CellSpec): string {
  return `${c.grain} ${c.period} by=${c.by}${c.group === null ? '' : `:${c.group}`} @${c.snapshot}`;
}

const groupOf = (p: Point, by: string): string | null =>
  by === 'none' ? null : by === 'partner' ? p.partner : (p.dims?.[by] ?? null);

const visibleAt = (p: Point, snapshot: number): boolean =>
  p.snapshot <= snapshot && (p.removedAt === undefined || p.removedAt > snapshot);

/** The points a cell aggregates. */
export function pointsIn(scenario: Scenario, c: CellSpec): Point[] {
  return scenario.points.filter(
    (p) => visibleAt(p, c.snapshot) && periodStart(p.day, c.grain) === c.period && groupOf(p, c.by) === c.group,
  );
}

/** Every cell a read of the surface returns (cells exist where there are points). */
export function readableCells(scenario: Scenario, surface: Surface): CellSpec[] {
  const out = new Map<string, CellSpec>();
  for (const grain of surface.grains)
    for (const by of surface.bys)
      for (const snapshot of surface.snapshots)
        for (const p of scenario.points) {
          if (!visibleAt(p, snapshot)) continue;
          const c: CellSpec = { grain, period: periodStart(p.day, grain), by, group: groupOf(p, by), snapshot };
          out.set(cellLabel(c), c);
        }
  return [...out.values()].sort((a, b) => (cellLabel(a) < cellLabel(b) ? -1 : 1));
}

const subjectsOf = (pts: readonly Point[]): number => new Set(pts.map((p) => `${p.partner}\u0000${p.subject}`)).size;

/** Serve every readable cell, the state decided per cell. */
export function serve(
  scenario: Scenario,
  surface: Surface,
  decide: (cell: CellSpec, points: Point[]) => 'ok' | 'suppressed',
): ServedCell[] {
  return readableCells(scenario, surface).map((c) => {
    const state = decide(c, pointsIn(scenario, c));
    return state === 'ok' ? { ...c, state } : { ...c, state, reason: 'small' };
  });
}

/**
 * The rule the product applies today, one response at a time: a cell is withheld below k distinct
 * subjects over all partners; with a breakdown, a lone withheld cell takes the visible cell with the
 * fewest subjects of its period with it (complementary suppression).
 */
export function serveToday(scenario: Scenario, surface: Surface, k: number): ServedCell[] {
  const cells = readableCells(scenario, surface).map((c) => {
    const n = subjectsOf(pointsIn(scenario, c));
    return { c, n, state: n < k ? ('suppressed' as const) : ('ok' as const), reason: n < k ? 'small' : undefined };
  });
  const order = (a: string | null, b: string | null) =>
    a === b ? 0 : a === null ? -1 : b === null ? 1 : a < b ? -1 : 1;
  const responses = new Map<string, typeof cells>();
  for (const x of cells) {
    if (x.c.by === 'none') continue;
    const key = `${x.c.grain}|${x.c.by}|${x.c.snapshot}|${x.c.period}`;
    responses.set(key, [...(responses.get(key) ?? []), x]);
  }
  for (const group of responses.values()) {
    group.sort((a, b) => order(a.c.group, b.c.group));
    const hidden = group.filter((x) => x.state === 'suppressed');
    const visible = group.filter((x) => x.state === 'ok');
    if (hidden.length !== 1 || visible.length === 0) continue;
    let victim = visible[0]!;
    for (const x of visible) if (x.n < victim.n) victim = x;
    victim.state = 'suppressed';
    victim.reason = 'complementary';
  }
  return cells.map((x) =>
    x.reason === undefined ? { ...x.c, state: x.state } : { ...x.c, state: x.state, reason: x.reason },
  );
}

/** The exact value of a measure over points (the independent reference for the builder's numbers). */
export function measureValue(measure: Measure, pts: readonly Point[]): Q {
  const values = pts.map((p) => Q.of(p.value));
  const sum = values.reduce((a, b) => a.add(b), Q.ZERO);
  switch (measure) {
    case 'sum':
      return sum;
    case 'count':
      return Q.of(pts.length);
    case 'avg':
    case 'rate':
      return sum.div(Q.of(pts.length));
    case 'distinct':
      return Q.of(subjectsOf(pts));
    default:
      return quantileOf(values, QUANTILE[measure]);
  }
}

// ---------------------------------------------------------------------------------------------------
// From a scenario and what was served to a disclosure system
// ---------------------------------------------------------------------------------------------------

interface Atom {
  id: string;
  partner: string;
  points: Point[];
}

const atomIdOf = (p: Point): string => {
  const dims = Object.entries(p.dims ?? {})
    .sort((a, b) => (a[0] < b[0] ? -1 : 1))
    .map(([k, v]) => `${k}=${v}`)
    .join(',');
  return `${p.partner}/${p.day}/${dims || '-'}/s${p.snapshot}${p.removedAt === undefined ? '' : `-${p.removedAt}`}`;
};

export interface BuildOptions {
  attacker: string;
  /** The group-size threshold: parts and changes with fewer subjects are targets; 'small' becomes a bound. */
  k?: number;
  /** Which reads define parts and changes; default: the grains, breakdowns and snapshots served. */
  surface?: Surface;
  targets?: {
    /** Every withheld served cell (default true). */
    withheld?: boolean;
    /** Every foreign partner's part of a readable cell with fewer than k subjects (default true when k). */
    smallParts?: boolean;
    /** Every foreign partner's change of a readable cell between snapshots, < k subjects (default true when k). */
    changes?: boolean;
    /** Combined KPIs: every foreign partner's part and change, whatever its size (default false). */
    everyPartnerPart?: boolean;
  };
}

export interface BuiltSystem extends DisclosureSystem {
  targets: Target[];
  bounds: Bound[];
  /** The actual value of every variable (the data), for certificates and second completions. */
  truth: Map<string, Q>;
  /** Each S/N variable's atom: its partner and points. */
  atoms: ReadonlyMap<string, { partner: string; points: readonly Point[] }>;
}

/** Builds observations, the attacker's facts, targets and bounds from a scenario and what was served. */
export function buildSystem(scenario: Scenario, served: readonly ServedCell[], options: BuildOptions): BuiltSystem {
  const { attacker, k } = options;
  const mode = scenario.pointsPerSubject ?? 'any';
  checkMode(scenario.points, mode);
  const measure = scenario.measure;

  const atoms = new Map<string, Atom>();
  for (const p of scenario.points) {
    const id = atomIdOf(p);
    let a = atoms.get(id);
    if (!a) atoms.set(id, (a = { id, partner: p.partner, points: [] }));
    a.points.push(p);
  }
  const atomsOfPoints = (pts: readonly Point[]): Atom[] => [...new Set(pts.map((p) => atoms.get(atomIdOf(p))!))];
  const regions = new Map<string, Atom[]>(); // region id -> atoms (one partner)

  const truth = new Map<string, Q>();
  for (const a of atoms.values()) {
    truth.set(
      varKey(a.id, 'S'),
      a.points.reduce((s, p) => s.add(Q.of(p.value)), Q.ZERO),
    );
    truth.set(varKey(a.id, 'N'), Q.of(a.points.length));
  }
  const terms = (as: readonly Atom[], quantity: 'S' | 'N', coef: Rat = 1): Term[] =>
    as.map((a) => ({ atom: a.id, quantity, coef }));
  const dTerms = (as: readonly Atom[], coef: Rat = 1): Term[] => {
    const byPartner = new Map<string, Atom[]>();
    for (const a of as) byPartner.set(a.partner, [...(byPartner.get(a.partner) ?? []), a]);
    const out: Term[] = [];
    for (const [partner, list] of byPartner) {
      const days = new Set(list.flatMap((a) => a.points.map((p) => p.day)));
      if (mode === 'one' || (mode === 'onePerDay' && days.size === 1)) {
        out.push(...terms(list, 'N', coef));
        continue;
      }
      const ids = list.map((a) => a.id).sort();
      const id = `${partner}{${ids.join(' + ')}}`;
      if (!regions.has(id)) {
        regions.set(id, list);
        truth.set(varKey(id, 'D'), Q.of(subjectsOf(list.flatMap((a) => a.points))));
      }
      out.push({ atom: id, quantity: 'D', coef });
    }
    return out;
  };
  const value = (f: Form) => evaluate(f, truth);

  // Observations.
  const observations: Observation[] = [];
  const bounds: Bound[] = [];
  const ids = new Set<string>();
  const observe = (id: string, ts: Term[], v: Q) => {
    let unique = id;
    for (let i = 2; ids.has(unique); i++) unique = `${id} #${i}`;
    ids.add(unique);
    observations.push({ id: unique, terms: ts, value: v });
  };
  for (const cell of served) {
    // A held cell shows the points released by its snapshot: the value served since then.
    const pts = pointsIn(scenario, cell).filter(
      (p) => cell.state !== 'held' || (p.released ?? p.snapshot) <= cell.snapshot,
    );
    if (pts.length === 0) continue;
    const as = atomsOfPoints(pts);
    const label = cellLabel(cell);
    const shows = cell.shows ?? (cell.state !== 'suppressed' ? { value: true, n: true } : {});
    if (shows.value && !isQuantile(measure)) {
      if (measure === 'avg' || measure === 'rate') {
        const v = measureValue(measure, pts);
        observe(`${label} value`, [...terms(as, 'S'), ...terms(as, 'N', v.neg())], Q.ZERO);
      } else {
        const ts = measure === 'sum' ? terms(as, 'S') : measure === 'count' ? terms(as, 'N') : dTerms(as);
        observe(`${label} value`, ts, value(formOf(ts)));
      }
    }
    if (shows.n) {
      const ts = dTerms(as);
      observe(`${label} n`, ts, value(formOf(ts)));
    }
    if (shows.points) observe(`${label} points`, terms(as, 'N'), Q.of(pts.length));
    if (cell.state === 'suppressed' && cell.reason === 'small' && k !== undefined)
      bounds.push({ id: `${label} has fewer than ${k} subjects`, terms: dTerms(as), op: '<=', value: k - 1 });
  }

  // Targets.
  const targets: Target[] = [];
  const targetKeys = new Set<string>();
  const isForeign = (f: Form) =>
    [...f.keys()].some((key) => {
      const atom = key.slice(2);
      return (atoms.get(atom)?.partner ?? atom.slice(0, atom.indexOf('{'))) !== attacker;
    });
  const addLinear = (id: string, ts: Term[], about: TargetAbout) => {
    const f = formOf(ts);
    if (f.size === 0 || !isForeign(f)) return;
    const key = `L ${formKey(f)}`;
    if (targetKeys.has(key)) return;
    targetKeys.add(key);
    targets.push({ id, kind: 'linear', terms: ts, truth: value(f), about });
  };
  const addRatio = (id: string, num: Term[], den: Term[], about: TargetAbout) => {
    const fn = formOf(num);
    const fd = formOf(den);
    if (!isForeign(fd) || value(fd).isZero()) return;
    const key = `R ${formKey(fn)} / ${formKey(fd)}`;
    if (targetKeys.has(key)) return;
    targetKeys.add(key);
    targets.push({ id, kind: 'ratio', num, den, truth: { num: value(fn), den: value(fd) }, about });
  };
  const addValueAndN = (id: string, as: Atom[], about: Omit<TargetAbout, 'field'>) => {
    if (measure === 'avg' || measure === 'rate')
      addRatio(`${id} value`, terms(as, 'S'), terms(as, 'N'), { ...about, field: 'value' });
    else if (!isQuantile(measure))
      addLinear(`${id} value`, measure === 'sum' ? terms(as, 'S') : measure === 'count' ? terms(as, 'N') : dTerms(as), {
        ...about,
        field: 'value',
      });
    addLinear(`${id} n`, dTerms(as), { ...about, field: 'n' });
  };
  const want = options.targets ?? {};
  if (want.withheld ?? true)
    for (const cell of served) {
      if (cell.state !== 'suppressed') continue;
      const pts = pointsIn(scenario, cell);
      if (pts.length > 0) addValueAndN(cellLabel(cell), atomsOfPoints(pts), { cell });
    }
  const every = want.everyPartnerPart ?? false;
  const small = (pts: readonly Point[]) => every || (k !== undefined && subjectsOf(pts) < k);
  const surface: Surface = options.surface ?? {
    grains: [...new Set(served.map((c) => c.grain))],
    bys: [...new Set(served.map((c) => c.by))],
    snapshots: [...new Set(served.map((c) => c.snapshot))].sort((a, b) => a - b),
  };
  const readable = readableCells(scenario, surface);
  const foreignParts = (pts: readonly Point[]) => {
    const by = new Map<string, Point[]>();
    for (const p of pts) if (p.partner !== attacker) by.set(p.partner, [...(by.get(p.partner) ?? []), p]);
    return by;
  };
  if (want.smallParts ?? (k !== undefined || every)) {
    for (const cell of readable)
      for (const [partner, pts] of foreignParts(pointsIn(scenario, cell)))
        if (small(pts)) addValueAndN(`${partner}'s part of ${cellLabel(cell)}`, atomsOfPoints(pts), { cell, partner });
    // Weeks and months read without days: a month minus its whole weeks gives its end slices (the
    // days a week shares with a month), so a foreign part of a slice is a target like a cell's.
    if (surface.grains.includes('week') && surface.grains.includes('month') && !surface.grains.includes('day'))
      for (const snapshot of surface.snapshots)
        for (const by of surface.bys) {
          const slices = new Map<string, Point[]>();
          for (const p of scenario.points) {
            if (!visibleAt(p, snapshot)) continue;
            const w = periodStart(p.day, 'week');
            const m = periodStart(p.day, 'month');
            const key = `${w > m ? w : m} by=${by}${groupOf(p, by) === null ? '' : `:${groupOf(p, by)}`} @${snapshot}`;
            slices.set(key, [...(slices.get(key) ?? []), p]);
          }
          for (const [slice, pts] of slices)
            for (const [partner, part] of foreignParts(pts))
              if (small(part))
                addValueAndN(`${partner}'s part of the slice ${slice}`, atomsOfPoints(part), { partner });
        }
    // Two dimensions or more read: one dimension's cell minus another's cuts out the cells of
    // every dimension at once (north minus app is north∩web less south∩app), so a foreign part of
    // such a cell is a target like a cell's (the emptiness of south∩app is granted, above).
    // With weeks and months read without days, their slices too.
    const dimBys = surface.bys.filter((b) => b !== 'none' && b !== 'partner');
    const sliced =
      surface.grains.includes('week') && surface.grains.includes('month') && !surface.grains.includes('day');
    const starts: [string, (day: string) => string][] = [
      ...surface.grains.map((g): [string, (day: string) => string] => [g, (day) => periodStart(day, g)]),
      ...(sliced
        ? [
            [
              'slice',
              (day: string) => {
                const w = periodStart(day, 'week');
                const m = periodStart(day, 'month');
                return w > m ? w : m;
              },
            ] as [string, (day: string) => string],
          ]
        : []),
    ];
    if (dimBys.length > 1)
      for (const snapshot of surface.snapshots)
        for (const [grain, start] of starts) {
          const cross = new Map<string, Point[]>();
          for (const p of scenario.points) {
            if (!visibleAt(p, snapshot)) continue;
            // A value the point does not carry: not a string any dimension value can be.
            const key = `${start(p.day)} ${dimBys.map((d) => `${d}=${groupOf(p, d) ?? '\u0000'}`).join(' ')} @${snapshot}`;
            cross.set(key, [...(cross.get(key) ?? []), p]);
          }
          for (const [cell, pts] of cross)
            for (const [partner, part] of foreignParts(pts))
              if (small(part))
                addValueAndN(`${partner}'s part of the ${grain} ${cell}`, atomsOfPoints(part), { partner });
        }
  }
  if (want.changes ?? (k !== undefined || every)) {
    const snaps = [...surface.snapshots].sort((a, b) => a - b);
    const seen = new Set<string>();
    for (const cell of readable) {
      const key = `${cell.grain}|${cell.period}|${cell.by}|${cell.group}`;
      if (seen.has(key)) continue;
      seen.add(key);
      for (let i = 1; i < snaps.length; i++) {
        const before = { ...cell, snapshot: snaps[i - 1]! };
        const after = { ...cell, snapshot: snaps[i]! };
        const was = foreignParts(pointsIn(scenario, before));
        const is = foreignParts(pointsIn(scenario, after));
        for (const partner of new Set([...was.keys(), ...is.keys()])) {
          const oldAtoms = atomsOfPoints(was.get(partner) ?? []);
          const newAtoms = atomsOfPoints(is.get(partner) ?? []);
          const added = newAtoms.filter((a) => !oldAtoms.includes(a));
          const removed = oldAtoms.filter((a) => !newAtoms.includes(a));
          const moved = [...added, ...removed].flatMap((a) => a.points);
          if (moved.length === 0 || !small(moved)) continue;
          const id = `${partner}'s change of ${cellLabel(after)} since @${before.snapshot}`;
          const about = { cell: after, partner, change: [before.snapshot, after.snapshot] as const };
          const delta = (q: 'S' | 'N') => [...terms(added, q), ...terms(removed, q, -1)];
          if ((measure === 'avg' || measure === 'rate') && (added.length === 0 || removed.length === 0))
            addRatio(`${id} value`, delta('S'), delta('N'), { ...about, field: 'value' });
          else if (measure === 'avg' || measure === 'rate') {
            addLinear(`${id} sum`, delta('S'), { ...about, field: 'value' });
            addLinear(`${id} points`, delta('N'), { ...about, field: 'value' });
          } else if (measure === 'sum' || measure === 'count')
            addLinear(`${id} value`, delta(measure === 'sum' ? 'S' : 'N'), { ...about, field: 'value' });
          const dn = [...dTerms(newAtoms), ...dTerms(oldAtoms, -1)];
          if (measure === 'distinct') addLinear(`${id} value`, dn, { ...about, field: 'value' });
          addLinear(`${id} n`, dn, { ...about, field: 'n' });
        }
      }
    }
  }

  // The attacker's own facts: every own atom's S and N, every own region's D.
  const known: Known[] = [];
  for (const a of atoms.values())
    if (a.partner === attacker)
      for (const q of ['S', 'N'] as const) known.push({ atom: a.id, quantity: q, value: truth.get(varKey(a.id, q))! });
  for (const [id, list] of regions)
    if (list[0]!.partner === attacker) known.push({ atom: id, quantity: 'D', value: truth.get(varKey(id, 'D'))! });

  // Bounds every completion obeys: non-empty atoms, the value range, subjects within points.
  const range = scenario.range ?? (measure === 'rate' ? ([0, 1] as const) : undefined);
  for (const a of atoms.values()) {
    if (a.partner === attacker) continue;
    bounds.push({ id: `${a.id} holds a point`, terms: [{ atom: a.id, quantity: 'N' }], op: '>=', value: 1 });
    if (range) {
      const [lo, hi] = range;
      const S = { atom: a.id, quantity: 'S' } as const;
      bounds.push({
        id: `${a.id} >= ${lo} each`,
        terms: [S, { atom: a.id, quantity: 'N', coef: -lo }],
        op: '>=',
        value: 0,
      });
      bounds.push({
        id: `${a.id} <= ${hi} each`,
        terms: [S, { atom: a.id, quantity: 'N', coef: -hi }],
        op: '<=',
        value: 0,
      });
    }
  }
  for (const [id, list] of regions) {
    if (list[0]!.partner === attacker) continue;
    bounds.push({ id: `${id} has a subject`, terms: [{ atom: id, quantity: 'D' }], op: '>=', value: 1 });
    bounds.push({
      id: `${id} has no more subjects than points`,
      terms: [{ atom: id, quantity: 'D' }, ...terms(list, 'N', -1)],
      op: '<=',
      value: 0,
    });
    for (const [other, inner] of regions)
      if (other !== id && inner[0]!.partner === list[0]!.partner && inner.every((a) => list.includes(a)))
        bounds.push({
          id: `${id} has at least the subjects of ${other}`,
          terms: [
            { atom: id, quantity: 'D' },
            { atom: other, quantity: 'D', coef: -1 },
          ],
          op: '>=',
          value: 0,
        });
  }

  const atomView = new Map<string, { partner: string; points: readonly Point[] }>();
  for (const a of atoms.values()) atomView.set(a.id, { partner: a.partner, points: a.points });
  return { observations, known, targets, bounds, truth, atoms: atomView };
}

function checkMode(points: readonly Point[], mode: 'any' | 'onePerDay' | 'one'): void {
  if (mode === 'any') return;
  const seen = new Set<string>();
  for (const p of points) {
    const key = mode === 'one' ? `${p.partner}\u0000${p.subject}` : `${p.partner}\u0000${p.subject}\u0000${p.day}`;
    if (seen.has(key))
      throw new Error(`pointsPerSubject '${mode}' does not hold: ${p.partner}'s subject ${p.subject} repeats`);
    seen.add(key);
  }
}

export interface QuantileFinding {
  cell: string;
  partner: string;
  /**
   * pinned: the cell's only foreign point is recovered exactly from the disclosed quantile and own points;
   * interval: it is only bounded (the interval may be unbounded);
   * small-part: a foreign partner's part of a disclosed quantile cell has fewer than k subjects;
   * stepped: the cell was disclosed over the same foreign points with `steps` (three or more) different sets of the attacker's own.
   */
  kind: 'pinned' | 'interval' | 'small-part' | 'stepped';
  steps?: number;
  interval?: Interval;
  value?: Q;
  subjects?: number;
}

/** The quantile checks for every disclosed quantile cell (see the header for what they cover). */
export function quantileFindings(
  scenario: Scenario,
  served: readonly ServedCell[],
  options: { attacker: string; k?: number },
): QuantileFinding[] {
  const measure = scenario.measure;
  if (!isQuantile(measure)) return [];
  const out: QuantileFinding[] = [];
  for (const cell of served) {
    const shows = cell.shows ?? (cell.state === 'ok' ? { value: true } : {});
    if (!shows.value) continue;
    const pts = pointsIn(scenario, cell);
    if (pts.length === 0) continue;
    const label = cellLabel(cell);
    const own = pts.filter((p) => p.partner === options.attacker).map((p) => Q.of(p.value));
    const foreign = pts.filter((p) => p.partner !== options.attacker);
    if (foreign.length === 1) {
      const disclosed = measureValue(measure, pts);
      const interval = quantilePreimage(own, QUANTILE[measure], disclosed)!;
      const pinned = interval.min !== null && interval.max !== null && interval.min.eq(interval.max);
      out.push(
        pinned
          ? { cell: label, partner: foreign[0]!.partner, kind: 'pinned', value: interval.min!, interval }
          : { cell: label, partner: foreign[0]!.partner, kind: 'interval', interval },
      );
    }
    if (options.k === undefined) continue;
    const parts = new Map<string, Point[]>();
    for (const p of foreign) parts.set(p.partner, [...(parts.get(p.partner) ?? []), p]);
    for (const [partner, list] of parts) {
      const subjects = subjectsOf(list);
      if (subjects < options.k) out.push({ cell: label, partner, kind: 'small-part', subjects });
    }
  }
  out.push(...steppedCells(scenario, served, options.attacker));
  return out;
}

/**
 * The stepping attack (header, c): per cell over snapshots, the disclosures that showed the same
 * foreign points (a held cell shows its points released by its snapshot), and the different sets of
 * the attacker's own points beside them. Three or more is a finding, named by the cell's last snapshot.
 */
function steppedCells(scenario: Scenario, served: readonly ServedCell[], attacker: string): QuantileFinding[] {
  const seen = new Map<string, { label: string; partner: string; own: Set<string> }>();
  for (const cell of served) {
    const shows = cell.shows ?? (cell.state === 'ok' ? { value: true } : {});
    if (!shows.value) continue;
    const pts = pointsIn(scenario, cell).filter(
      (p) => cell.state !== 'held' || (p.released ?? p.snapshot) <= cell.snapshot,
    );
    const ids = (list: readonly Point[]) =>
      list
        .map((p) => `${p.partner}|${p.subject}|${p.day}|${p.value}|${p.snapshot}`)
        .sort()
        .join(';');
    const foreign = pts.filter((p) => p.partner !== attacker);
    if (foreign.length === 0) continue;
    const key = `${cell.grain}|${cell.by}|${cell.group}|${cell.period}|${ids(foreign)}`;
    let s = seen.get(key);
    if (!s) seen.set(key, (s = { label: cellLabel(cell), partner: foreign[0]!.partner, own: new Set() }));
    s.own.add(ids(pts.filter((p) => p.partner === attacker)));
    s.label = cellLabel(cell);
  }
  return [...seen.values()]
    .filter((s) => s.own.size >= 3)
    .map((s) => ({ cell: s.label, partner: s.partner, kind: 'stepped' as const, steps: s.own.size }));
}

export interface ScenarioAudit {
  system: BuiltSystem;
  verdicts: Verdict[];
  /** Determined targets, each with its target. */
  leaks: { target: Target; verdict: Verdict }[];
  quantile: QuantileFinding[];
  /** Every leak explained, and every pinned or small quantile part, one per paragraph. */
  report(): string;
}

/** buildSystem + audit + quantileFindings. */
export function auditScenario(scenario: Scenario, served: readonly ServedCell[], options: BuildOptions): ScenarioAudit {
  const system = buildSystem(scenario, served, options);
  const verdicts = audit(system);
  const leaks = verdicts.flatMap((verdict, i) => (verdict.determined ? [{ target: system.targets[i]!, verdict }] : []));
  const quantile = quantileFindings(scenario, served, options);
  return {
    system,
    verdicts,
    leaks,
    quantile,
    report: () =>
      [
        ...leaks.map((l) => explain(l.verdict)),
        ...quantile
          .filter((f) => f.kind !== 'interval')
          .map((f) =>
            f.kind === 'pinned'
              ? `${f.cell}: ${f.partner}'s only point is pinned at ${f.value}`
              : f.kind === 'stepped'
                ? `${f.cell}: stepped ${f.steps} times over the same foreign points`
                : `${f.cell}: ${f.partner}'s part has ${f.subjects} subjects`,
          ),
      ].join('\n\n'),
  };
}
