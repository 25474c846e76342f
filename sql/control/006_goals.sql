-- Goal notices (issue #14): a missed milestone or a met exit criterion notifies the goal's owners
-- and the steering committee once. A row is written with its outbox messages in one transaction;
-- its key makes a second evaluation of the same judgement a no-op.
CREATE TABLE goal_notices (
  goal_id            text NOT NULL,
  kind               text NOT NULL CHECK (kind IN ('milestone_missed', 'exit_criterion_met')),
  -- The milestone's date, or the exit criterion as canonical JSON.
  key                text NOT NULL,
  agreement_version  integer NOT NULL,
  snapshot           integer NOT NULL,
  created_at         timestamptz NOT NULL,
  PRIMARY KEY (goal_id, kind, key)
);

-- The outbox carries goal notices beside incident events: each message is about one or the other.
ALTER TABLE outbox ALTER COLUMN incident_id DROP NOT NULL;
ALTER TABLE outbox ADD COLUMN goal_id text;
ALTER TABLE outbox ADD CONSTRAINT outbox_one_subject CHECK ((incident_id IS NULL) <> (goal_id IS NULL));
