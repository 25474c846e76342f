-- Group commit with more than one group in flight (issue #17): the room appends the audit
-- entries of concurrent reads in groups, hashed in the process on the tail it expects, and sends
-- the next group before the last one has committed. This function appends a group only onto the
-- tail it was hashed on: it takes the chain's advisory lock (7417001, as every writer of the
-- chain does), then reads the tail afresh (a new snapshot per statement, so a group committed
-- while this one waited for the lock is seen) and refuses with SQLSTATE PA001 if the tail is not
-- the expected one; the room then writes the group again on the real tail. A chain can never be
-- continued from an entry that did not land.
CREATE FUNCTION audit_append_after(entries jsonb, after_seq bigint, after_hash text) RETURNS void
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
  tail_seq  bigint;
  tail_hash text;
BEGIN
  PERFORM pg_advisory_xact_lock(7417001);
  SELECT seq, hash INTO tail_seq, tail_hash FROM audit_log ORDER BY seq DESC LIMIT 1;
  IF coalesce(tail_seq, 0) <> after_seq OR coalesce(tail_hash, repeat('0', 64)) <> after_hash THEN
    RAISE EXCEPTION 'audit chain moved: its tail is %, the group was hashed after %', coalesce(tail_seq, 0), after_seq
      USING ERRCODE = 'PA001';
  END IF;
  INSERT INTO audit_log (seq, at, actor, partner_id, action, target, details, prev_hash, hash)
    SELECT v.seq, v.at, v.actor, v.partner_id, v.action, v.target, v.details, v.prev_hash, v.hash
    FROM jsonb_to_recordset(entries) AS v(seq bigint, at timestamptz, actor text, partner_id text, action text,
                                          target text, details jsonb, prev_hash text, hash text);
END;
$$;
