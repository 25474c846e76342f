-- Dashboard sessions (issue #13): the cookie holds a random session id, never the user's token;
-- only its SHA-256 is stored. A session ends at sign-out, when its token is revoked or expires,
-- after idle_expires_at without use, and at absolute_expires_at whatever happens.
CREATE TABLE sessions (
  id_hash              text PRIMARY KEY,
  token_id             text NOT NULL REFERENCES tokens(id),
  created_at           timestamptz NOT NULL,
  last_seen_at         timestamptz NOT NULL,
  absolute_expires_at  timestamptz NOT NULL
);
CREATE INDEX sessions_token ON sessions (token_id);
