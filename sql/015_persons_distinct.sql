-- 015: a person counts once in every region, not once per site summed upwards.
--
-- persons_sampled and persons_returned were counted per site (distinct persons) and the sites'
-- figures were summed into the township, county, city and province: a person sampled at two
-- sites of a county counted twice there, and a county's clearance mixed the two. Now each level
-- counts distinct persons. The triggers still write per-site deltas; for these two metrics the
-- delta's key says how far up it reaches (its depth: 1 the site only, 2 also the township, 3
-- the county, 4 the city, 5 the province), and tl_fold carries it up only that far:
--
--   * a new sample: depth 1 if the person had no earlier sample at that site in the round, and
--     one more level for each enclosing region where the person had none either — counted on
--     one of the new sites of that region (the smallest code), so two new sites of one
--     township in one statement make one, not two;
--   * a person whose round became final (or stopped being): ±1 at every site where they were
--     sampled, and at each enclosing region through the smallest of their sites in it.
--
-- Regions nest, so these levels are always a prefix from the site upwards. Two groups in
-- flight at once that both bring a person's first sample of a region would both count it (as
-- two tubes of one person at one site already could); tl_rollup_rebuild() counts from the raw
-- rows and repairs that. The rebuild now counts each region's persons distinct as well, and
-- runs once here so that the existing roll-ups follow the new definition.

-- A region's depth under a site: township (9 digits) 2, county (6) 3, city (4) 4, province 5.
CREATE FUNCTION tl_region_depth(p_code text) RETURNS int LANGUAGE sql IMMUTABLE AS $$
  SELECT CASE length(p_code) WHEN 9 THEN 2 WHEN 6 THEN 3 WHEN 4 THEN 4 ELSE 5 END
$$;

-- Deltas already written have depth 0 (every level): fold them before the new rules apply.
SELECT tl_fold();

CREATE OR REPLACE FUNCTION tl_delta_samples() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO stats_delta (round, site, metric, key, n)
  SELECT n.round, n.site, 'hourly', extract(hour FROM n.at)::int, count(*)
  FROM new_rows n GROUP BY 1, 2, 3, 4
  UNION ALL
  SELECT j.round, j.site, x.metric, j.depth, count(*)
  FROM (
    -- every sample site of the persons of the statement in its rounds, the new samples included
    WITH fresh AS (
      SELECT n.person, n.round, n.site, count(*) AS k FROM new_rows n GROUP BY 1, 2, 3
    ), probe AS MATERIALIZED (
      -- LATERAL: one index probe per person (a join would let the planner scan all samples);
      -- materialized, so that sites is joined once and not inside the loop
      SELECT p.person, p.round, s.site, s.total
      FROM (SELECT DISTINCT f.person, f.round FROM fresh f) p
      CROSS JOIN LATERAL (SELECT s.site, count(*) AS total FROM samples s
                          WHERE s.person = p.person AND s.round = p.round GROUP BY s.site) s
    ), mine AS (
      SELECT pr.person, pr.round, pr.site, st.township, pr.total, f.k
      FROM probe pr JOIN sites st ON st.code = pr.site
      LEFT JOIN fresh f ON f.person = pr.person AND f.round = pr.round AND f.site = pr.site
    )
    SELECT m.person, m.round, m.site,
      (m.total = m.k)::int
      + (sum(m.total - coalesce(m.k, 0)) OVER t = 0 AND min(m.site) FILTER (WHERE m.k IS NOT NULL) OVER t = m.site)::int
      + (sum(m.total - coalesce(m.k, 0)) OVER c = 0 AND min(m.site) FILTER (WHERE m.k IS NOT NULL) OVER c = m.site)::int
      + (sum(m.total - coalesce(m.k, 0)) OVER ci = 0 AND min(m.site) FILTER (WHERE m.k IS NOT NULL) OVER ci = m.site)::int
      + (sum(m.total - coalesce(m.k, 0)) OVER pr = 0 AND min(m.site) FILTER (WHERE m.k IS NOT NULL) OVER pr = m.site)::int
        AS depth,
      m.k
    FROM mine m
    WINDOW t AS (PARTITION BY m.person, m.round, m.township),
           c AS (PARTITION BY m.person, m.round, left(m.township, 6)),
           ci AS (PARTITION BY m.person, m.round, left(m.township, 4)),
           pr AS (PARTITION BY m.person, m.round, left(m.township, 2))
  ) j
  LEFT JOIN person_rounds r ON r.person = j.person AND r.round = j.round
  CROSS JOIN LATERAL (SELECT 'persons_sampled'
                      UNION ALL SELECT 'persons_returned' WHERE r.status IN ('negative', 'positive')) x(metric)
  WHERE j.k IS NOT NULL AND j.depth > 0
  GROUP BY 1, 2, 3, 4;
  RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION tl_delta_person_rounds() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  v_persons text[];
  v_rounds text[];
  v_w int[];
