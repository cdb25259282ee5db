-- 008: incremental roll-ups.
--
-- Until now every write re-counted each (round, site) it touched from the raw tables, so a
-- write cost as much as the site's whole day so far, and every write of a county updated the
-- same ancestor rows, one transaction after another. From here on:
--
--   * Triggers on the tables the figures come from (tubes, boxes, samples, person_rounds,
--     followups, anomalies) append what each statement changed to `stats_delta`, as
--     (round, site, metric, key, n) rows: "tubes_sealed of site S in round R went up by 3",
--     "minute 95 of the turnaround histogram gained one tube". A write only appends; it never
--     waits for another write's row lock.
--   * tl_fold() moves the committed deltas into `stats`: summed per (round, site), carried up
--     to every ancestor region, added to the rows. One fold at a time (advisory lock). Every
--     daemon folds once a second, and every stats read folds first, so a read sees every
--     write committed before it.
--   * A contribution is always computed from the current state of the other tables, so the
--     deltas telescope: whatever the order of statements in a transaction, the sum of a
--     site's deltas equals a re-count (tl_rollup_rebuild() re-counts everything; the tests
--     compare the two).
--
-- The old re-counting function stays as tl_rollup_recount (used by the rebuild); tl_rollup,
-- still called by tl_refresh and the overdue sweep, now only tells the daemons (NOTIFY) which
-- counties changed.

CREATE TABLE stats_delta (
  round   text NOT NULL,
  site    text NOT NULL,
  metric  text NOT NULL,   -- a counter column of `stats`, or 'tat' / 'hourly' (histograms)
  key     int NOT NULL,    -- the histogram's minute or hour; 0 for counters
  n       int NOT NULL
);
-- emptied by every fold: vacuum it often
ALTER TABLE stats_delta SET (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 5000,
                             autovacuum_vacuum_insert_scale_factor = 0,
                             autovacuum_vacuum_insert_threshold = 5000);

-- Histograms sum key by key; a key whose count comes back to zero goes.
CREATE OR REPLACE FUNCTION tl_hist_add(a jsonb, b jsonb) RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$
  SELECT coalesce(jsonb_object_agg(k, n), '{}') FROM (
    SELECT k, sum(v::int) AS n FROM (
      SELECT * FROM jsonb_each_text(coalesce(a, '{}')) UNION ALL SELECT * FROM jsonb_each_text(coalesce(b, '{}'))
    ) e(k, v) GROUP BY k HAVING sum(v::int) <> 0) x
$$;

-- Where a tube is now (DESIGN §5), from its own facts and whether its box is on the road.
CREATE FUNCTION tl_bucket(p_result text, p_rejected timestamptz, p_received timestamptz,
                          p_moving boolean, p_sealed timestamptz) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
  SELECT CASE
    WHEN p_result IS NOT NULL THEN 'resulted'
    WHEN p_rejected IS NOT NULL THEN 'rejected'
    WHEN p_received IS NOT NULL THEN 'received'
    WHEN coalesce(p_moving, false) THEN 'in_transit'
    WHEN p_sealed IS NOT NULL THEN 'sealed'
    ELSE 'open' END
$$;

CREATE OR REPLACE FUNCTION tl_tube_bucket(t tubes, b boxes) RETURNS text LANGUAGE sql IMMUTABLE AS $$
  SELECT tl_bucket(t.result, t.rejected_at, t.received_at,
                   b.picked_up_at IS NOT NULL OR b.delivered_at IS NOT NULL, t.sealed_at)
$$;

-- What one tube adds to its (round, site): one in its bucket, one in its result, one in the
-- minute of its turnaround (first sample → result).
CREATE FUNCTION tl_tube_metrics(p_result text, p_rejected timestamptz, p_received timestamptz,
                                p_moving boolean, p_sealed timestamptz, p_first timestamptz,
                                p_result_at timestamptz) RETURNS TABLE (metric text, key int)
