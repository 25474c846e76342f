-- DuckDB: the landed points and the receipts of their batches. A batch's snapshot number is
-- its id in time: points carry it, and a query "as of snapshot N" reads snapshot <= N, counting
-- only the points released by N (held_atoms, below).
CREATE TABLE IF NOT EXISTS batches (
  id                 VARCHAR PRIMARY KEY,
  snapshot           UINTEGER NOT NULL UNIQUE,
  partner            VARCHAR NOT NULL,
  idempotency_key    VARCHAR,
  body_sha256        VARCHAR NOT NULL,
  content_type       VARCHAR NOT NULL,
  accepted           UINTEGER NOT NULL,
  rejected           UINTEGER NOT NULL,
  checksum           VARCHAR NOT NULL,
  errors             VARCHAR NOT NULL,
  agreement_version  INTEGER NOT NULL,
  received_at        TIMESTAMPTZ NOT NULL,
  landed_at          TIMESTAMPTZ NOT NULL,
  kpis               VARCHAR[]
);
CREATE UNIQUE INDEX IF NOT EXISTS batches_idempotency ON batches (partner, idempotency_key);
-- The KPIs a batch touched: a new batch invalidates cached aggregates of those KPIs only.
ALTER TABLE batches ADD COLUMN IF NOT EXISTS kpis VARCHAR[];

-- subject holds the keyed pseudonym, never a raw identifier; dims is canonical JSON or NULL.
CREATE TABLE IF NOT EXISTS points (
  snapshot  UINTEGER NOT NULL,
  partner   VARCHAR NOT NULL,
  kpi       VARCHAR NOT NULL,
  ts        TIMESTAMPTZ NOT NULL,
  value     DOUBLE NOT NULL,
  subject   VARCHAR NOT NULL,
  dims      VARCHAR,
  local_day DATE
);
-- The calendar day of ts in the partnership's time zone, computed once at landing: bucketing
-- by local day is half the cost of a query (room_settings.timezone says which zone).
ALTER TABLE points ADD COLUMN IF NOT EXISTS local_day DATE;
CREATE TABLE IF NOT EXISTS room_settings (key VARCHAR PRIMARY KEY, value VARCHAR NOT NULL);

-- Rollups: every agreed cell (KPI × grain × breakdown × period × group), computed exactly by
-- the same compiled SQL and kept current after each batch for the periods it touched, so a
-- series is read from a few thousand rows instead of aggregated from every point.
-- rollup_state.snapshot is the last snapshot touching the KPI that the cells include; a query
-- at an older effective snapshot reads points, one at a later one (a batch not yet rolled up)
-- reads the periods that batch can move from the points and the rest from here (rollups.ts).
CREATE TABLE IF NOT EXISTS rollup_cells (
  kpi        VARCHAR NOT NULL,
  grain      VARCHAR NOT NULL,
  breakdown  VARCHAR NOT NULL,
  period     VARCHAR NOT NULL,
  grp        VARCHAR,
  value      DOUBLE,
  n          INTEGER NOT NULL
);
-- What the disclosure rules need (services/query/disclosure.ts): the fewest distinct subjects of
-- any contributing partner, the contributing partners, and whether a point of the cell lies in a
-- withheld part of a linked cell. A rollup built before these columns has another signature and
-- is rebuilt.
ALTER TABLE rollup_cells ADD COLUMN IF NOT EXISTS min_part INTEGER;
ALTER TABLE rollup_cells ADD COLUMN IF NOT EXISTS partners INTEGER;
ALTER TABLE rollup_cells ADD COLUMN IF NOT EXISTS protects BOOLEAN;
-- Under a sum KPI's dominance rule: one partner's share of the cell's sum is above it.
ALTER TABLE rollup_cells ADD COLUMN IF NOT EXISTS dominated BOOLEAN;
-- Beside the cells, what re-deciding them after a batch needs without rereading every point:
-- every partner's part of every cell of every readable family (f: the agreed grains × the
-- combined figure and each dimension, in the compiler's order; c the cell's first day, v its
-- dimension value; d distinct subjects), and the atoms (partner × local day × dimensions).
CREATE TABLE IF NOT EXISTS rollup_parts (
  kpi      VARCHAR NOT NULL,
  f        INTEGER NOT NULL,
  c        DATE NOT NULL,
  v        VARCHAR,
  partner  VARCHAR NOT NULL,
  d        INTEGER NOT NULL
);
-- s: the partner's sum in the cell, kept under a dominance rule only (else NULL).
ALTER TABLE rollup_parts ADD COLUMN IF NOT EXISTS s DOUBLE;
-- rd: the partner's released distinct subjects in the cell (rel_min_part of a held cell).
ALTER TABLE rollup_parts ADD COLUMN IF NOT EXISTS rd INTEGER;
CREATE TABLE IF NOT EXISTS rollup_atoms (
  kpi        VARCHAR NOT NULL,
  partner    VARCHAR NOT NULL,
  local_day  DATE NOT NULL,
  dims       VARCHAR
);
CREATE TABLE IF NOT EXISTS rollup_state (
  kpi        VARCHAR PRIMARY KEY,
  snapshot   UINTEGER NOT NULL,
  signature  VARCHAR NOT NULL
);

