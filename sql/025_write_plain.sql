-- 025: the write of a plain group: tubes opened and sampled, nothing else, in a handful of
-- statements instead of tl_write's ~40.
--
-- Most of a screening day's single-event requests are a tube.open or a sample.add at a
-- sampling point. Groups of them went through tl_write, which runs every derivation whatever
-- the events: at 1,000 requests/s (groups of ~2 events) it cost 2.4 ms per group, half of it
-- in tl_refresh's anomaly query, overdue clearing and follow-ups, none of which such a group
-- can change (docs/PERFORMANCE.md, fifth update). The daemon calls tl_write_plain instead when
-- its rules left a group that only opens and samples tubes that have no seal, box, receipt,
-- result or rejection (lib/api/ingest.c, plain_group).
--
-- What such a group can change, and why nothing else: a tube without seal, box, receipt,
-- result or rejection has none of the tube anomalies (each needs one of those) and no overdue
-- anomaly that a write would end (they end on receipt, a sealed box, a result or a
-- rejection); a sample in a tube without an outcome changes no person's status and, for a
-- person without follow-ups, no follow-up (sql/023's "light" person); and a person with one
-- sample in the round has no person_repeat to open, move or end. What is left is the facts
-- and the notice of the counties whose roll-ups moved (tl_rollup).
--
-- The function does not take the daemon's word for it: it checks every condition against
-- the group and the stored facts first (a tube that existed may change only in its count of
-- samples and its first sample's time; no person sampled may have follow-ups, or another
-- sample in the round), and hands the group to tl_write whole when one fails. A person
-- sampled again is the rare case, and tl_write derives, records and attributes the
-- person_repeat. The convergence test (tests/e2e/py/test_convergence.py, PlainGroups) sends
-- plain groups of both kinds and compares the state with a whole derivation.
CREATE FUNCTION tl_write_plain(p jsonb) RETURNS TABLE (event uuid, type text)
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
     -- (joins, one index probe per sample: "OR EXISTS" inside one subquery was planned as a
     -- hash of the whole followups table, 3.7 ms per call against 10,000 rows)
     OR EXISTS (SELECT 1 FROM jsonb_populate_recordset(NULL::samples, p -> 'samples') n
                JOIN followups f ON f.person = n.person) THEN
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
