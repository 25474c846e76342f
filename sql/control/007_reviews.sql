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