-- Stable disclosure (docs/privacy.md §3): a landed atom (partner × snapshot × local day × dims)
-- is *released* when the change it brings to every readable cell passes the contributor rule.
-- A batch writes its atoms here as pending (released NULL) with its points; the release step
-- of its snapshot, run in snapshot order before the snapshot becomes visible (one step for the
-- snapshots that became ready together, at the highest of them), sets `released` to the
-- snapshot that releases them, and deletes the rows it released at once (released =
-- snapshot), so the table holds only atoms that waited, a step or more. A series at snapshot S
-- counts a point as released when no row of its atom says otherwise (released NULL or above S).
CREATE TABLE IF NOT EXISTS held_atoms (
  kpi       VARCHAR NOT NULL,
  partner   VARCHAR NOT NULL,
  snapshot  UINTEGER NOT NULL,
  local_day DATE NOT NULL,
  dims      VARCHAR,
  released  UINTEGER
);
-- What the release step decides an atom's change on without reading its points again: `d`, its
-- distinct subjects counted by 64-bit hashes (two subjects can share a hash but never split, so
-- `d` can only be low: a lower bound), and `s`, the sum of its values. Written with the atom; an
-- atom held before these columns existed has them NULL and is counted from its points.
ALTER TABLE held_atoms ADD COLUMN IF NOT EXISTS d INTEGER;
ALTER TABLE held_atoms ADD COLUMN IF NOT EXISTS s DOUBLE;
-- And, for an atom of a small batch with few subjects (under 32 by hash), those subjects
-- (pseudonyms, as in its points): a step that must count a small part exactly reads them here
-- instead of scanning the points. NULL: not listed (a big batch, many subjects, an atom held
-- before the column, re-keyed pseudonyms, a new time zone); such a part is counted from its points.
ALTER TABLE held_atoms ADD COLUMN IF NOT EXISTS subjects VARCHAR[];
-- An atom the step guard holds while no other partner changes a cell it lies in *waits*: the
-- release step leaves it out of its candidates until another partner's pending atom comes into
-- the same or an adjacent week or into its month (services/query/release.ts, heldGroups). The value names the
-- agreement it was judged under (a digest): under any other it is a candidate again. NULL: not
-- waiting. A new time zone re-keys every held atom without it; retention clears the step guard's.
ALTER TABLE held_atoms ADD COLUMN IF NOT EXISTS waiting VARCHAR;
-- An atom whose part dominated a cell's change beside another partner's part waits too, under
-- the same agreement digest; `waited_after` is the snapshot of the latest verdict on it and
-- `verdicts` how many verdicts were taken on its group's part since that part last changed. It
-- is a candidate again when its group gains an atom that landed after `waited_after` (its part
-- changed), or, while `verdicts` is under DOMINANCE_VERDICTS (aggregate-compiler.ts), when
-- another partner's pending atom that landed after it comes into the same or an adjacent week or
-- into its month; padding by the others cannot judge it again and again (docs/privacy.md §3).
-- Both stay when it wakes, for the next verdict. `verdicts` NULL: a step guard's wait.
ALTER TABLE held_atoms ADD COLUMN IF NOT EXISTS waited_after UINTEGER;
ALTER TABLE held_atoms ADD COLUMN IF NOT EXISTS verdicts INTEGER;
-- Whether a rolled-up cell holds points not released at its snapshot, and the snapshot of the
-- latest release it shows (the value it serves is the one served since then).
ALTER TABLE rollup_cells ADD COLUMN IF NOT EXISTS pending BOOLEAN;
ALTER TABLE rollup_cells ADD COLUMN IF NOT EXISTS as_of UINTEGER;
-- The fewest released distinct subjects of a partner with released points in the cell: a held
-- cell shows only its released points, and each partner's released part is checked against k.
ALTER TABLE rollup_cells ADD COLUMN IF NOT EXISTS rel_min_part INTEGER;
-- The step guard's history (docs/privacy.md §2.3): for each atom key (KPI × partner × local day ×
-- dims) with released points, the latest snapshot that released some of them (a step that
-- released it, or its own batch's when released with it). The release step records the atoms it
-- releases (services/query/release.ts) and reads the cells it touches here instead of scanning
-- their points; the store rebuilds it from points and held_atoms when it is first opened with the
-- table (setting `released_atoms_built`) and after a new time zone, and retention drops the days
-- it drops. One row per key.
CREATE TABLE IF NOT EXISTS released_atoms (
  kpi       VARCHAR NOT NULL,
  partner   VARCHAR NOT NULL,
  local_day DATE NOT NULL,
  dims      VARCHAR,
  last      UINTEGER NOT NULL
);

-- Periods an agreement change withholds from its snapshot on, at every breakdown of the grain
-- (docs/privacy.md §3, agreement changes). reason 'zone': a new time zone moved released points
-- into or out of the period (a week∩month slice: its week and month); its value after against
-- its value at any earlier snapshot would be those points with the ones released since, a
-- difference no rule judged. reason 'version': the version added the
-- period's family (a grain, a dimension added back) over points landed before it, never judged
-- with what was served before; `dimension` names a dimension added back, whose breakdown alone is
-- withheld; `snapshot` is the version's, and the points before it are the ones its periods hold
-- (computed again when a later zone moves them). reason 'dropped' (served as `version`): the
-- version dropped a family whose cells protected a point the period holds, under the version
-- before's rules; like 'zone', kept where it is when a later zone moves the points. (A store from before this table kept the first
-- in zone_withheld: DuckStore.open copies them here once.)
CREATE TABLE IF NOT EXISTS withheld_periods (
  kpi       VARCHAR NOT NULL,
  grain     VARCHAR NOT NULL,
  dimension VARCHAR,
  period    DATE NOT NULL,
  snapshot  UINTEGER NOT NULL,
  reason    VARCHAR NOT NULL
);
