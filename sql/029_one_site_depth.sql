-- 029: a person sampled at one site of the round gets the depth of their persons_sampled and
-- persons_returned deltas without the four window sorts.
--
-- The two statement triggers of sql/015 find, for each person of the statement, every site of
-- the round where they were sampled, join the sites for their townships, and sort those rows
-- four times (one window per enclosing region) to tell how far up the person is new. Nearly
-- every person has one site in the round, and for them the answer needs neither: with one
-- site, that site is the smallest of every region, so
--   * tl_delta_samples: the depth is 5 (every level) when all the person's samples there are
--     new in this statement (total = k), else 0 — the formula of sql/015 with one row per
--     window, where each window term equals the first;
--   * tl_delta_person_rounds: the depth is 5 (1, and one for each of the four regions).
-- Those persons now skip the windows and the join; the persons with two or more sites go
-- through them exactly as before. The one probe per person over the samples index stays, and
-- it now also counts the person's sites (a window over that person's own rows only). Measured
-- under batched ingest: docs/PERFORMANCE.md, seventh update. The deltas written are the same,
-- row for row; the dashboards' e2e tests compare the roll-ups with counts from the raw rows.

-- sql/015's, with the one-site persons apart
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
      -- every sample site of the persons of the statement in its rounds, the new samples
      -- included, and how many sites that person has there
      SELECT p.person, p.round, s.site, s.total, s.sites
      FROM (SELECT DISTINCT f.person, f.round FROM fresh f) p
      CROSS JOIN LATERAL (SELECT s.site, count(*) AS total, count(*) OVER () AS sites
                          FROM samples s WHERE s.person = p.person AND s.round = p.round
                          GROUP BY s.site) s
    ), mine AS (
      SELECT pr.person, pr.round, pr.site, st.township, pr.total, f.k
      FROM probe pr JOIN sites st ON st.code = pr.site
      LEFT JOIN fresh f ON f.person = pr.person AND f.round = pr.round AND f.site = pr.site
      WHERE pr.sites > 1
    )
    SELECT pr.person, pr.round, pr.site, CASE WHEN pr.total = f.k THEN 5 ELSE 0 END AS depth, f.k
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

-- sql/015's, with the one-site persons apart
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
  FROM (WITH probe AS MATERIALIZED (
          SELECT c.person, c.round, s.site, s.sites, c.w
          FROM unnest(v_persons, v_rounds, v_w) c(person, round, w)
          CROSS JOIN LATERAL (SELECT s.site, count(*) OVER () AS sites
                              FROM samples s WHERE s.person = c.person AND s.round = c.round
                              GROUP BY s.site) s)
        SELECT pr.round, pr.site, pr.w, 5 AS depth FROM probe pr WHERE pr.sites = 1
        UNION ALL
        SELECT ps.round, ps.site, ps.w,
          1 + (ps.site = min(ps.site) OVER (PARTITION BY ps.person, ps.round, ps.township))::int
            + (ps.site = min(ps.site) OVER (PARTITION BY ps.person, ps.round, left(ps.township, 6)))::int
            + (ps.site = min(ps.site) OVER (PARTITION BY ps.person, ps.round, left(ps.township, 4)))::int
            + (ps.site = min(ps.site) OVER (PARTITION BY ps.person, ps.round, left(ps.township, 2)))::int
        FROM (SELECT pr.person, pr.round, pr.site, st.township, pr.w
              FROM probe pr JOIN sites st ON st.code = pr.site WHERE pr.sites > 1) ps) d
  GROUP BY 1, 2, 3, 4 HAVING sum(d.w) <> 0;
  RETURN NULL;
END $$;
