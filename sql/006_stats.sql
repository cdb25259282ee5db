-- 006: the officials' view (DESIGN §5 stats, arrivals, ledger; overdue anomalies).
--
-- Roll-ups: one `stats` row per (round, site), kept current by every write (tl_rollup, called
-- from tl_refresh for the (round, site) pairs a batch touched), and one row per (round,
-- ancestor region) summed from its children. A stats query reads a region's row and its
-- children's rows: its cost depends on the number of children, never on the number of samples.
-- Turnaround is kept as a histogram of whole minutes ({"37": 12, ...}), which sums exactly
-- across children, so percentiles at every level are exact to the minute (nearest rank).

-- A person's status in a round (DESIGN §3), re-derived for the persons a batch touched.
CREATE TABLE person_rounds (
  person      text NOT NULL REFERENCES persons (hmac),
  round       text NOT NULL REFERENCES rounds (code),
  status      text NOT NULL CHECK (status IN ('pending', 'negative', 'awaiting_recheck', 'resample', 'positive')),
  decided_at  timestamptz,                  -- when the status became final (returned)
  PRIMARY KEY (person, round),
  CHECK ((status IN ('negative', 'positive')) = (decided_at IS NOT NULL))
);
CREATE INDEX person_rounds_round ON person_rounds (round);

CREATE TABLE stats (
  round             text NOT NULL REFERENCES rounds (code),
  code              text NOT NULL,          -- site code or region code
  level             text NOT NULL CHECK (level IN ('site', 'township', 'county', 'city', 'province')),
  parent            text,                   -- the region one level up
  persons_sampled   int NOT NULL DEFAULT 0,
  persons_returned  int NOT NULL DEFAULT 0,
  tubes_open        int NOT NULL DEFAULT 0,
  tubes_sealed      int NOT NULL DEFAULT 0,
  tubes_in_transit  int NOT NULL DEFAULT 0,
  tubes_received    int NOT NULL DEFAULT 0,
  tubes_resulted    int NOT NULL DEFAULT 0,
  tubes_rejected    int NOT NULL DEFAULT 0,
  results_negative  int NOT NULL DEFAULT 0,
  results_positive  int NOT NULL DEFAULT 0,
  results_invalid   int NOT NULL DEFAULT 0,
  overdue           int NOT NULL DEFAULT 0,
  anomalies_open    int NOT NULL DEFAULT 0,
  followups_open    int NOT NULL DEFAULT 0,
  tat               jsonb NOT NULL DEFAULT '{}',
  hourly            jsonb NOT NULL DEFAULT '{}', -- hour of day (deployment zone) → samples
  updated_at        timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (round, code)
);
CREATE INDEX stats_parent ON stats (parent, round);
-- what the roll-ups count per (round, site), found without scanning the whole tables
CREATE INDEX anomalies_live_round_site ON anomalies (round, site) WHERE state IN ('open', 'acknowledged');
CREATE INDEX followups_open_round_site ON followups (round, site) WHERE state = 'open';
CREATE INDEX stats_code ON stats (code);

-- Where a tube is now, for the stats (DESIGN §5: sealed includes packed and sealed in a box;
-- in_transit is picked up and not yet received).
CREATE FUNCTION tl_tube_bucket(t tubes, b boxes) RETURNS text LANGUAGE sql IMMUTABLE AS $$
  SELECT CASE
    WHEN t.result IS NOT NULL THEN 'resulted'
    WHEN t.rejected_at IS NOT NULL THEN 'rejected'
    WHEN t.received_at IS NOT NULL THEN 'received'
    WHEN b.picked_up_at IS NOT NULL OR b.delivered_at IS NOT NULL THEN 'in_transit'
    WHEN t.sealed_at IS NOT NULL THEN 'sealed'
    ELSE 'open' END
$$;