LANGUAGE sql IMMUTABLE AS $$
  SELECT 'tubes_' || tl_bucket(p_result, p_rejected, p_received, p_moving, p_sealed), 0
  UNION ALL
  SELECT 'results_' || p_result, 0 WHERE p_result IS NOT NULL
  UNION ALL
  SELECT 'tat', floor(extract(epoch FROM p_result_at - p_first) / 60)::int
  WHERE p_result IS NOT NULL AND p_first IS NOT NULL AND p_result_at >= p_first
$$;

-- tubes: the old rows' contributions out, the new rows' in (statement-level, transition
-- tables; an upsert that changed nothing that counts nets to nothing).
CREATE FUNCTION tl_delta_tubes() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN
    INSERT INTO stats_delta (round, site, metric, key, n)
    SELECT t.round, t.site, m.metric, m.key, count(*)
    FROM new_rows t LEFT JOIN boxes b ON b.code = t.box
    CROSS JOIN LATERAL tl_tube_metrics(t.result, t.rejected_at, t.received_at,
      b.picked_up_at IS NOT NULL OR b.delivered_at IS NOT NULL, t.sealed_at, t.first_sample_at,
      t.result_at) m
    WHERE t.round IS NOT NULL AND t.site IS NOT NULL
    GROUP BY 1, 2, 3, 4;
  ELSE
    INSERT INTO stats_delta (round, site, metric, key, n)
    SELECT x.round, x.site, m.metric, m.key, sum(x.w)
    FROM (SELECT -1 AS w, o.* FROM old_rows o UNION ALL SELECT 1, t.* FROM new_rows t) x
    LEFT JOIN boxes b ON b.code = x.box
    CROSS JOIN LATERAL tl_tube_metrics(x.result, x.rejected_at, x.received_at,
      b.picked_up_at IS NOT NULL OR b.delivered_at IS NOT NULL, x.sealed_at, x.first_sample_at,
      x.result_at) m
    WHERE x.round IS NOT NULL AND x.site IS NOT NULL
    GROUP BY 1, 2, 3, 4 HAVING sum(x.w) <> 0;
  END IF;
  RETURN NULL;
END $$;
CREATE TRIGGER tubes_stats_insert AFTER INSERT ON tubes REFERENCING NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION tl_delta_tubes();
CREATE TRIGGER tubes_stats_update AFTER UPDATE ON tubes REFERENCING OLD TABLE AS old_rows
  NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION tl_delta_tubes();

-- boxes: a box picked up (or delivered) moves its tubes from sealed to in transit; only the
-- boxes whose "on the road" changed count.
CREATE FUNCTION tl_delta_boxes() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  v_codes text[];
  v_now boolean[];
BEGIN
  IF TG_OP = 'INSERT' THEN
    SELECT array_agg(n.code), array_agg(true) INTO v_codes, v_now FROM new_rows n
    WHERE n.picked_up_at IS NOT NULL OR n.delivered_at IS NOT NULL;
  ELSE
    SELECT array_agg(x.code), array_agg(x.w > 0) INTO v_codes, v_now
    FROM (SELECT c.code, sum(c.w)::int AS w
          FROM (SELECT n.code, CASE WHEN n.picked_up_at IS NOT NULL OR n.delivered_at IS NOT NULL
                                    THEN 1 ELSE 0 END AS w FROM new_rows n
                UNION ALL
                SELECT o.code, CASE WHEN o.picked_up_at IS NOT NULL OR o.delivered_at IS NOT NULL
                                    THEN -1 ELSE 0 END FROM old_rows o) c
          GROUP BY c.code HAVING sum(c.w) <> 0) x;
  END IF;
  IF v_codes IS NULL THEN RETURN NULL; END IF;
  INSERT INTO stats_delta (round, site, metric, key, n)
  SELECT t.round, t.site, m.metric, m.key, sum(v.w)
  FROM unnest(v_codes, v_now) c(code, now)
  JOIN tubes t ON t.box = c.code
  CROSS JOIN LATERAL (VALUES (-1, NOT c.now), (1, c.now)) v(w, moving)
  CROSS JOIN LATERAL tl_tube_metrics(t.result, t.rejected_at, t.received_at, v.moving,
                                     t.sealed_at, t.first_sample_at, t.result_at) m
  WHERE t.round IS NOT NULL AND t.site IS NOT NULL
  GROUP BY 1, 2, 3, 4 HAVING sum(v.w) <> 0;
  RETURN NULL;
