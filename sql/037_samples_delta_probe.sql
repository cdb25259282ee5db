-- 037: the samples' roll-up delta probes a person's samples without a sort per person, and
-- person_rounds only for persons sampled in the round before.
--
-- tl_delta_samples (sql/029) cost ~21 ms per statement of 1,000 new samples of new persons on a
-- benchmark cluster (1.8 M samples; EXPLAIN ANALYZE in a rolled-back transaction, six runs), and
-- 21-23 µs of PostgreSQL per batched event under ingest (pg_stat_statements). Two parts of it
-- did nothing for nearly every person:
--   * the probe of each person's samples ran a sort, a grouping and a window per person, for
--     one row almost always. The probe now only reads the sites of the person's samples (its
--     OFFSET 0 keeps it a nested loop over the samples index, whatever plan the session
--     cached), and one grouping and one window over all of them count the sites;
--   * every person's person_rounds row was looked up, for persons_returned. A person's row is
--     written only by tl_person_rounds_refresh, from the person's samples in the round, after
--     this statement in the same write. So a person without an earlier sample in the round
--     has none: the lookup now runs only for persons with one (prior), as a one-time filter
--     before the index scan.
-- Measured the same ways: ~12 ms per 1,000, and 8-10 µs per batched event (docs/PERFORMANCE.md,
-- tenth update). The deltas are the same, row for row: compared with sql/029's on mixed
-- statements (new persons, persons sampled before at the same and at other sites, a person
-- sampled at two sites in the statement); e2e_py_convergence compares the folded roll-ups with
-- a re-count.

CREATE OR REPLACE FUNCTION tl_delta_samples() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO stats_delta (round, site, metric, key, n)
  SELECT n.round, n.site, 'hourly', extract(hour FROM n.at)::int, count(*)
  FROM new_rows n GROUP BY 1, 2, 3, 4
  UNION ALL
  SELECT j.round, j.site, x.metric, j.depth, count(*)
  FROM (
    WITH fresh AS (
      SELECT n.person, n.round, n.site, count(*) AS k FROM new_rows n GROUP BY 1, 2, 3
    ), probe AS MATERIALIZED (
      SELECT c.person, c.round, c.site, c.total, count(*) OVER (PARTITION BY c.person, c.round) AS sites
      FROM (SELECT p.person, p.round, s.site, count(*) AS total
            FROM (SELECT DISTINCT f.person, f.round FROM fresh f) p
            CROSS JOIN LATERAL (SELECT s.site FROM samples s
                                WHERE s.person = p.person AND s.round = p.round OFFSET 0) s
            GROUP BY 1, 2, 3) c
    ), mine AS (
      SELECT pr.person, pr.round, pr.site, st.township, pr.total, f.k
      FROM probe pr JOIN sites st ON st.code = pr.site
      LEFT JOIN fresh f ON f.person = pr.person AND f.round = pr.round AND f.site = pr.site
      WHERE pr.sites > 1
    )
    -- (prior: the person has samples in the round from before this statement)
    SELECT pr.person, pr.round, pr.site, CASE WHEN pr.total = f.k THEN 5 ELSE 0 END AS depth, f.k,
           pr.total > f.k AS prior
    FROM probe pr JOIN fresh f ON f.person = pr.person AND f.round = pr.round AND f.site = pr.site
    WHERE pr.sites = 1
    UNION ALL
    SELECT m.person, m.round, m.site,
      (m.total = m.k)::int
      + (sum(m.total - coalesce(m.k, 0)) OVER t = 0 AND min(m.site) FILTER (WHERE m.k IS NOT NULL) OVER t = m.site)::int
      + (sum(m.total - coalesce(m.k, 0)) OVER c = 0 AND min(m.site) FILTER (WHERE m.k IS NOT NULL) OVER c = m.site)::int
      + (sum(m.total - coalesce(m.k, 0)) OVER ci = 0 AND min(m.site) FILTER (WHERE m.k IS NOT NULL) OVER ci = m.site)::int
      + (sum(m.total - coalesce(m.k, 0)) OVER pr = 0 AND min(m.site) FILTER (WHERE m.k IS NOT NULL) OVER pr = m.site)::int
        AS depth,
      m.k,
      sum(m.total - coalesce(m.k, 0)) OVER pp > 0 AS prior
    FROM mine m
    WINDOW t AS (PARTITION BY m.person, m.round, m.township),
           c AS (PARTITION BY m.person, m.round, left(m.township, 6)),
           ci AS (PARTITION BY m.person, m.round, left(m.township, 4)),
           pr AS (PARTITION BY m.person, m.round, left(m.township, 2)),
           pp AS (PARTITION BY m.person, m.round)
  ) j
  LEFT JOIN LATERAL (SELECT r.status FROM person_rounds r
                     WHERE j.prior AND r.person = j.person AND r.round = j.round OFFSET 0) r ON true
  CROSS JOIN LATERAL (SELECT 'persons_sampled'
                      UNION ALL SELECT 'persons_returned' WHERE r.status IN ('negative', 'positive')) x(metric)
  WHERE j.k IS NOT NULL AND j.depth > 0
  GROUP BY 1, 2, 3, 4;
  RETURN NULL;
END $$;