CREATE FUNCTION tl_person_rounds_refresh(p_persons text[]) RETURNS void LANGUAGE sql AS $$
  WITH fu AS (
    SELECT f.* FROM followups f WHERE f.person = ANY (p_persons)
  ), per AS (
    SELECT s.person, s.round,
      CASE
        WHEN bool_or(t.capacity = 1 AND t.result = 'positive')
          OR bool_or(EXISTS (SELECT 1 FROM fu WHERE fu.person = s.person AND fu.round = s.round
                               AND fu.result = 'positive')) THEN 'positive'
        WHEN bool_or(EXISTS (SELECT 1 FROM fu WHERE fu.person = s.person AND fu.round = s.round
                               AND fu.state = 'open' AND fu.kind = 'awaiting_recheck')) THEN 'awaiting_recheck'
        WHEN bool_or(EXISTS (SELECT 1 FROM fu WHERE fu.person = s.person AND fu.round = s.round
                               AND fu.state = 'open')) THEN 'resample'
        WHEN bool_or(t.result = 'negative')
          OR bool_or(EXISTS (SELECT 1 FROM fu WHERE fu.person = s.person AND fu.round = s.round
                               AND fu.result = 'negative')) THEN 'negative'
        ELSE 'pending' END AS status,
      greatest(max(t.result_at) FILTER (WHERE t.result IN ('negative', 'positive')),
               max((SELECT max(fu.closed_at) FROM fu WHERE fu.person = s.person AND fu.round = s.round
                      AND fu.result IN ('negative', 'positive')))) AS decided
    FROM samples s JOIN tubes t ON t.code = s.tube
    WHERE s.person = ANY (p_persons)
    GROUP BY s.person, s.round
  )
  INSERT INTO person_rounds AS o (person, round, status, decided_at)
  SELECT person, round, status, CASE WHEN status IN ('negative', 'positive') THEN decided END FROM per
  ON CONFLICT (person, round) DO UPDATE SET status = EXCLUDED.status, decided_at = EXCLUDED.decided_at
  WHERE (o.status, o.decided_at) IS DISTINCT FROM (EXCLUDED.status, EXCLUDED.decided_at)
$$;

-- Sum of minute histograms.
CREATE FUNCTION tl_hist_add(a jsonb, b jsonb) RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$
  SELECT coalesce(jsonb_object_agg(k, n), '{}') FROM (
    SELECT k, sum(v::int) AS n FROM (
      SELECT * FROM jsonb_each_text(coalesce(a, '{}')) UNION ALL SELECT * FROM jsonb_each_text(coalesce(b, '{}'))
    ) e(k, v) GROUP BY k) x
$$;
CREATE AGGREGATE tl_hist_sum(jsonb) (SFUNC = tl_hist_add, STYPE = jsonb, INITCOND = '{}');

-- Nearest-rank percentile of a minute histogram: the smallest minute m with at least
-- ceil(p * N) values <= m. NULL when empty.
CREATE FUNCTION tl_hist_pct(h jsonb, p float8) RETURNS int LANGUAGE sql IMMUTABLE AS $$
  SELECT min(m) FROM (
    SELECT k::int AS m, sum(v::int) OVER (ORDER BY k::int) AS cum, sum(v::int) OVER () AS total
    FROM jsonb_each_text(h) e(k, v)) x
  WHERE cum >= ceil(p * total)
$$;

-- Re-counts the (round, site) rows named in p_pairs (JSON ["round", "site"] texts) and then
-- every ancestor row of those sites from its children.
CREATE FUNCTION tl_rollup(p_pairs text[]) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
  v_level int;
