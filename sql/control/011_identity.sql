-- People sign in the way their company does (issue #16). A person signed in through their
-- partner's identity provider, or through an invitation, holds a token row like any other
-- (origin 'oidc' or 'invitation'): its secret is never shown to anyone, it only anchors their
-- dashboard sessions, so revoking it ends them as for any token. last_used_at is moved at most
-- once a minute, by the authentication hook.
ALTER TABLE tokens ADD COLUMN origin text NOT NULL DEFAULT 'token' CHECK (origin IN ('token', 'oidc', 'invitation'));
ALTER TABLE tokens ADD COLUMN last_used_at timestamptz;
-- One live sign-in per person, partner and way of signing in.
CREATE UNIQUE INDEX tokens_one_sign_in ON tokens (partner_id, lower(name), origin) WHERE revoked_at IS NULL AND origin <> 'token';

-- An invitation: a partner admin invites an e-mail with a role; the link's code (only its
-- SHA-256 is kept) signs the person in once, before it expires.
CREATE TABLE invitations (
  id          text PRIMARY KEY,
  code_hash   text NOT NULL UNIQUE,
  partner_id  text NOT NULL REFERENCES partners(id),
  email       text NOT NULL,
  -- steering only for a member the agreement names.
  role        text NOT NULL CHECK (role IN ('analyst', 'owner', 'admin', 'steering')),
  created_by  text NOT NULL,
  created_at  timestamptz NOT NULL,
  expires_at  timestamptz NOT NULL,
  used_at     timestamptz,
  revoked_at  timestamptz,
  token_id    text REFERENCES tokens(id)
);
CREATE INDEX invitations_partner ON invitations (partner_id, created_at);
