-- Who recorded a retrospective's action (the partner of the token; null for steering, the
-- operator and incident fact sheets): a partner may keep at most a bounded number of actions
-- open (retrospectives.ts), so that one partner's flood of actions cannot push every other
-- partner's out of the tracker's lists (a red team recorded 1,000 due in 2000 and hid them all).
ALTER TABLE actions ADD COLUMN created_partner text;
CREATE INDEX actions_open_by_partner ON actions (created_partner, state);