BEGIN
  IF p_pairs IS NULL OR cardinality(p_pairs) = 0 THEN RETURN; END IF;
  WITH pairs AS (
    SELECT DISTINCT (x::jsonb) ->> 0 AS round, (x::jsonb) ->> 1 AS site FROM unnest(p_pairs) x
  ), tube_counts AS (
    SELECT p.round, p.site,
      count(*) FILTER (WHERE k.bucket = 'open') AS t_open,
      count(*) FILTER (WHERE k.bucket = 'sealed') AS t_sealed,
      count(*) FILTER (WHERE k.bucket = 'in_transit') AS t_transit,
      count(*) FILTER (WHERE k.bucket = 'received') AS t_received,
      count(*) FILTER (WHERE k.bucket = 'resulted') AS t_resulted,
      count(*) FILTER (WHERE k.bucket = 'rejected') AS t_rejected,
      count(*) FILTER (WHERE t.result = 'negative') AS r_neg,
      count(*) FILTER (WHERE t.result = 'positive') AS r_pos,
      count(*) FILTER (WHERE t.result = 'invalid') AS r_inv
    FROM pairs p
    LEFT JOIN tubes t ON t.round = p.round AND t.site = p.site
    LEFT JOIN boxes b ON b.code = t.box
    LEFT JOIN LATERAL (SELECT CASE WHEN t.code IS NULL THEN NULL ELSE tl_tube_bucket(t, b) END AS bucket) k ON true
    GROUP BY p.round, p.site
  ), tat AS (
    SELECT p.round, p.site, coalesce(jsonb_object_agg(m, n) FILTER (WHERE m IS NOT NULL), '{}') AS h
    FROM pairs p LEFT JOIN LATERAL (
      SELECT floor(extract(epoch FROM t.result_at - t.first_sample_at) / 60)::int::text AS m, count(*) AS n
      FROM tubes t WHERE t.round = p.round AND t.site = p.site AND t.result IS NOT NULL
        AND t.first_sample_at IS NOT NULL AND t.result_at >= t.first_sample_at
      GROUP BY 1) x ON true
    GROUP BY p.round, p.site
  ), hourly AS (
    SELECT p.round, p.site, coalesce(jsonb_object_agg(hr, n) FILTER (WHERE hr IS NOT NULL), '{}') AS h
    FROM pairs p LEFT JOIN LATERAL (
      SELECT extract(hour FROM s.at)::int::text AS hr, count(*) AS n FROM samples s
      WHERE s.round = p.round AND s.site = p.site GROUP BY 1) x ON true
    GROUP BY p.round, p.site
  ), persons AS (
    SELECT p.round, p.site, count(DISTINCT s.person) AS sampled,
           count(DISTINCT s.person) FILTER (WHERE r.status IN ('negative', 'positive')) AS returned
    FROM pairs p LEFT JOIN samples s ON s.round = p.round AND s.site = p.site
    LEFT JOIN person_rounds r ON r.person = s.person AND r.round = s.round
    GROUP BY p.round, p.site
  ), anomaly_counts AS (
    SELECT p.round, p.site,
      count(a.id) FILTER (WHERE a.type LIKE 'overdue%') AS overdue, count(a.id) AS open
    FROM pairs p LEFT JOIN anomalies a ON a.round = p.round AND a.site = p.site
      AND a.state IN ('open', 'acknowledged')
    GROUP BY p.round, p.site
  ), followup_counts AS (
    SELECT p.round, p.site, count(f.tube) AS open
    FROM pairs p LEFT JOIN followups f ON f.round = p.round AND f.site = p.site AND f.state = 'open'
    GROUP BY p.round, p.site
  )
  INSERT INTO stats AS o (round, code, level, parent, persons_sampled, persons_returned,
    tubes_open, tubes_sealed, tubes_in_transit, tubes_received, tubes_resulted, tubes_rejected,
    results_negative, results_positive, results_invalid, overdue, anomalies_open, followups_open,
    tat, hourly, updated_at)
  SELECT c.round, c.site, 'site', st.township, pe.sampled, pe.returned,
    c.t_open, c.t_sealed, c.t_transit, c.t_received, c.t_resulted, c.t_rejected,
    c.r_neg, c.r_pos, c.r_inv, a.overdue, a.open, f.open, h.h, hr.h, now()
  FROM tube_counts c
  JOIN sites st ON st.code = c.site
  JOIN tat h USING (round, site) JOIN hourly hr USING (round, site) JOIN persons pe USING (round, site)
  JOIN anomaly_counts a USING (round, site) JOIN followup_counts f USING (round, site)
  ORDER BY c.round, c.site -- the same row order in every transaction: no lock cycles
  ON CONFLICT (round, code) DO UPDATE SET
    persons_sampled = EXCLUDED.persons_sampled, persons_returned = EXCLUDED.persons_returned,
    tubes_open = EXCLUDED.tubes_open, tubes_sealed = EXCLUDED.tubes_sealed,
    tubes_in_transit = EXCLUDED.tubes_in_transit, tubes_received = EXCLUDED.tubes_received,
    tubes_resulted = EXCLUDED.tubes_resulted, tubes_rejected = EXCLUDED.tubes_rejected,
    results_negative = EXCLUDED.results_negative, results_positive = EXCLUDED.results_positive,
    results_invalid = EXCLUDED.results_invalid, overdue = EXCLUDED.overdue,
    anomalies_open = EXCLUDED.anomalies_open, followups_open = EXCLUDED.followups_open,
    tat = EXCLUDED.tat, hourly = EXCLUDED.hourly, updated_at = now()
  WHERE (o.persons_sampled, o.persons_returned, o.tubes_open, o.tubes_sealed, o.tubes_in_transit,
         o.tubes_received, o.tubes_resulted, o.tubes_rejected, o.results_negative,
         o.results_positive, o.results_invalid, o.overdue, o.anomalies_open, o.followups_open,
         o.tat, o.hourly)
    IS DISTINCT FROM
        (EXCLUDED.persons_sampled, EXCLUDED.persons_returned, EXCLUDED.tubes_open,
         EXCLUDED.tubes_sealed, EXCLUDED.tubes_in_transit, EXCLUDED.tubes_received,
         EXCLUDED.tubes_resulted, EXCLUDED.tubes_rejected, EXCLUDED.results_negative,
         EXCLUDED.results_positive, EXCLUDED.results_invalid, EXCLUDED.overdue,
         EXCLUDED.anomalies_open, EXCLUDED.followups_open, EXCLUDED.tat, EXCLUDED.hourly);

  -- Ancestors, level by level upwards: township (9) → county (6) → city (4) → province (2).
  FOREACH v_level IN ARRAY ARRAY[9, 6, 4, 2] LOOP
    WITH targets AS (
      SELECT DISTINCT (x::jsonb) ->> 0 AS round, left(s.township, v_level) AS code
      FROM unnest(p_pairs) x JOIN sites s ON s.code = (x::jsonb) ->> 1
      WHERE EXISTS (SELECT 1 FROM regions r WHERE r.code = left(s.township, v_level))
    )
    INSERT INTO stats AS o (round, code, level, parent, persons_sampled, persons_returned,
      tubes_open, tubes_sealed, tubes_in_transit, tubes_received, tubes_resulted, tubes_rejected,
      results_negative, results_positive, results_invalid, overdue, anomalies_open, followups_open,
      tat, hourly, updated_at)
    SELECT g.round, g.code, r.level, r.parent,
      coalesce(sum(c.persons_sampled), 0), coalesce(sum(c.persons_returned), 0),
      coalesce(sum(c.tubes_open), 0), coalesce(sum(c.tubes_sealed), 0),
      coalesce(sum(c.tubes_in_transit), 0), coalesce(sum(c.tubes_received), 0),
      coalesce(sum(c.tubes_resulted), 0), coalesce(sum(c.tubes_rejected), 0),
      coalesce(sum(c.results_negative), 0), coalesce(sum(c.results_positive), 0),
      coalesce(sum(c.results_invalid), 0), coalesce(sum(c.overdue), 0),
      coalesce(sum(c.anomalies_open), 0), coalesce(sum(c.followups_open), 0),
      coalesce(tl_hist_sum(c.tat), '{}'), coalesce(tl_hist_sum(c.hourly), '{}'), now()
    FROM targets g JOIN regions r ON r.code = g.code
    LEFT JOIN stats c ON c.round = g.round AND c.parent = g.code
    GROUP BY g.round, g.code, r.level, r.parent
    ORDER BY g.round, g.code
    ON CONFLICT (round, code) DO UPDATE SET
      persons_sampled = EXCLUDED.persons_sampled, persons_returned = EXCLUDED.persons_returned,
      tubes_open = EXCLUDED.tubes_open, tubes_sealed = EXCLUDED.tubes_sealed,
      tubes_in_transit = EXCLUDED.tubes_in_transit, tubes_received = EXCLUDED.tubes_received,
      tubes_resulted = EXCLUDED.tubes_resulted, tubes_rejected = EXCLUDED.tubes_rejected,
      results_negative = EXCLUDED.results_negative, results_positive = EXCLUDED.results_positive,
      results_invalid = EXCLUDED.results_invalid, overdue = EXCLUDED.overdue,
      anomalies_open = EXCLUDED.anomalies_open, followups_open = EXCLUDED.followups_open,
      tat = EXCLUDED.tat, hourly = EXCLUDED.hourly, updated_at = now()
    WHERE (o.persons_sampled, o.persons_returned, o.tubes_open, o.tubes_sealed, o.tubes_in_transit,
           o.tubes_received, o.tubes_resulted, o.tubes_rejected, o.results_negative,
           o.results_positive, o.results_invalid, o.overdue, o.anomalies_open, o.followups_open,
           o.tat, o.hourly)
      IS DISTINCT FROM
          (EXCLUDED.persons_sampled, EXCLUDED.persons_returned, EXCLUDED.tubes_open,
           EXCLUDED.tubes_sealed, EXCLUDED.tubes_in_transit, EXCLUDED.tubes_received,
           EXCLUDED.tubes_resulted, EXCLUDED.tubes_rejected, EXCLUDED.results_negative,
           EXCLUDED.results_positive, EXCLUDED.results_invalid, EXCLUDED.overdue,
           EXCLUDED.anomalies_open, EXCLUDED.followups_open, EXCLUDED.tat, EXCLUDED.hourly);
  END LOOP;

  -- Tell the daemons (LISTEN tl_stats) which regions changed; delivered at commit.
  PERFORM pg_notify('tl_stats', string_agg(DISTINCT left(s.township, 6), ','))
  FROM unnest(p_pairs) x JOIN sites s ON s.code = (x::jsonb) ->> 1;
