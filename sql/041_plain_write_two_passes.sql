-- 041: the plain write's checks in two passes instead of five, and its notice without a call.
--
-- tl_write_plain (sql/040) checked a group with six sub-selects, five of them unpacking the
-- group's tubes or samples from the jsonb again, and told the daemons which counties moved by
-- building a text array for tl_rollup, which unpacked it once more. Now one pass over the
-- tubes checks each tube (open, without outcome, changed only in its count of samples if it
-- exists) and one pass over the samples checks each sample (its person sampled once in the
-- group, not before in the round, without follow-ups), each with index probes as before; and
-- the NOTIFY names the counties straight from the group's tubes, as tl_rollup did. The
-- checks and the writes are otherwise sql/040's: a group that fails one still goes to
-- tl_write whole. tests/db/schema_test.sql sends one group per check and asserts which way
-- each went.
--
-- Measured on a benchmark cluster (docs/PERFORMANCE.md, fourteenth update): a loop of 900
-- groups of one sample, each committed (synchronous_commit off), four alternating pairs:
-- 520-584 µs per group against 554-718. Under 1,000 single scans/s through the daemon, three
-- alternating pairs of 20 s with fresh persons: 7.50-7.64 s of tl_write_plain per run against
-- 7.82-7.92 (pg_stat_statements), a p99 of 10.49-16.32 ms against 17.29-23.86.

CREATE OR REPLACE FUNCTION tl_write_plain(p jsonb) RETURNS TABLE (event uuid, type text)
LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan SET tubeloop.plain_write = 'off' AS $$
BEGIN
  IF jsonb_array_length(p -> 'boxes') > 0 OR jsonb_array_length(p -> 'receipts') > 0
     OR EXISTS (SELECT 1 FROM jsonb_array_elements(p -> 'events') e
                WHERE e ->> 'type' NOT IN ('tube.open', 'sample.add'))
     -- one pass over the tubes: open, without outcome, and changed only in its count if it exists
     OR EXISTS (SELECT 1 FROM jsonb_populate_recordset(NULL::tubes, p -> 'tubes') n
                LEFT JOIN tubes t ON t.code = n.code
                WHERE n.opened_at IS NULL OR n.sealed_at IS NOT NULL OR n.box IS NOT NULL
                   OR n.received_at IS NOT NULL OR n.received_box IS NOT NULL
                   OR n.rejected_at IS NOT NULL OR n.result IS NOT NULL
                   OR to_jsonb(t) - 'sampled' - 'first_sample_at'
                      <> to_jsonb(n) - 'sampled' - 'first_sample_at')
     -- one pass over the samples: a person sampled once in the group, never before in the
     -- round, and without follow-ups (probes with LIMIT 1, never a hash of a whole table: sql/031)
     OR EXISTS (SELECT 1 FROM (SELECT n.person, n.round, count(*) OVER (PARTITION BY n.person, n.round) AS k
                               FROM jsonb_populate_recordset(NULL::samples, p -> 'samples') n) n
                LEFT JOIN LATERAL (SELECT 1 AS one FROM samples s
                                   WHERE s.person = n.person AND s.round = n.round LIMIT 1) s ON true
                LEFT JOIN LATERAL (SELECT 1 AS one FROM followups f WHERE f.person = n.person LIMIT 1) f ON true
                WHERE n.k > 1 OR s.one IS NOT NULL OR f.one IS NOT NULL) THEN
    RETURN QUERY SELECT * FROM tl_write(p);
    RETURN;
  END IF;

  -- from here on the deltas and the chain queue are this function's (sql/040)
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
  -- the counties whose roll-ups moved, as tl_rollup tells them (sql/008), without its array
  PERFORM pg_notify('tl_stats', x.counties)
  FROM (SELECT string_agg(DISTINCT left(s.township, 6), ',') AS counties
        FROM jsonb_populate_recordset(NULL::tubes, p -> 'tubes') n JOIN sites s ON s.code = n.site) x
  WHERE x.counties IS NOT NULL;
  -- no anomaly: nothing to return
END $$;

