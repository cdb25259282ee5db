-- 035: the tubes' roll-up delta reads each tube's box by its key, never by a hash of all boxes.
--
-- tl_delta_tubes (sql/008) joins the statement's tubes to boxes to know whether each tube's box
-- is on the road. Its plan is generic (tl_write's plan_cache_mode, sql/021) and sized by the
-- transition table it was first planned for: after a batched group of hundreds of tubes it can
-- be a hash join over a sequential scan of every box, kept for every later statement of the
-- session, the single scan's write of one tube included (found with auto_explain on a
-- benchmark cluster; measured in docs/PERFORMANCE.md, ninth update). Here the box is a LATERAL
-- subquery with LIMIT 1, which the planner cannot turn into a join: one probe of boxes_pkey per
-- tube whatever the plan (as sql/031 did for the follow-ups). Still an outer join, so a tube
-- without a box counts as not on the road as before, and tl_tube_metrics still gets plain
-- columns and is inlined. The rows written are the same; e2e_py_convergence compares the
-- folded roll-ups with a re-count after every interleaving.

-- sql/008's, the box by probe
CREATE OR REPLACE FUNCTION tl_delta_tubes() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN
    INSERT INTO stats_delta (round, site, metric, key, n)
    SELECT t.round, t.site, m.metric, m.key, count(*)
    FROM new_rows t
    LEFT JOIN LATERAL (SELECT b.picked_up_at, b.delivered_at FROM boxes b
                       WHERE b.code = t.box LIMIT 1) b ON true
    CROSS JOIN LATERAL tl_tube_metrics(t.result, t.rejected_at, t.received_at,
      b.picked_up_at IS NOT NULL OR b.delivered_at IS NOT NULL, t.sealed_at, t.first_sample_at,
      t.result_at) m
    WHERE t.round IS NOT NULL AND t.site IS NOT NULL
    GROUP BY 1, 2, 3, 4;
  ELSE
    INSERT INTO stats_delta (round, site, metric, key, n)
    SELECT x.round, x.site, m.metric, m.key, sum(x.w)
    FROM (SELECT -1 AS w, o.* FROM old_rows o UNION ALL SELECT 1, t.* FROM new_rows t) x
    LEFT JOIN LATERAL (SELECT b.picked_up_at, b.delivered_at FROM boxes b
                       WHERE b.code = x.box LIMIT 1) b ON true
    CROSS JOIN LATERAL tl_tube_metrics(x.result, x.rejected_at, x.received_at,
      b.picked_up_at IS NOT NULL OR b.delivered_at IS NOT NULL, x.sealed_at, x.first_sample_at,
      x.result_at) m
    WHERE x.round IS NOT NULL AND x.site IS NOT NULL
    GROUP BY 1, 2, 3, 4 HAVING sum(x.w) <> 0;
  END IF;
  RETURN NULL;
END $$;