END $$;

-- STATS of DESIGN §5 from one (summed) stats record.
CREATE FUNCTION tl_stats_object(s stats) RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$
  SELECT jsonb_build_object(
    'persons_sampled', coalesce(s.persons_sampled, 0), 'persons_returned', coalesce(s.persons_returned, 0),
    'clearance', CASE WHEN coalesce(s.persons_sampled, 0) = 0 THEN 0.0
                      ELSE round(s.persons_returned::numeric / s.persons_sampled, 4) END,
    'tubes', jsonb_build_object('open', coalesce(s.tubes_open, 0), 'sealed', coalesce(s.tubes_sealed, 0),
       'in_transit', coalesce(s.tubes_in_transit, 0), 'received', coalesce(s.tubes_received, 0),
       'resulted', coalesce(s.tubes_resulted, 0), 'rejected', coalesce(s.tubes_rejected, 0)),
    'results', jsonb_build_object('negative', coalesce(s.results_negative, 0),
       'positive', coalesce(s.results_positive, 0), 'invalid', coalesce(s.results_invalid, 0)),
    'overdue', coalesce(s.overdue, 0), 'anomalies_open', coalesce(s.anomalies_open, 0),
    'followups_open', coalesce(s.followups_open, 0),
    'tat_minutes', jsonb_build_object('p50', tl_hist_pct(coalesce(s.tat, '{}'), 0.5),
                                      'p90', tl_hist_pct(coalesce(s.tat, '{}'), 0.9)))
