-- Governance: co-signed agreement proposals, token rotation, retention runs.

-- A proposed agreement document; it becomes a new agreement version only when the admin of
-- every partner (of the version in force and of the proposed one) has approved it.
CREATE TABLE agreement_proposals (
  id               text PRIMARY KEY,
  base_version     integer NOT NULL,
  document         jsonb NOT NULL,
  digest           text NOT NULL,
  reason           text NOT NULL,
  -- The plain-terms difference against base_version, computed when proposed.
  changes          jsonb NOT NULL,
  loosens_privacy  boolean NOT NULL,
  proposed_by      text NOT NULL,
  proposer_partner text NOT NULL,
  created_at       timestamptz NOT NULL,
  expires_at       timestamptz NOT NULL,
  state            text NOT NULL CHECK (state IN ('open', 'active', 'rejected', 'superseded', 'expired')),
  decided_at       timestamptz,
  result_version   integer
);
-- At most one open proposal: two open ones against the same base could not both apply.
CREATE UNIQUE INDEX agreement_proposals_one_open ON agreement_proposals ((true)) WHERE state = 'open';

-- One decision per partner and proposal, by that partner's admin.
CREATE TABLE proposal_decisions (
  proposal_id  text NOT NULL REFERENCES agreement_proposals (id),
  partner_id   text NOT NULL,
  decision     text NOT NULL CHECK (decision IN ('approve', 'reject')),
  token_id     text NOT NULL,
  decided_at   timestamptz NOT NULL,
  note         text,
  PRIMARY KEY (proposal_id, partner_id)
);

ALTER TABLE agreement_versions ADD COLUMN proposal_id text;

-- Tokens: who made one, and the token a rotation replaced.
ALTER TABLE tokens ADD COLUMN created_by text;
ALTER TABLE tokens ADD COLUMN replaces text;