END $$;
CREATE TRIGGER boxes_stats_insert AFTER INSERT ON boxes REFERENCING NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION tl_delta_boxes();
CREATE TRIGGER boxes_stats_update AFTER UPDATE ON boxes REFERENCING OLD TABLE AS old_rows
  NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION tl_delta_boxes();

-- samples (insert only): one in the hour of day it was taken; a person new to the (round,
-- site) is one more sampled there, and one more returned if the round's status is final.
CREATE FUNCTION tl_delta_samples() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO stats_delta (round, site, metric, key, n)
  SELECT n.round, n.site, 'hourly', extract(hour FROM n.at)::int, count(*)
  FROM new_rows n GROUP BY 1, 2, 3, 4
  UNION ALL
  SELECT p.round, p.site, x.metric, 0, count(*)
  FROM (SELECT n.person, n.round, n.site, count(*) AS k FROM new_rows n GROUP BY 1, 2, 3) p
  LEFT JOIN person_rounds r ON r.person = p.person AND r.round = p.round
  CROSS JOIN LATERAL (SELECT 'persons_sampled'
                      UNION ALL SELECT 'persons_returned' WHERE r.status IN ('negative', 'positive')) x(metric)
  WHERE p.k = (SELECT count(*) FROM samples s
               WHERE s.person = p.person AND s.round = p.round AND s.site = p.site)
  GROUP BY 1, 2, 3;
  RETURN NULL;
END $$;
CREATE TRIGGER samples_stats_insert AFTER INSERT ON samples REFERENCING NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION tl_delta_samples();

-- person_rounds: a person whose round became final (or stopped being) is one more (or one
-- less) returned at every site of the round where they were sampled.
CREATE FUNCTION tl_delta_person_rounds() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  v_persons text[];
  v_rounds text[];
  v_w int[];
BEGIN
  IF TG_OP = 'INSERT' THEN
    SELECT array_agg(n.person), array_agg(n.round), array_agg(1) INTO v_persons, v_rounds, v_w
    FROM new_rows n WHERE n.status IN ('negative', 'positive');
  ELSE
    -- old and new rows summed per key rather than joined: transition tables have no index
    -- and no statistics, and a join of them ran as a nested loop
    SELECT array_agg(x.person), array_agg(x.round), array_agg(x.w) INTO v_persons, v_rounds, v_w
    FROM (SELECT c.person, c.round, sum(c.w)::int AS w
          FROM (SELECT n.person, n.round, CASE WHEN n.status IN ('negative', 'positive') THEN 1 ELSE 0 END AS w
                FROM new_rows n
                UNION ALL
                SELECT o.person, o.round, CASE WHEN o.status IN ('negative', 'positive') THEN -1 ELSE 0 END
                FROM old_rows o) c
          GROUP BY c.person, c.round HAVING sum(c.w) <> 0) x;
  END IF;
  IF v_persons IS NULL THEN RETURN NULL; END IF;
  INSERT INTO stats_delta (round, site, metric, key, n)
  SELECT s.round, s.site, 'persons_returned', 0, sum(c.w)
  FROM unnest(v_persons, v_rounds, v_w) c(person, round, w)
  CROSS JOIN LATERAL (SELECT DISTINCT s.round, s.site FROM samples s
                      WHERE s.person = c.person AND s.round = c.round) s
  GROUP BY 1, 2 HAVING sum(c.w) <> 0;
  RETURN NULL;
END $$;
CREATE TRIGGER person_rounds_stats_insert AFTER INSERT ON person_rounds
  REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION tl_delta_person_rounds();
CREATE TRIGGER person_rounds_stats_update AFTER UPDATE ON person_rounds
  REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION tl_delta_person_rounds();