$$;

-- The stats answer for a region (or site) and a set of rounds (a day's, or one).
CREATE FUNCTION tl_stats_json(p_code text, p_rounds text[]) RETURNS jsonb LANGUAGE sql STABLE AS $$
  WITH me AS (
    SELECT r.code, r.name, r.level FROM regions r WHERE r.code = p_code
    UNION ALL SELECT s.code, s.name, 'site' FROM sites s WHERE s.code = p_code
  ), kids AS (
    SELECT r.code, r.name, r.level FROM regions r WHERE r.parent = p_code
    UNION ALL SELECT s.code, s.name, 'site' FROM sites s WHERE s.township = p_code
  ), summed AS (
    SELECT s.code,
      ROW(NULL, s.code, NULL, NULL, sum(persons_sampled)::int, sum(persons_returned)::int,
          sum(tubes_open)::int, sum(tubes_sealed)::int, sum(tubes_in_transit)::int,
          sum(tubes_received)::int, sum(tubes_resulted)::int, sum(tubes_rejected)::int,
          sum(results_negative)::int, sum(results_positive)::int, sum(results_invalid)::int,
          sum(overdue)::int, sum(anomalies_open)::int, sum(followups_open)::int,
          tl_hist_sum(tat), tl_hist_sum(hourly), NULL)::stats AS st
    FROM stats s
    WHERE s.round = ANY (p_rounds) AND (s.code = p_code OR s.code IN (SELECT code FROM kids))
    GROUP BY s.code
  )
  SELECT jsonb_build_object(
    'region', jsonb_build_object('code', me.code, 'name', me.name, 'level', me.level),
    'totals', tl_stats_object((SELECT st FROM summed WHERE code = me.code)),
    'children', (SELECT coalesce(jsonb_agg(jsonb_build_object('code', k.code, 'name', k.name, 'level', k.level)
                                           || tl_stats_object((SELECT st FROM summed WHERE code = k.code))
                                           ORDER BY k.code), '[]') FROM kids k))
  FROM me
$$;

-- The dashboard's charts for a region and a set of rounds, from the same roll-ups: samples per
-- hour of the day, the turnaround histogram (minutes → tubes) and clearance per child.
CREATE FUNCTION tl_charts_json(p_code text, p_rounds text[]) RETURNS jsonb LANGUAGE sql STABLE AS $$
  SELECT jsonb_build_object(
    'region', p_code,
    'samples_per_hour', (SELECT coalesce(tl_hist_sum(s.hourly), '{}') FROM stats s
                         WHERE s.code = p_code AND s.round = ANY (p_rounds)),
    'tat_histogram', (SELECT coalesce(tl_hist_sum(s.tat), '{}') FROM stats s
                      WHERE s.code = p_code AND s.round = ANY (p_rounds)),
    'clearance', (SELECT coalesce(jsonb_agg(jsonb_build_object('code', c.code, 'name', c.name,
                     'persons_sampled', c.sampled, 'persons_returned', c.returned,
                     'clearance', CASE WHEN c.sampled = 0 THEN 0.0 ELSE round(c.returned::numeric / c.sampled, 4) END)
                     ORDER BY c.code), '[]')
                  FROM (SELECT s.code, coalesce(r.name, st.name) AS name, sum(s.persons_sampled) AS sampled,
                               sum(s.persons_returned) AS returned
                        FROM stats s LEFT JOIN regions r ON r.code = s.code LEFT JOIN sites st ON st.code = s.code
                        WHERE s.parent = p_code AND s.round = ANY (p_rounds)
                        GROUP BY s.code, r.name, st.name) c))
$$;
