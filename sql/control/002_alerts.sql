-- Alerts: incidents (one open per KPI, scope and kind), the notification outbox, and
-- webhook endpoints an answer of 410 has disabled.
CREATE TABLE incidents (
  id                 text PRIMARY KEY,
  kpi                text NOT NULL,
  -- 'combined' or a partner id: whose figure left its band (or whose feed went stale).
  scope              text NOT NULL,
  -- breach: a figure outside its band; stale: a partner's feed past its freshness grace.
  kind               text NOT NULL CHECK (kind IN ('breach', 'stale')),
  state              text NOT NULL CHECK (state IN ('open', 'notified', 'acknowledged', 'resolved')),
  opened_at          timestamptz NOT NULL,
  updated_at         timestamptz NOT NULL,
  -- The figure as the dashboard discloses it: value is NULL where the cell is suppressed.
  first_period       text,
  period             text,
  grain              text,
  value              double precision,
  suppressed         boolean NOT NULL DEFAULT false,
  band               jsonb,
  reason             text NOT NULL,
  snapshot           bigint NOT NULL,
  digest             text,
  agreement_version  integer NOT NULL,
  freshness          jsonb NOT NULL DEFAULT '[]'::jsonb,
  ack_due_at         timestamptz NOT NULL,
  notified_at        timestamptz,
  acknowledged_at    timestamptz,
  acknowledged_by    text,
  escalated_at       timestamptz,
  resolved_at        timestamptz,
  resolved_by        text,
  resolution         text CHECK (resolution IN ('owner', 'auto')),
  fact_sheet         jsonb
);
-- The dedup key: repeated breaches update the one open incident.
CREATE UNIQUE INDEX incidents_open_key ON incidents (kpi, scope, kind) WHERE state <> 'resolved';
CREATE INDEX incidents_state_idx ON incidents (state, ack_due_at);

-- Durable outbox: a row is written in the transaction that changes the incident, and the
-- notifier delivers it (webhook, e-mail) or keeps it for the dashboard. id is the webhook-id.
CREATE TABLE outbox (
  id               text PRIMARY KEY,
  incident_id      text NOT NULL REFERENCES incidents(id),
  event            text NOT NULL,
  channel          text NOT NULL CHECK (channel IN ('webhook', 'email', 'dashboard')),
  -- The partner whose user receives it (NULL: the steering committee).
  partner_id       text,
  recipient_name   text NOT NULL,
  recipient        text NOT NULL,
  payload          jsonb NOT NULL,
  state            text NOT NULL CHECK (state IN ('pending', 'sending', 'delivered', 'kept', 'failed', 'disabled')),
  attempts         integer NOT NULL DEFAULT 0,
  next_attempt_at  timestamptz NOT NULL,
  last_error       text,
  created_at       timestamptz NOT NULL,
  delivered_at     timestamptz
);
CREATE INDEX outbox_due_idx ON outbox (state, next_attempt_at);
CREATE INDEX outbox_incident_idx ON outbox (incident_id);

CREATE TABLE webhook_endpoints (
  url          text PRIMARY KEY,
  disabled_at  timestamptz,
  reason       text
);
