-- 031: tl_write_plain's check for follow-ups probes the index once per sample, whatever the
-- size of the followups table.
--
-- sql/025 checks that no person of a plain group has follow-ups with a join of the group's
-- samples and followups. The function's plan is generic (force_generic_plan), made for a
-- group of 100 samples; once followups held a few thousand rows (a county after a few
-- pooled positives), the planner preferred a hash of the whole table to 100 index probes:
-- a sequential scan of followups for every group of one or two samples. On a benchmark
-- cluster with 8,400 follow-ups that check was 0.98 of tl_write_plain's 1.97 ms per group at
-- 1,000 single scans/s (pg_stat_statements), half of a single scan's write, growing with the
-- table until the plan flips back. A LATERAL subquery with LIMIT 1 cannot be turned into a
-- join: each sample is one probe of followups_person (1.96 -> 0.09 ms for a group of two,
-- EXPLAIN ANALYZE of the generic plan). The function is sql/025's otherwise (PL/pgSQL
-- functions are replaced whole).
CREATE OR REPLACE FUNCTION tl_write_plain(p jsonb) RETURNS TABLE (event uuid, type text)
LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $$
BEGIN
  IF jsonb_array_length(p -> 'boxes') > 0 OR jsonb_array_length(p -> 'receipts') > 0
     OR EXISTS (SELECT 1 FROM jsonb_array_elements(p -> 'events') e
                WHERE e ->> 'type' NOT IN ('tube.open', 'sample.add'))
     OR EXISTS (SELECT 1 FROM jsonb_populate_recordset(NULL::tubes, p -> 'tubes') n
                WHERE n.opened_at IS NULL OR n.sealed_at IS NOT NULL OR n.box IS NOT NULL
                   OR n.received_at IS NOT NULL OR n.received_box IS NOT NULL
                   OR n.rejected_at IS NOT NULL OR n.result IS NOT NULL)
     OR EXISTS (SELECT 1 FROM jsonb_populate_recordset(NULL::tubes, p -> 'tubes') n
                JOIN tubes t ON t.code = n.code
                WHERE to_jsonb(t) - 'sampled' - 'first_sample_at'
                      <> to_jsonb(n) - 'sampled' - 'first_sample_at')
     OR EXISTS (SELECT 1 FROM jsonb_populate_recordset(NULL::samples, p -> 'samples') n
                GROUP BY n.person, n.round HAVING count(*) > 1)
     OR EXISTS (SELECT 1 FROM jsonb_populate_recordset(NULL::samples, p -> 'samples') n
                JOIN samples s ON s.person = n.person AND s.round = n.round)
     -- (one index probe per sample, whatever the size of followups: see above)
     OR EXISTS (SELECT 1 FROM jsonb_populate_recordset(NULL::samples, p -> 'samples') n
                CROSS JOIN LATERAL (SELECT 1 FROM followups f WHERE f.person = n.person LIMIT 1) f) THEN
    RETURN QUERY SELECT * FROM tl_write(p);
    RETURN;
  END IF;

  -- the facts, as tl_write writes them (no boxes, no receipts; a tube's other columns as they
  -- were, checked above)
  INSERT INTO persons AS o
  SELECT * FROM jsonb_populate_recordset(NULL::persons, p -> 'persons')
  ON CONFLICT (hmac) DO UPDATE SET
    id_enc = EXCLUDED.id_enc, id_masked = EXCLUDED.id_masked,
    name_enc = coalesce(EXCLUDED.name_enc, o.name_enc),
    name_masked = coalesce(EXCLUDED.name_masked, o.name_masked),
    phone_enc = coalesce(EXCLUDED.phone_enc, o.phone_enc),
    phone_masked = coalesce(EXCLUDED.phone_masked, o.phone_masked),
    updated_at = now();
  INSERT INTO tubes AS o
  SELECT * FROM jsonb_populate_recordset(NULL::tubes, p -> 'tubes')
  ON CONFLICT (code) DO UPDATE SET sampled = EXCLUDED.sampled,
    first_sample_at = EXCLUDED.first_sample_at;
  INSERT INTO samples SELECT * FROM jsonb_populate_recordset(NULL::samples, p -> 'samples');
  INSERT INTO events SELECT * FROM jsonb_populate_recordset(NULL::events, p -> 'events');

  -- the counties whose roll-ups moved, as tl_refresh tells them
  PERFORM tl_rollup(ARRAY(SELECT DISTINCT jsonb_build_array(n.round, n.site)::text
                          FROM jsonb_populate_recordset(NULL::tubes, p -> 'tubes') n
                          WHERE n.site IS NOT NULL));
  -- no anomaly: nothing to return
END $$;
