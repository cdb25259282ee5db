-- 013: the stats read stays fast while the fold rewrites the roll-ups every second.
--
-- Folding updates the same few hundred `stats` rows every second, so the table is mostly dead
-- row versions between vacuums, and the stats query read it by a sequential scan (it found a
-- region's children by "code IN (the children's codes)"): tens of milliseconds at a county
-- under load. Now the rows are found through the indexes (the region's own row by its key,
-- its children by `parent`), the table leaves room for in-page (HOT) updates and is vacuumed
-- after every few thousand of them, a single round's rows are used as they are instead of
-- being summed, and p50 and p90 come from one pass over the histogram.

ALTER TABLE stats SET (fillfactor = 50, autovacuum_vacuum_scale_factor = 0,
                       autovacuum_vacuum_threshold = 2000);

-- Nearest-rank p50 and p90 of a minute histogram (as tl_hist_pct), in one pass.
CREATE FUNCTION tl_hist_p50_p90(h jsonb) RETURNS int[] LANGUAGE sql IMMUTABLE AS $$
  SELECT ARRAY[min(m) FILTER (WHERE cum >= ceil(0.5 * total)), min(m) FILTER (WHERE cum >= ceil(0.9 * total))]
  FROM (SELECT k::int AS m, sum(v::int) OVER (ORDER BY k::int) AS cum, sum(v::int) OVER () AS total
        FROM jsonb_each_text(h) e(k, v)) x
$$;

-- STATS of DESIGN §5 from one (summed) stats record (as in sql/006, with the one-pass percentiles).
CREATE OR REPLACE FUNCTION tl_stats_object(s stats) RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$
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
    'tat_minutes', (SELECT jsonb_build_object('p50', p[1], 'p90', p[2])
                    FROM tl_hist_p50_p90(coalesce(s.tat, '{}')) p))
$$;

-- The stats answer for a region (or site) and a set of rounds (a day's, or one), from the
-- roll-ups as they are (tl_stats_json folds first).
CREATE OR REPLACE FUNCTION tl_stats_folded(p_code text, p_rounds text[]) RETURNS jsonb LANGUAGE sql STABLE AS $$
  WITH me AS (
    SELECT r.code, r.name, r.level FROM regions r WHERE r.code = p_code
    UNION ALL SELECT s.code, s.name, 'site' FROM sites s WHERE s.code = p_code
  ), kids AS (
    SELECT r.code, r.name, r.level FROM regions r WHERE r.parent = p_code
    UNION ALL SELECT s.code, s.name, 'site' FROM sites s WHERE s.township = p_code
  ), mine AS (
    SELECT s.* FROM stats s WHERE s.round = ANY (p_rounds) AND s.code = p_code
    UNION ALL
    SELECT s.* FROM stats s WHERE s.round = ANY (p_rounds) AND s.parent = p_code
  ), summed AS (
    SELECT m.code, m::stats AS st FROM mine m WHERE cardinality(p_rounds) = 1
    UNION ALL
    SELECT m.code,
      ROW(NULL, m.code, NULL, NULL, sum(persons_sampled)::int, sum(persons_returned)::int,
          sum(tubes_open)::int, sum(tubes_sealed)::int, sum(tubes_in_transit)::int,
          sum(tubes_received)::int, sum(tubes_resulted)::int, sum(tubes_rejected)::int,
          sum(results_negative)::int, sum(results_positive)::int, sum(results_invalid)::int,
          sum(overdue)::int, sum(anomalies_open)::int, sum(followups_open)::int,
          tl_hist_sum(tat), tl_hist_sum(hourly), NULL)::stats
    FROM mine m WHERE cardinality(p_rounds) > 1
    GROUP BY m.code
  )
  SELECT jsonb_build_object(
    'region', jsonb_build_object('code', me.code, 'name', me.name, 'level', me.level),
    'totals', tl_stats_object((SELECT st FROM summed WHERE code = me.code)),
    'children', (SELECT coalesce(jsonb_agg(jsonb_build_object('code', k.code, 'name', k.name, 'level', k.level)
                                           || tl_stats_object(su.st) ORDER BY k.code), '[]')
                 FROM kids k LEFT JOIN summed su ON su.code = k.code))
  FROM me
$$;
