-- The steering committee's decision records and escalation drills (issue #15).
--
-- A decision record is append-only: it is never changed nor removed, only superseded by a later
-- record (supersedes), at most once. The triggers refuse an UPDATE or DELETE from anyone, the room's
-- own code included.
CREATE TABLE decisions (
  id                 text PRIMARY KEY,
  -- 1, 2, 3 … in the order they were recorded: D-1, D-2 on the page.
  number             integer NOT NULL UNIQUE,
  title              text NOT NULL,
  context            text NOT NULL,
  options            jsonb NOT NULL,
  decision           text NOT NULL,
  decision_makers    jsonb NOT NULL,
  decided_on         text NOT NULL CHECK (decided_on ~ '^\d{4}-\d{2}-\d{2}$'),
  consequences       text NOT NULL,
  incidents          jsonb NOT NULL,
  agreement_versions jsonb NOT NULL,
  -- The KPIs of its incidents: a reader who may not read one of them does not see the record.
  kpis               jsonb NOT NULL,
  supersedes         text UNIQUE REFERENCES decisions (id),
  recorded_by        text NOT NULL,
  created_at         timestamptz NOT NULL
);

CREATE FUNCTION decisions_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'decision records are append-only: supersede one with a new record';
END;
$$;
CREATE TRIGGER decisions_no_update BEFORE UPDATE OR DELETE ON decisions
  FOR EACH ROW EXECUTE FUNCTION decisions_append_only();
CREATE TRIGGER decisions_no_truncate BEFORE TRUNCATE ON decisions
  FOR EACH STATEMENT EXECUTE FUNCTION decisions_append_only();

-- A drill: a simulated incident on a KPI and scope that runs the real notification chain (owner,
-- acknowledgement, escalation to the committee) and touches no KPI data nor any incident.
CREATE TABLE drills (
  id               text PRIMARY KEY,
  kpi              text NOT NULL,
  scope            text NOT NULL,
  started_by       text NOT NULL,
  started_at       timestamptz NOT NULL,
  ack_due_at       timestamptz NOT NULL,
  notified_at      timestamptz,
  acknowledged_at  timestamptz,
  acknowledged_by  text,
  escalated_at     timestamptz,
  -- The chair named in the escalation.
  escalated_to     text,
  ended_at         timestamptz,
  ended_by         text
);
-- One drill at a time per KPI and scope.
CREATE UNIQUE INDEX drills_one_running ON drills (kpi, scope) WHERE ended_at IS NULL;
CREATE INDEX drills_running ON drills (ack_due_at) WHERE ended_at IS NULL AND acknowledged_at IS NULL AND escalated_at IS NULL;

ALTER TABLE outbox ADD COLUMN drill_id text;
ALTER TABLE outbox DROP CONSTRAINT outbox_one_subject;
ALTER TABLE outbox ADD CONSTRAINT outbox_one_subject CHECK (num_nonnulls(incident_id, goal_id, review_month, comment_id, action_id, drill_id) = 1);
