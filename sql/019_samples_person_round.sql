-- 019: a person's samples in a round are found through one index, whatever the statistics say.
--
-- The persons-per-region deltas (sql/015, tl_delta_samples and tl_delta_person_rounds) probe
-- each new sample's person with `s.person = p AND s.round = r`. Two indexes could serve it:
-- samples_person (person, at) and samples_round_site (round, site). Before the first ANALYZE
-- of a fresh database the planner guesses both equalities alike, took the round's index, and
-- so read every sample of the round for each new sample: measured with auto_explain in the
-- short benchmark, 11,236 rows read per probe, 1.8 s for one group of 1,826 samples, for the
-- first third of the run (until tl_analyze_grown's first ANALYZE; the plan is kept by the
-- session until then). An index on (person, round, at) matches both equalities, so every
-- estimate prefers it; it also serves what samples_person served (a person's samples, and
-- a person's samples after a time), so it replaces it and a write maintains no more indexes.

DROP INDEX samples_person;
CREATE INDEX samples_person ON samples (person, round, at);