-- followups and anomalies: what was open leaves, what is open comes (insert, update, delete).
CREATE FUNCTION tl_delta_followups() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP IN ('UPDATE', 'DELETE') THEN
    INSERT INTO stats_delta (round, site, metric, key, n)
    SELECT o.round, o.site, 'followups_open', 0, -count(*) FROM old_rows o
    WHERE o.state = 'open' AND o.site IS NOT NULL GROUP BY 1, 2;
  END IF;
  IF TG_OP IN ('INSERT', 'UPDATE') THEN
    INSERT INTO stats_delta (round, site, metric, key, n)
    SELECT n.round, n.site, 'followups_open', 0, count(*) FROM new_rows n
    WHERE n.state = 'open' AND n.site IS NOT NULL GROUP BY 1, 2;
  END IF;
  RETURN NULL;
END $$;
CREATE TRIGGER followups_stats_insert AFTER INSERT ON followups REFERENCING NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION tl_delta_followups();
CREATE TRIGGER followups_stats_update AFTER UPDATE ON followups REFERENCING OLD TABLE AS old_rows
  NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION tl_delta_followups();
CREATE TRIGGER followups_stats_delete AFTER DELETE ON followups REFERENCING OLD TABLE AS old_rows
  FOR EACH STATEMENT EXECUTE FUNCTION tl_delta_followups();

CREATE FUNCTION tl_delta_anomalies() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP IN ('UPDATE', 'DELETE') THEN
    INSERT INTO stats_delta (round, site, metric, key, n)
    SELECT o.round, o.site, x.metric, 0, -count(*) FROM old_rows o
    CROSS JOIN LATERAL (SELECT 'anomalies_open' UNION ALL SELECT 'overdue' WHERE o.type LIKE 'overdue%') x(metric)
    WHERE o.state IN ('open', 'acknowledged') AND o.round IS NOT NULL AND o.site IS NOT NULL
    GROUP BY 1, 2, 3;
  END IF;
  IF TG_OP IN ('INSERT', 'UPDATE') THEN
    INSERT INTO stats_delta (round, site, metric, key, n)
    SELECT n.round, n.site, x.metric, 0, count(*) FROM new_rows n
    CROSS JOIN LATERAL (SELECT 'anomalies_open' UNION ALL SELECT 'overdue' WHERE n.type LIKE 'overdue%') x(metric)
    WHERE n.state IN ('open', 'acknowledged') AND n.round IS NOT NULL AND n.site IS NOT NULL
    GROUP BY 1, 2, 3;
  END IF;
  RETURN NULL;
END $$;
CREATE TRIGGER anomalies_stats_insert AFTER INSERT ON anomalies REFERENCING NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION tl_delta_anomalies();
CREATE TRIGGER anomalies_stats_update AFTER UPDATE ON anomalies REFERENCING OLD TABLE AS old_rows
  NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION tl_delta_anomalies();
CREATE TRIGGER anomalies_stats_delete AFTER DELETE ON anomalies REFERENCING OLD TABLE AS old_rows
  FOR EACH STATEMENT EXECUTE FUNCTION tl_delta_anomalies();

-- Moves the committed deltas into the roll-ups: per (round, site), then up to every
-- ancestor region that exists, added to the rows (created when missing). Returns the number
-- of stats rows changed. One fold at a time; a fold waits for the one in progress, so that a
-- read folding first sees every write committed before it.
CREATE FUNCTION tl_fold() RETURNS int LANGUAGE plpgsql AS $$
DECLARE
  v_rows int;
