-- Retrospectives and the action tracker (issue #15): per month (or stage) what strengthened and
-- what weakened trust, and decisions as actions with an owner and a due date, tracked until done.
-- The actions of incident fact sheets join the same tracker (copied in once, keyed by incident
-- and position). An overdue action notifies its owner once (notified_at).
CREATE TABLE retro_items (
  id              text PRIMARY KEY,
  period          text NOT NULL,
  kind            text NOT NULL CHECK (kind IN ('strengthened', 'weakened')),
  text            text NOT NULL,
  author_partner  text,
  author_name     text NOT NULL,
  created_at      timestamptz NOT NULL
);
CREATE INDEX retro_items_period ON retro_items (period, created_at);

CREATE TABLE actions (
  id              text PRIMARY KEY,
  -- 'retrospective:<period>' or 'incident:<id>'
  source          text NOT NULL,
  -- The KPI an incident's action concerns (who may read it); null for a retrospective's.
  kpi             text,
  description     text NOT NULL,
  owner_partner   text,
  owner_name      text NOT NULL,
  -- Null when a fact sheet named someone the agreement does not know: listed, never e-mailed.
  owner_email     text,
  due             text NOT NULL CHECK (due ~ '^\d{4}-\d{2}-\d{2}$'),
  state           text NOT NULL CHECK (state IN ('open', 'done')),
  done_at         timestamptz,
  done_by         text,
  notified_at     timestamptz,
  created_at      timestamptz NOT NULL
);
CREATE INDEX actions_open ON actions (state, due);

ALTER TABLE outbox ADD COLUMN action_id text;
ALTER TABLE outbox DROP CONSTRAINT outbox_one_subject;
ALTER TABLE outbox ADD CONSTRAINT outbox_one_subject CHECK (num_nonnulls(incident_id, goal_id, review_month, comment_id, action_id) = 1);
