-- Monthly reviews (issue #14): each month's review is built once, kept, and served as the same
-- bytes to every partner; sent_at records the scheduled (or re-)send.
CREATE TABLE reviews (
  month              text PRIMARY KEY CHECK (month ~ '^\d{4}-(0[1-9]|1[0-2])$'),
  snapshot           integer NOT NULL,
  agreement_version  integer NOT NULL,
  digest             text NOT NULL,
  document           jsonb NOT NULL,
  created_at         timestamptz NOT NULL,
  sent_at            timestamptz
);

-- The outbox carries the monthly review's e-mails too: a message is about an incident, a goal or a
-- month's review.
ALTER TABLE outbox ADD COLUMN review_month text;
ALTER TABLE outbox DROP CONSTRAINT outbox_one_subject;
ALTER TABLE outbox ADD CONSTRAINT outbox_one_subject CHECK (num_nonnulls(incident_id, goal_id, review_month) = 1);