BEGIN
  IF NOT EXISTS (SELECT 1 FROM stats_delta) THEN RETURN 0; END IF;
  PERFORM pg_advisory_xact_lock(7420263);
  WITH gone AS (
    DELETE FROM stats_delta RETURNING round, site, metric, key, n
  ), per_site AS (
    SELECT g.round, g.site, g.metric, g.key, sum(g.n) AS n FROM gone g
    GROUP BY 1, 2, 3, 4 HAVING sum(g.n) <> 0
  ), up AS (
    SELECT p.round, p.site AS code, 'site' AS level, s.township AS parent, p.metric, p.key, p.n
    FROM per_site p JOIN sites s ON s.code = p.site
    UNION ALL
    SELECT p.round, r.code, r.level, r.parent, p.metric, p.key, p.n
    FROM per_site p JOIN sites s ON s.code = p.site
    JOIN regions r ON r.code IN (s.township, left(s.township, 6), left(s.township, 4), left(s.township, 2))
  ), per_code AS (
    SELECT u.round, u.code, u.level, u.parent, u.metric, u.key, sum(u.n)::int AS n FROM up u
    GROUP BY 1, 2, 3, 4, 5, 6 HAVING sum(u.n) <> 0
  ), rows AS (
    SELECT c.round, c.code, c.level, c.parent,
      coalesce(sum(c.n) FILTER (WHERE c.metric = 'persons_sampled'), 0)::int AS persons_sampled,
      coalesce(sum(c.n) FILTER (WHERE c.metric = 'persons_returned'), 0)::int AS persons_returned,
      coalesce(sum(c.n) FILTER (WHERE c.metric = 'tubes_open'), 0)::int AS tubes_open,
      coalesce(sum(c.n) FILTER (WHERE c.metric = 'tubes_sealed'), 0)::int AS tubes_sealed,
      coalesce(sum(c.n) FILTER (WHERE c.metric = 'tubes_in_transit'), 0)::int AS tubes_in_transit,
      coalesce(sum(c.n) FILTER (WHERE c.metric = 'tubes_received'), 0)::int AS tubes_received,
      coalesce(sum(c.n) FILTER (WHERE c.metric = 'tubes_resulted'), 0)::int AS tubes_resulted,
      coalesce(sum(c.n) FILTER (WHERE c.metric = 'tubes_rejected'), 0)::int AS tubes_rejected,
      coalesce(sum(c.n) FILTER (WHERE c.metric = 'results_negative'), 0)::int AS results_negative,
      coalesce(sum(c.n) FILTER (WHERE c.metric = 'results_positive'), 0)::int AS results_positive,
      coalesce(sum(c.n) FILTER (WHERE c.metric = 'results_invalid'), 0)::int AS results_invalid,
      coalesce(sum(c.n) FILTER (WHERE c.metric = 'overdue'), 0)::int AS overdue,
      coalesce(sum(c.n) FILTER (WHERE c.metric = 'anomalies_open'), 0)::int AS anomalies_open,
      coalesce(sum(c.n) FILTER (WHERE c.metric = 'followups_open'), 0)::int AS followups_open,
      coalesce(jsonb_object_agg(c.key, c.n) FILTER (WHERE c.metric = 'tat'), '{}') AS tat,
      coalesce(jsonb_object_agg(c.key, c.n) FILTER (WHERE c.metric = 'hourly'), '{}') AS hourly
    FROM per_code c GROUP BY 1, 2, 3, 4
  )
  INSERT INTO stats AS o (round, code, level, parent, persons_sampled, persons_returned,
    tubes_open, tubes_sealed, tubes_in_transit, tubes_received, tubes_resulted, tubes_rejected,
    results_negative, results_positive, results_invalid, overdue, anomalies_open, followups_open,
    tat, hourly, updated_at)
  SELECT r.round, r.code, r.level, r.parent, r.persons_sampled, r.persons_returned,
    r.tubes_open, r.tubes_sealed, r.tubes_in_transit, r.tubes_received, r.tubes_resulted,
    r.tubes_rejected, r.results_negative, r.results_positive, r.results_invalid, r.overdue,
    r.anomalies_open, r.followups_open, r.tat, r.hourly, clock_timestamp()
  FROM rows r ORDER BY r.round, r.code
  ON CONFLICT (round, code) DO UPDATE SET
    persons_sampled = o.persons_sampled + EXCLUDED.persons_sampled,
    persons_returned = o.persons_returned + EXCLUDED.persons_returned,
    tubes_open = o.tubes_open + EXCLUDED.tubes_open,
    tubes_sealed = o.tubes_sealed + EXCLUDED.tubes_sealed,
    tubes_in_transit = o.tubes_in_transit + EXCLUDED.tubes_in_transit,
    tubes_received = o.tubes_received + EXCLUDED.tubes_received,
    tubes_resulted = o.tubes_resulted + EXCLUDED.tubes_resulted,
    tubes_rejected = o.tubes_rejected + EXCLUDED.tubes_rejected,
    results_negative = o.results_negative + EXCLUDED.results_negative,
    results_positive = o.results_positive + EXCLUDED.results_positive,
    results_invalid = o.results_invalid + EXCLUDED.results_invalid,
    overdue = o.overdue + EXCLUDED.overdue,
    anomalies_open = o.anomalies_open + EXCLUDED.anomalies_open,
    followups_open = o.followups_open + EXCLUDED.followups_open,
    tat = CASE WHEN EXCLUDED.tat = '{}' THEN o.tat ELSE tl_hist_add(o.tat, EXCLUDED.tat) END,
    hourly = CASE WHEN EXCLUDED.hourly = '{}' THEN o.hourly ELSE tl_hist_add(o.hourly, EXCLUDED.hourly) END,
    updated_at = EXCLUDED.updated_at;
  GET DIAGNOSTICS v_rows = ROW_COUNT;
  RETURN v_rows;
