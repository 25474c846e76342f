-- Control plane: partners, agreement versions, tokens, the hash-chained audit log.
CREATE TABLE partners (
  id          text PRIMARY KEY,
  name        text NOT NULL,
  created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE agreement_versions (
  version       integer PRIMARY KEY,
  document      jsonb NOT NULL,
  digest        text NOT NULL,
  source        text NOT NULL,
  created_at    timestamptz NOT NULL DEFAULT now(),
  activated_at  timestamptz
);

-- Only the SHA-256 of a token is kept; the token itself is shown once at creation.
CREATE TABLE tokens (
  id          text PRIMARY KEY,
  token_hash  text NOT NULL UNIQUE,
  partner_id  text REFERENCES partners(id),
  role        text NOT NULL CHECK (role IN ('ingest', 'analyst', 'owner', 'steering', 'admin', 'operator')),
  name        text NOT NULL,
  created_at  timestamptz NOT NULL DEFAULT now(),
  expires_at  timestamptz,
  revoked_at  timestamptz,
  CHECK ((role = 'operator') = (partner_id IS NULL))
);

-- Append-only: each entry holds the hash of the previous one (hash = sha256(prev_hash || entry)).
CREATE TABLE audit_log (
  seq         bigint PRIMARY KEY,
  at          timestamptz NOT NULL,
  actor       text NOT NULL,
  partner_id  text,
  action      text NOT NULL,
  target      text,
  details     jsonb NOT NULL DEFAULT '{}'::jsonb,
  prev_hash   text NOT NULL,
  hash        text NOT NULL
);
CREATE INDEX audit_log_partner_idx ON audit_log (partner_id, seq);

CREATE FUNCTION audit_log_is_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'audit_log is append-only';
END;
$$;
CREATE TRIGGER audit_log_no_update BEFORE UPDATE OR DELETE ON audit_log
  FOR EACH ROW EXECUTE FUNCTION audit_log_is_append_only();

CREATE TABLE settings (
  key    text PRIMARY KEY,
  value  text NOT NULL
);
