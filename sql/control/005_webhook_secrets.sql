-- Webhook signing-secret rotations (issue #13): a partner's endpoint signs with the secret of its
-- generation (derived from the room secret, the partner, the URL and the generation; none stored).
-- After a rotation the previous generation still signs, beside the new one, until previous_until.
-- No row: generation 0.
CREATE TABLE webhook_secrets (
  partner_id      text NOT NULL REFERENCES partners(id),
  url             text NOT NULL,
  generation      integer NOT NULL,
  rotated_at      timestamptz NOT NULL,
  previous_until  timestamptz NOT NULL,
  PRIMARY KEY (partner_id, url)
);