END $$;

-- The re-count, kept for rebuilding and for checking the deltas against.
ALTER FUNCTION tl_rollup(text[]) RENAME TO tl_rollup_recount;

-- Written facts still name the (round, site) pairs they touched: tell the daemons (LISTEN
-- tl_stats) which counties changed; delivered at commit.
CREATE FUNCTION tl_rollup(p_pairs text[]) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
  v_counties text;
BEGIN
  SELECT string_agg(DISTINCT left(s.township, 6), ',') INTO v_counties
  FROM unnest(p_pairs) x JOIN sites s ON s.code = (x::jsonb) ->> 1;
  IF v_counties IS NOT NULL THEN PERFORM pg_notify('tl_stats', v_counties); END IF;
END $$;

-- Re-counts every roll-up from the raw tables and drops the pending deltas, which the
-- re-count already includes. Writes wait meanwhile (their deltas could not be told apart
-- from those the re-count saw). For repairs (e.g. after a site was moved to another
-- township) and for the tests, which compare it with the folded deltas.
CREATE FUNCTION tl_rollup_rebuild() RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  LOCK TABLE stats_delta IN EXCLUSIVE MODE;
  PERFORM pg_advisory_xact_lock(7420263);
  DELETE FROM stats_delta;
  DELETE FROM stats;
  PERFORM tl_rollup_recount(ARRAY(
    SELECT DISTINCT jsonb_build_array(t.round, t.site)::text FROM tubes t
    WHERE t.round IS NOT NULL AND t.site IS NOT NULL
    UNION SELECT jsonb_build_array(s.round, s.site)::text FROM samples s
    UNION SELECT jsonb_build_array(a.round, a.site)::text FROM anomalies a
    WHERE a.round IS NOT NULL AND a.site IS NOT NULL
    UNION SELECT jsonb_build_array(f.round, f.site)::text FROM followups f WHERE f.site IS NOT NULL));
END $$;

-- Reads fold first, so that they see every committed write.
ALTER FUNCTION tl_stats_json(text, text[]) RENAME TO tl_stats_folded;
CREATE FUNCTION tl_stats_json(p_code text, p_rounds text[]) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
  PERFORM tl_fold();
  RETURN tl_stats_folded(p_code, p_rounds);
END $$;

ALTER FUNCTION tl_charts_json(text, text[]) RENAME TO tl_charts_folded;
CREATE FUNCTION tl_charts_json(p_code text, p_rounds text[]) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
  PERFORM tl_fold();
  RETURN tl_charts_folded(p_code, p_rounds);
END $$;

-- The live stream's snapshot: the answer and its version (the newest roll-up time among the
-- rows it reads), both after the fold.
CREATE FUNCTION tl_stats_live(p_code text, p_rounds text[], OUT answer jsonb, OUT version bigint)
LANGUAGE plpgsql AS $$
BEGIN
  PERFORM tl_fold();
  answer := tl_stats_folded(p_code, p_rounds);
  version := coalesce((SELECT (extract(epoch FROM max(s.updated_at)) * 1000)::bigint FROM stats s
                       WHERE s.round = ANY (p_rounds) AND (s.code = p_code OR s.parent = p_code)), 0);
END $$;
