-- 023: a new sample re-derives its own person, and only what a new sample can change.
--
-- Until now a sample.add re-derived every person of its tube (follow-ups, status,
-- person_repeat), and a new tube all the persons its write sampled: a tube of ten, sampled one
-- request at a time, re-derived 55 persons; a batch that opens and fills a tube, all ten in
-- full. A sample in a tube that has no outcome (no result, not rejected) cannot change a
-- person's status (statuses come from outcomes and follow-ups) and cannot open, link or close
-- a follow-up of a person who has none (a follow-up exists only after an outcome of one of the
-- person's tubes). Such a person is "light": person_repeat is checked, nothing else. A person with follow-ups
-- (the new sample may be the single tube they link to) and a tube that gets a sample while it
-- has an outcome (a site's late upload after the lab's result) are re-derived whole, as are the
-- persons of a tube whose capacity, result or rejection changes. The convergence test
-- (tests/e2e/py/test_convergence.py) replays its interleavings against this.
-- tl_refresh gets a fourth parameter (default: none, so a call with three re-derives whole);
-- tl_write is sql/012's but for the split above, and carries sql/021's setting.
--
-- person_rounds gets no row for a pending person: no row means pending. Every reader already
-- took it so (the person lookup judges statuses from the facts; the roll-ups, the ledger and
-- the re-count count only 'negative' and 'positive' through a LEFT JOIN), and a status row per
-- sampled person cost a batch of ~430 events 11 ms (a foreign-key check, two index entries and
-- a conflict check per person; measured with --profile, docs/PERFORMANCE.md). A row, once
-- there, is kept up to date as before, even back to 'pending' (which outcomes, amended but
-- never taken away, should not allow; the update trigger then keeps the roll-ups right).

DELETE FROM person_rounds WHERE status = 'pending';

-- Statements the write runs on every group, found scanning whole tables in their generic plans
-- (auto_explain on a benchmark cluster: the changed-tubes probe read all 14,411 tubes per
-- group, 2.5 ms of a 9.8 ms tl_write of single events; the anomaly updates read every anomaly
-- three times) now name their keys as arrays, which the indexes serve at any size. Anomalies
-- in any state are found by subject (the live index covers open and acknowledged only): the
-- write's check for a resolved one, and a tube's or box's anomaly list.
CREATE INDEX anomalies_subject ON anomalies (subject, type);

-- sql/022's, but a pending person gets no row
CREATE OR REPLACE FUNCTION tl_person_rounds_refresh(p_persons text[]) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
  WITH tu AS (
    SELECT s.person, s.round,
      bool_or(t.capacity = 1 AND t.result = 'positive') AS positive,
      bool_or(t.result = 'negative') AS negative,
      max(t.result_at) FILTER (WHERE t.result IN ('negative', 'positive')) AS decided
    FROM samples s JOIN tubes t ON t.code = s.tube
    WHERE s.person = ANY (p_persons)
    GROUP BY s.person, s.round
  ), fu AS (
    SELECT f.person, f.round,
      bool_or(f.result = 'positive') AS positive,
      bool_or(f.state = 'open' AND f.kind = 'awaiting_recheck') AS recheck,
      bool_or(f.state = 'open') AS open,
      bool_or(f.result = 'negative') AS negative,
      max(f.closed_at) FILTER (WHERE f.result IN ('negative', 'positive')) AS decided
    FROM followups f WHERE f.person = ANY (p_persons)
    GROUP BY f.person, f.round
  ), per AS (
    SELECT tu.person, tu.round,
      CASE WHEN tu.positive OR coalesce(fu.positive, false) THEN 'positive'
           WHEN coalesce(fu.recheck, false) THEN 'awaiting_recheck'
           WHEN coalesce(fu.open, false) THEN 'resample'
           WHEN tu.negative OR coalesce(fu.negative, false) THEN 'negative'
           ELSE 'pending' END AS status,
      greatest(tu.decided, fu.decided) AS decided
    FROM tu LEFT JOIN fu ON fu.person = tu.person AND fu.round = tu.round
  )
  INSERT INTO person_rounds AS o (person, round, status, decided_at)
  SELECT per.person, per.round, per.status,
         CASE WHEN per.status IN ('negative', 'positive') THEN per.decided END
  FROM per
  WHERE per.status <> 'pending'
     OR EXISTS (SELECT 1 FROM person_rounds x WHERE x.person = per.person AND x.round = per.round)
  ON CONFLICT (person, round) DO UPDATE SET status = EXCLUDED.status, decided_at = EXCLUDED.decided_at
  WHERE (o.status, o.decided_at) IS DISTINCT FROM (EXCLUDED.status, EXCLUDED.decided_at);
END $$;

DROP FUNCTION tl_refresh(text[], text[], text[]);

-- p_person_tubes: every person of these tubes is re-derived whole. p_sample_persons: persons
-- with a new sample in a tube without an outcome; re-derived whole only if they have
-- follow-ups (the new sample may be the single tube a follow-up links to).
CREATE FUNCTION tl_refresh(p_tubes text[], p_boxes text[], p_person_tubes text[],
                           p_sample_persons text[] DEFAULT '{}')
RETURNS TABLE (subject text, type text) LANGUAGE plpgsql AS $$
DECLARE
  v_boxes text[];
  v_tubes text[];
  v_persons text[];   -- re-derived whole: follow-ups, status, person_repeat
  v_light text[];     -- a new sample in a tube without an outcome, no follow-ups: person_repeat
  v_all text[];       -- both
  v_subjects text[];
BEGIN
  v_boxes := ARRAY(SELECT DISTINCT p_boxes[i] FROM generate_subscripts(p_boxes, 1) i);
  v_tubes := ARRAY(SELECT p_tubes[i] FROM generate_subscripts(p_tubes, 1) i
                   UNION SELECT t.code FROM tubes t WHERE t.box = ANY (v_boxes)
                   UNION SELECT r.tube FROM receipts r WHERE r.box = ANY (v_boxes));
  v_persons := ARRAY(SELECT DISTINCT s.person FROM samples s WHERE s.tube = ANY (p_person_tubes));
  v_light := ARRAY(SELECT n FROM (SELECT unnest(p_sample_persons) EXCEPT SELECT unnest(v_persons)) x(n)
                   WHERE NOT EXISTS (SELECT 1 FROM followups f WHERE f.person = x.n));
  v_persons := v_persons || ARRAY(SELECT unnest(p_sample_persons)
                                  EXCEPT SELECT unnest(v_persons) EXCEPT SELECT unnest(v_light));
  v_all := v_persons || v_light;
  -- every anomaly subject in reach, so the live-anomaly index finds them with one probe each
  v_subjects := v_tubes || v_boxes ||
                ARRAY(SELECT DISTINCT s.round || '/' || s.person FROM samples s
                      WHERE s.person = ANY (v_all));

  -- (no person to re-derive, as for most single samples: no statements, and none of the
  -- follow-ups' statement triggers, which fire even for no rows)
  IF cardinality(v_persons) > 0 THEN
    -- Follow-ups: a pooled positive calls every person of the tube back for a single-tube test;
    -- an invalid result or a rejected tube calls them back to be sampled again. Each links to the
    -- person's earliest single-tube sample taken after the calling sample (by event time) and
    -- closes with that tube's result. A result amended away removes its follow-ups (below).
    WITH want AS (
      SELECT s.tube, s.person, s.at, t.round, t.region, s.site,
             CASE WHEN t.result = 'positive' AND t.capacity > 1 THEN 'awaiting_recheck'
                  WHEN t.result = 'invalid' THEN 'resample'
                  WHEN t.result IS NULL AND t.rejected_at IS NOT NULL THEN 'resample' END AS kind,
             coalesce(t.result_at, t.rejected_at) AS opened_at
      FROM samples s JOIN tubes t ON t.code = s.tube
      WHERE s.person = ANY (v_persons)
    ), linked AS (
      SELECT w.*, l.tube AS ltube, l.at AS lat, lt.result AS lresult,
             coalesce(lt.result_at, lt.rejected_at) AS ldone,
             CASE WHEN lt.result IS NOT NULL THEN lt.result
                  WHEN lt.rejected_at IS NOT NULL THEN 'rejected' END AS outcome
      FROM want w
      LEFT JOIN LATERAL (
        SELECT s2.tube, s2.at FROM samples s2 JOIN tubes t2 ON t2.code = s2.tube
        WHERE s2.person = w.person AND t2.capacity = 1 AND s2.at > w.at AND s2.tube <> w.tube
        ORDER BY s2.at, s2.tube LIMIT 1) l ON true
      LEFT JOIN tubes lt ON lt.code = l.tube
      WHERE w.kind IS NOT NULL
    )
    INSERT INTO followups AS f (tube, person, round, region, site, kind, opened_at, state,
                                linked_tube, linked_at, result, closed_at)
    SELECT tube, person, round, region, site, kind, opened_at,
           CASE WHEN outcome IS NULL THEN 'open' ELSE 'closed' END, ltube, lat, outcome, ldone
    FROM linked
    ON CONFLICT (tube, person) DO UPDATE SET
      kind = EXCLUDED.kind, opened_at = EXCLUDED.opened_at, state = EXCLUDED.state,
      linked_tube = EXCLUDED.linked_tube, linked_at = EXCLUDED.linked_at,
      result = EXCLUDED.result, closed_at = EXCLUDED.closed_at
    WHERE (f.kind, f.opened_at, f.state, f.linked_tube, f.linked_at, f.result, f.closed_at)
          IS DISTINCT FROM (EXCLUDED.kind, EXCLUDED.opened_at, EXCLUDED.state, EXCLUDED.linked_tube,
                            EXCLUDED.linked_at, EXCLUDED.result, EXCLUDED.closed_at);

    -- A follow-up whose cause is gone (the result was amended) is derived state without a
    -- reason: it goes, so that the same facts give the same follow-ups in any arrival order.
    -- The amendment itself stays in the event log.
    DELETE FROM followups f
    WHERE f.person = ANY (v_persons)
      AND NOT EXISTS (
        SELECT 1 FROM tubes t WHERE t.code = f.tube
          AND ((t.result = 'positive' AND t.capacity > 1) OR t.result = 'invalid'
               OR (t.result IS NULL AND t.rejected_at IS NOT NULL)));
  END IF;

  RETURN QUERY
  WITH want (subject_kind, subject, type, region, round, site, detail) AS (
    SELECT 'tube', t.code, 'seal_count_mismatch', t.region, t.round, t.site,
           jsonb_build_object('counted', t.seal_count, 'bound', t.sampled)
    FROM tubes t WHERE t.code = ANY (v_tubes) AND t.sealed_at IS NOT NULL
      AND t.seal_count IS NOT NULL AND t.seal_count <> t.sampled
    UNION ALL
    SELECT 'tube', t.code, 'custody_gap', t.region, t.round, t.site, jsonb_build_object('missing', 'receipt')
    FROM tubes t WHERE t.code = ANY (v_tubes)
      AND (t.result IS NOT NULL OR t.rejected_at IS NOT NULL) AND t.received_at IS NULL
    UNION ALL
    SELECT 'tube', t.code, 'orphan_result', t.region, t.round, t.site, '{}'::jsonb
    FROM tubes t WHERE t.code = ANY (v_tubes) AND t.result IS NOT NULL AND t.opened_at IS NULL
    UNION ALL
    SELECT 'tube', t.code, 'tube_missing', t.region, t.round, t.site, jsonb_build_object('box', t.box)
    FROM tubes t JOIN boxes b ON b.code = t.box
    WHERE t.code = ANY (v_tubes) AND b.received_at IS NOT NULL AND t.received_at IS NULL
    UNION ALL
    SELECT DISTINCT ON (t.code) 'tube', t.code, 'tube_unexpected', t.region, t.round, t.site,
           jsonb_build_object('box', r.box)
    FROM receipts r JOIN boxes b ON b.code = r.box JOIN tubes t ON t.code = r.tube
    WHERE r.tube = ANY (v_tubes) AND b.sealed_at IS NOT NULL AND t.box IS DISTINCT FROM r.box
    UNION ALL
    SELECT 'box', b.code, 'seal_count_mismatch', b.region, tl_box_round(b.code), b.site,
           jsonb_build_object('counted', b.seal_count, 'packed', n.packed)
    FROM boxes b CROSS JOIN LATERAL (SELECT count(*) AS packed FROM tubes x WHERE x.box = b.code) n
    WHERE b.code = ANY (v_boxes) AND b.sealed_at IS NOT NULL AND b.seal_count IS NOT NULL
      AND b.seal_count <> n.packed
    UNION ALL
    SELECT 'box', b.code, 'custody_gap', b.region, tl_box_round(b.code), b.site,
           jsonb_build_object('missing', CASE WHEN b.sealed_at IS NULL THEN 'box.seal' ELSE 'box.pickup' END)
    FROM boxes b WHERE b.code = ANY (v_boxes)
      AND ((b.sealed_at IS NULL AND (b.picked_up_at IS NOT NULL OR b.delivered_at IS NOT NULL
                                     OR b.received_at IS NOT NULL))
           OR (b.picked_up_at IS NULL AND (b.delivered_at IS NOT NULL OR b.received_at IS NOT NULL)))
    UNION ALL
    SELECT 'box', b.code, 'wrong_lab', b.region, tl_box_round(b.code), b.site,
           jsonb_build_object('destination', b.dest_lab, 'lab', coalesce(
             CASE WHEN b.received_lab <> b.dest_lab THEN b.received_lab END, b.delivered_lab))
    FROM boxes b WHERE b.code = ANY (v_boxes) AND b.dest_lab IS NOT NULL
      AND (b.delivered_lab <> b.dest_lab OR b.received_lab <> b.dest_lab)
    UNION ALL
    SELECT 'person', s.round || '/' || s.person, 'person_repeat',
           (array_agg(t.region ORDER BY s.at DESC))[1], s.round, (array_agg(s.site ORDER BY s.at DESC))[1],
           jsonb_build_object('samples', count(*))
    FROM samples s JOIN tubes t ON t.code = s.tube
    WHERE s.person = ANY (v_all)
      AND NOT EXISTS (SELECT 1 FROM followups f WHERE f.person = s.person
                        AND f.linked_tube = s.tube)
    GROUP BY s.round, s.person HAVING count(*) >= 2
  ), scope AS (
    SELECT a.subject, a.id FROM anomalies a
    WHERE a.subject = ANY (v_subjects) AND a.state IN ('open', 'acknowledged')
      AND a.type NOT IN ('overdue_transport', 'overdue_test', 'overdue_followup')
      AND ((a.subject_kind = 'tube' AND a.subject = ANY (v_tubes))
        OR (a.subject_kind = 'box' AND a.subject = ANY (v_boxes))
        OR (a.subject_kind = 'person' AND split_part(a.subject, '/', 2) = ANY (v_all)))
      AND NOT EXISTS (SELECT 1 FROM want w WHERE w.subject = a.subject AND w.type = a.type)
  ), cleared AS (
    UPDATE anomalies a SET state = 'auto_resolved', resolved_at = now()
    FROM scope s WHERE a.subject = s.subject AND a.id = s.id
    RETURNING a.id
  ), moved AS (
    -- a live anomaly follows its subject: a placeholder tube claimed by a site changes region
    UPDATE anomalies a SET region = w.region, round = w.round, site = w.site, detail = w.detail
    FROM want w
    WHERE a.subject = ANY (v_subjects)  -- (every wanted subject is one; the index then serves)
      AND a.subject = w.subject AND a.type = w.type AND a.state IN ('open', 'acknowledged')
      AND (a.region, a.round, a.site, a.detail) IS DISTINCT FROM (w.region, w.round, w.site, w.detail)
    RETURNING a.id
  ), opened AS (
    INSERT INTO anomalies (subject, subject_kind, type, region, round, site, detail)
    SELECT w.subject, w.subject_kind, w.type, w.region, w.round, w.site, w.detail FROM want w
    WHERE NOT EXISTS (SELECT 1 FROM anomalies a WHERE a.subject = ANY (v_subjects)
                        AND a.subject = w.subject AND a.type = w.type
                        AND a.state IN ('open', 'acknowledged', 'resolved'))
    RETURNING anomalies.subject, anomalies.type
  )
  SELECT o.subject, o.type FROM opened o;

  -- Overdue anomalies end as soon as their object moves on (the sweep opens them).
  PERFORM tl_overdue_clear(v_tubes, v_boxes, v_persons);
  -- Person statuses (a light person's stays what it was) and the dashboards' roll-ups of
  -- every (round, site) touched (sql/006_stats.sql).
  IF cardinality(v_persons) > 0 THEN
    PERFORM tl_person_rounds_refresh(v_persons);
  END IF;
  PERFORM tl_rollup(ARRAY(SELECT DISTINCT jsonb_build_array(t.round, t.site)::text
                          FROM tubes t WHERE t.code = ANY (v_tubes) AND t.site IS NOT NULL
                          UNION SELECT jsonb_build_array(s.round, s.site)::text
                          FROM samples s WHERE s.person = ANY (v_persons)));
END $$;

-- Writes the facts of a batch decided by the rules (jsonb arrays of rows with the tables'
-- column names), re-derives, records each event's anomalies and returns them.
-- p: {"events": [...], "persons": [...], "tubes": [...], "boxes": [...], "samples": [...],
--     "receipts": [...], "attribution": [{"subject", "event"}...]}
CREATE OR REPLACE FUNCTION tl_write(p jsonb) RETURNS TABLE (event uuid, type text)
LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $$
DECLARE
  v_tubes text[];
  v_boxes text[];
  v_person_tubes text[];
  v_sample_persons text[];
  v_opened jsonb;
  v_attributed jsonb;
BEGIN
  INSERT INTO persons AS o
  SELECT * FROM jsonb_populate_recordset(NULL::persons, p -> 'persons')
  ON CONFLICT (hmac) DO UPDATE SET
    id_enc = EXCLUDED.id_enc, id_masked = EXCLUDED.id_masked,
    name_enc = coalesce(EXCLUDED.name_enc, o.name_enc),
    name_masked = coalesce(EXCLUDED.name_masked, o.name_masked),
    phone_enc = coalesce(EXCLUDED.phone_enc, o.phone_enc),
    phone_masked = coalesce(EXCLUDED.phone_masked, o.phone_masked),
    updated_at = now();

  v_tubes := ARRAY(SELECT x ->> 'code' FROM jsonb_array_elements(p -> 'tubes') x);
  v_boxes := ARRAY(SELECT x ->> 'code' FROM jsonb_array_elements(p -> 'boxes') x);

  -- the tubes whose persons all need re-deriving: those whose capacity, result or rejection
  -- this write changes (read before the upsert; a new tube has no persons but this write's),
  -- and those that get a sample while they have an outcome (a site's late upload)
  v_person_tubes := ARRAY(
    SELECT n.code FROM jsonb_populate_recordset(NULL::tubes, p -> 'tubes') n
    JOIN tubes t ON t.code = n.code AND t.code = ANY (v_tubes)  -- (by key, not a scan of tubes)
    WHERE (t.capacity, t.result, t.result_at, t.rejected_at)
          IS DISTINCT FROM (n.capacity, n.result, n.result_at, n.rejected_at)
    UNION
    SELECT x ->> 'tube' FROM jsonb_array_elements(p -> 'samples') x
    WHERE NOT EXISTS (SELECT 1 FROM jsonb_array_elements(p -> 'tubes') n
                      WHERE n ->> 'code' = x ->> 'tube'
                        AND n ->> 'result' IS NULL AND n ->> 'rejected_at' IS NULL));
  -- the persons of the other new samples: a sample in a tube without an outcome
  v_sample_persons := ARRAY(
    SELECT DISTINCT x ->> 'person' FROM jsonb_array_elements(p -> 'samples') x
    WHERE (x ->> 'tube') <> ALL (v_person_tubes));

  INSERT INTO tubes AS o
  SELECT * FROM jsonb_populate_recordset(NULL::tubes, p -> 'tubes')
  ON CONFLICT (code) DO UPDATE SET
    region = EXCLUDED.region, round = EXCLUDED.round, site = EXCLUDED.site,
    capacity = EXCLUDED.capacity, opened_at = EXCLUDED.opened_at, sampled = EXCLUDED.sampled,
    first_sample_at = EXCLUDED.first_sample_at, sealed_at = EXCLUDED.sealed_at,
    seal_count = EXCLUDED.seal_count, box = EXCLUDED.box, packed_at = EXCLUDED.packed_at,
    received_at = EXCLUDED.received_at, received_lab = EXCLUDED.received_lab,
    received_box = EXCLUDED.received_box, rejected_at = EXCLUDED.rejected_at,
    reject_reason = EXCLUDED.reject_reason, rejected_lab = EXCLUDED.rejected_lab,
    result = EXCLUDED.result, result_at = EXCLUDED.result_at, result_lab = EXCLUDED.result_lab,
    ct = EXCLUDED.ct;

  INSERT INTO boxes AS o
  SELECT * FROM jsonb_populate_recordset(NULL::boxes, p -> 'boxes')
  ON CONFLICT (code) DO UPDATE SET
    region = EXCLUDED.region, site = EXCLUDED.site, packed_at = EXCLUDED.packed_at,
    sealed_at = EXCLUDED.sealed_at, dest_lab = EXCLUDED.dest_lab, seal_count = EXCLUDED.seal_count,
    picked_up_at = EXCLUDED.picked_up_at, courier = EXCLUDED.courier,
    delivered_at = EXCLUDED.delivered_at, delivered_lab = EXCLUDED.delivered_lab,
    received_at = EXCLUDED.received_at, received_lab = EXCLUDED.received_lab;

  INSERT INTO samples SELECT * FROM jsonb_populate_recordset(NULL::samples, p -> 'samples');
  INSERT INTO receipts SELECT * FROM jsonb_populate_recordset(NULL::receipts, p -> 'receipts')
  ON CONFLICT (box, tube) DO NOTHING;
  INSERT INTO events SELECT * FROM jsonb_populate_recordset(NULL::events, p -> 'events');

  -- Derived state first; each following statement sees what the previous one wrote.
  SELECT coalesce(jsonb_agg(jsonb_build_object('subject', r.subject, 'type', r.type)), '[]')
    INTO v_opened FROM tl_refresh(v_tubes, v_boxes, v_person_tubes, v_sample_persons) r;

  -- Attribute each opened anomaly to the last event of the batch that touched its subject
  -- and is the kind of event the anomaly is about (a count mismatch to the seal, a gap to the
  -- hand-over, ...); else to the last event that touched it; a tube no event named (missing
  -- at receipt) to the last event that touched its box.
  SELECT coalesce(jsonb_agg(jsonb_build_object('subject', o.subject, 'type', o.type,
                                               'event', w.event)), '[]')
    INTO v_attributed
  FROM jsonb_to_recordset(v_opened) AS o(subject text, type text)
  CROSS JOIN LATERAL (
    WITH attribution AS (
      SELECT a ->> 'subject' AS subject, (a ->> 'event')::uuid AS event, a ->> 'etype' AS etype,
             (a ->> 'ord')::int AS ord
      FROM jsonb_array_elements(p -> 'attribution') a)
    SELECT coalesce(
      (SELECT t.event FROM attribution t WHERE t.subject = o.subject
         AND t.etype = ANY (CASE o.type
           WHEN 'seal_count_mismatch' THEN ARRAY['tube.seal', 'box.seal']
           WHEN 'custody_gap' THEN ARRAY['box.pickup', 'box.deliver', 'box.receive',
                                         'tube.reject', 'tube.result']
           WHEN 'orphan_result' THEN ARRAY['tube.result']
           WHEN 'wrong_lab' THEN ARRAY['box.deliver', 'box.receive']
           WHEN 'tube_unexpected' THEN ARRAY['box.receive']
           WHEN 'tube_missing' THEN ARRAY['box.receive']
           WHEN 'person_repeat' THEN ARRAY['sample.add']
           ELSE ARRAY[]::text[] END)
       ORDER BY t.ord DESC LIMIT 1),
      (SELECT t.event FROM attribution t WHERE t.subject = o.subject ORDER BY t.ord DESC LIMIT 1),
      (SELECT t.event FROM tubes x JOIN attribution t ON t.subject = x.box
       WHERE x.code = o.subject ORDER BY t.ord DESC LIMIT 1)) AS event) w
  WHERE w.event IS NOT NULL;

  IF v_attributed <> '[]'::jsonb THEN  -- (most writes open nothing: no statements, no triggers)
    UPDATE events e SET anomalies = x.types
    FROM (SELECT d.event, array_agg(DISTINCT d.type ORDER BY d.type) AS types
          FROM jsonb_to_recordset(v_attributed) AS d(subject text, type text, event uuid)
          GROUP BY d.event) x
    WHERE e.id = x.event;

    UPDATE anomalies a SET opened_by = d.event
    FROM jsonb_to_recordset(v_attributed) AS d(subject text, type text, event uuid)
    WHERE a.subject = ANY (ARRAY(SELECT x ->> 'subject' FROM jsonb_array_elements(v_attributed) x))
      AND a.subject = d.subject AND a.type = d.type AND a.state = 'open' AND a.opened_by IS NULL;
  END IF;

  RETURN QUERY SELECT d.event, d.type
    FROM jsonb_to_recordset(v_attributed) AS d(subject text, type text, event uuid);
END $$;
