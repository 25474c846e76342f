-- Annotations and comment threads (issue #15): what partners say about a KPI's periods, and about
-- incidents, annotations, goals and proposals. Text only (rendered escaped everywhere); an
-- annotation's every edit is kept; a comment is never edited.
CREATE TABLE annotations (
  id              text PRIMARY KEY,
  kpi             text NOT NULL,
  -- 'combined' or a partner's id: the series the note is about.
  scope           text NOT NULL,
  period_from     text NOT NULL CHECK (period_from ~ '^\d{4}-\d{2}-\d{2}$'),
  period_to       text NOT NULL CHECK (period_to ~ '^\d{4}-\d{2}-\d{2}$' AND period_to >= period_from),
  text            text NOT NULL,
  author_partner  text,
  author_name     text NOT NULL,
  version         integer NOT NULL,
  created_at      timestamptz NOT NULL,
  updated_at      timestamptz NOT NULL
);
CREATE INDEX annotations_kpi ON annotations (kpi, period_from);

CREATE TABLE annotation_versions (
  annotation_id   text NOT NULL REFERENCES annotations (id),
  version         integer NOT NULL,
  scope           text NOT NULL,
  period_from     text NOT NULL,
  period_to       text NOT NULL,
  text            text NOT NULL,
  edited_at       timestamptz NOT NULL,
  PRIMARY KEY (annotation_id, version)
);

CREATE TABLE comments (
  id              text PRIMARY KEY,
  target_kind     text NOT NULL CHECK (target_kind IN ('incident', 'annotation', 'goal', 'proposal')),
  target_id       text NOT NULL,
  text            text NOT NULL,
  author_partner  text,
  author_name     text NOT NULL,
  -- The e-mail addresses it mentions (each notified once, through the outbox).
  mentions        jsonb NOT NULL,
  created_at      timestamptz NOT NULL
);
CREATE INDEX comments_target ON comments (target_kind, target_id, created_at);

-- A mention's e-mail is about a comment.
ALTER TABLE outbox ADD COLUMN comment_id text;
ALTER TABLE outbox DROP CONSTRAINT outbox_one_subject;
ALTER TABLE outbox ADD CONSTRAINT outbox_one_subject CHECK (num_nonnulls(incident_id, goal_id, review_month, comment_id) = 1);