BEGIN
  IF TG_OP = 'INSERT' THEN
    SELECT array_agg(n.person), array_agg(n.round), array_agg(1) INTO v_persons, v_rounds, v_w
    FROM new_rows n WHERE n.status IN ('negative', 'positive');
  ELSE
    -- old and new rows summed per key rather than joined (sql/008)
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
  SELECT d.round, d.site, 'persons_returned', d.depth, sum(d.w)
  FROM (SELECT ps.round, ps.site, ps.w,
          1 + (ps.site = min(ps.site) OVER (PARTITION BY ps.person, ps.round, ps.township))::int
            + (ps.site = min(ps.site) OVER (PARTITION BY ps.person, ps.round, left(ps.township, 6)))::int
            + (ps.site = min(ps.site) OVER (PARTITION BY ps.person, ps.round, left(ps.township, 4)))::int
            + (ps.site = min(ps.site) OVER (PARTITION BY ps.person, ps.round, left(ps.township, 2)))::int
            AS depth
        FROM (WITH probe AS MATERIALIZED (
                SELECT c.person, c.round, s.site, c.w
                FROM unnest(v_persons, v_rounds, v_w) c(person, round, w)
                CROSS JOIN LATERAL (SELECT DISTINCT s.site FROM samples s
                                    WHERE s.person = c.person AND s.round = c.round) s)
              SELECT pr.person, pr.round, pr.site, st.township, pr.w
              FROM probe pr JOIN sites st ON st.code = pr.site) ps) d
  GROUP BY 1, 2, 3, 4 HAVING sum(d.w) <> 0;
  RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION tl_fold() RETURNS int LANGUAGE plpgsql AS $$
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
    WHERE p.metric NOT IN ('persons_sampled', 'persons_returned') OR p.key >= tl_region_depth(r.code)
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


-- The re-count: tl_rollup_recount (sql/006) counts each site's persons distinct and sums the
-- rest upwards; the persons of every region are then counted distinct from the raw rows.
CREATE OR REPLACE FUNCTION tl_rollup_rebuild() RETURNS void LANGUAGE plpgsql AS $$
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
  UPDATE stats o SET persons_sampled = x.sampled, persons_returned = x.returned
  FROM (SELECT s.round, left(st.township, l.len) AS code, count(DISTINCT s.person) AS sampled,
               count(DISTINCT s.person) FILTER (WHERE r.status IN ('negative', 'positive')) AS returned
        FROM samples s JOIN sites st ON st.code = s.site
        LEFT JOIN person_rounds r ON r.person = s.person AND r.round = s.round
        CROSS JOIN unnest(ARRAY[9, 6, 4, 2]) l(len)
        GROUP BY 1, 2) x
  WHERE o.round = x.round AND o.code = x.code AND o.level <> 'site'
    AND (o.persons_sampled, o.persons_returned) IS DISTINCT FROM (x.sampled, x.returned);
END $$;

SELECT tl_rollup_rebuild();
