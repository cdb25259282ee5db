-- 040: the plain write appends its own roll-up deltas and chain queue rows; the statement
-- triggers that would compute them stand aside for it.
--
-- A plain group (sql/025, sql/031: tubes opened and sampled, nothing else) fired four
-- statement triggers: tl_delta_tubes twice (the tubes upsert is an insert and an update),
-- tl_delta_samples and tl_chain_enqueue. Each is a PL/pgSQL call with statements of its own,
-- and tl_delta_samples is one of the largest statements of the schema (the person's sites, five
-- region levels, the person's round status), all for a group whose checks already prove the
-- answer simple: every person sampled is new to the round and sampled once, and every tube is
-- open, without result, and changes only in its count of samples. So here:
--   * the samples add one to the hour of day each was taken and one person sampled, new at all
--     five levels (site, township, county, city, province: the depth key of sql/029 and sql/037,
--     which a person's only sample in the round always gets), and no person returned (that
--     needs a final status, which needs an earlier sample);
--   * a tube new to the table adds what tl_tube_metrics gives a tube (in the open bucket); an
--     existing tube's update nets to nothing, because none of the columns the metrics read
--     changes (checked);
--   * every event goes into chain_pending, as tl_chain_enqueue does.
-- The four triggers get a WHEN condition that is false while tubeloop.plain_write is 'on',
-- which only tl_write_plain sets, after its checks and for the rest of its own call (the
-- function's SET clause restores it on exit, error or not). Every other write, tl_write
-- included when tl_write_plain hands a group over, fires them as before.
--
-- Measured on a benchmark cluster (docs/PERFORMANCE.md, fourteenth update): a loop of 900
-- groups of one sample, each committed, three alternating pairs, took 732-976 µs per group
-- against 776-1,228 (synchronous_commit off; 1,170-1,727 against 1,695-2,541 with it on). Under
-- 1,000 single scans/s through the daemon, three alternating pairs of 20 s: 373-391 µs of
-- tl_write_plain per scan against 417-430 (pg_stat_statements).
-- tests/e2e/py/test_convergence.py (PlainGroups) compares the folded roll-ups with a re-count
-- and checks that every event of the plain groups is queued for the chain.

CREATE OR REPLACE FUNCTION tl_write_plain(p jsonb) RETURNS TABLE (event uuid, type text)
LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan SET tubeloop.plain_write = 'off' AS $$
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
     -- (one index probe per sample, whatever the size of followups: sql/031)
     OR EXISTS (SELECT 1 FROM jsonb_populate_recordset(NULL::samples, p -> 'samples') n
                CROSS JOIN LATERAL (SELECT 1 FROM followups f WHERE f.person = n.person LIMIT 1) f) THEN
    RETURN QUERY SELECT * FROM tl_write(p);
    RETURN;
  END IF;

  -- from here on the deltas and the chain queue are this function's (see above)
  PERFORM set_config('tubeloop.plain_write', 'on', true);

  -- before the tubes upsert: which tubes are new
  INSERT INTO stats_delta (round, site, metric, key, n)
  SELECT n.round, n.site, m.metric, m.key, count(*)
  FROM jsonb_populate_recordset(NULL::tubes, p -> 'tubes') n
  CROSS JOIN LATERAL tl_tube_metrics(n.result, n.rejected_at, n.received_at, false, n.sealed_at,
                                     n.first_sample_at, n.result_at) m
  WHERE NOT EXISTS (SELECT 1 FROM tubes t WHERE t.code = n.code)
  GROUP BY 1, 2, 3, 4
  UNION ALL
  SELECT n.round, n.site, x.metric, x.key, count(*)
  FROM jsonb_populate_recordset(NULL::samples, p -> 'samples') n
  CROSS JOIN LATERAL (VALUES ('hourly', extract(hour FROM n.at)::int),
                             ('persons_sampled', 5)) x(metric, key)
  GROUP BY 1, 2, 3, 4;

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
  INSERT INTO chain_pending (event_id)
  SELECT e.id FROM jsonb_populate_recordset(NULL::events, p -> 'events') e;

  -- the counties whose roll-ups moved, as tl_refresh tells them
  PERFORM tl_rollup(ARRAY(SELECT DISTINCT jsonb_build_array(n.round, n.site)::text
                          FROM jsonb_populate_recordset(NULL::tubes, p -> 'tubes') n
                          WHERE n.site IS NOT NULL));
  -- no anomaly: nothing to return
END $$;

-- The same triggers, standing aside for the plain write (CREATE OR REPLACE TRIGGER keeps the
-- name, the timing, the transition tables and the function).
CREATE OR REPLACE TRIGGER tubes_stats_insert AFTER INSERT ON tubes REFERENCING NEW TABLE AS new_rows
  FOR EACH STATEMENT WHEN (current_setting('tubeloop.plain_write', true) IS DISTINCT FROM 'on')
  EXECUTE FUNCTION tl_delta_tubes();
CREATE OR REPLACE TRIGGER tubes_stats_update AFTER UPDATE ON tubes
  REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
  FOR EACH STATEMENT WHEN (current_setting('tubeloop.plain_write', true) IS DISTINCT FROM 'on')
  EXECUTE FUNCTION tl_delta_tubes();
CREATE OR REPLACE TRIGGER samples_stats_insert AFTER INSERT ON samples REFERENCING NEW TABLE AS new_rows
  FOR EACH STATEMENT WHEN (current_setting('tubeloop.plain_write', true) IS DISTINCT FROM 'on')
  EXECUTE FUNCTION tl_delta_samples();
CREATE OR REPLACE TRIGGER events_chain_enqueue AFTER INSERT ON events REFERENCING NEW TABLE AS chain_new
  FOR EACH STATEMENT WHEN (current_setting('tubeloop.plain_write', true) IS DISTINCT FROM 'on')
  EXECUTE FUNCTION tl_chain_enqueue();
