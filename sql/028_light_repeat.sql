-- 028: person_repeat is derived only for persons sampled more than once in a round.
--
-- tl_refresh (sql/023, sql/024) derived person_repeat for every person in a group's reach:
-- the persons of the new samples and of the tubes whose outcome changed. For each of them that
-- took two walks over the person's samples (the anomaly subjects in reach, and the
-- person_repeat branch of the anomaly query with its joins to tubes and follow-ups): with
-- ~1,000 persons in a group, ~11 of the ~49 ms tl_refresh took (auto_explain on a benchmark
-- cluster, docs/PERFORMANCE.md, seventh update). Almost every person has one sample in the
-- round, and for them the answer is known before the walk.
--
-- Why: samples are only ever inserted, so a person with one sample in a round never had two
-- there, and person_repeat counts a person's samples in a round (less those a follow-up links
-- to), so it needs two. No person_repeat can be opened, moved or ended for such a person, and
-- it is the only anomaly about a person. One count per person over the samples index now
-- finds those sampled more than once; they are derived exactly as before. Follow-ups and
-- statuses are re-derived for the same persons as before. The body is otherwise sql/024's.

-- sql/024's, person_repeat for the persons sampled more than once in a round
CREATE OR REPLACE FUNCTION tl_refresh(p_tubes text[], p_boxes text[], p_person_tubes text[],
                           p_sample_persons text[] DEFAULT '{}')
RETURNS TABLE (subject text, type text) LANGUAGE plpgsql AS $$
DECLARE
  v_boxes text[];
  v_tubes text[];
  v_persons text[];   -- re-derived whole: follow-ups, status, person_repeat
  v_light text[];     -- a new sample in a tube without an outcome, no follow-ups: person_repeat
  v_again text[];     -- of both, those sampled more than once in a round: person_repeat
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
  -- (one count per person; the samples index holds (person, round))
  v_again := ARRAY(SELECT DISTINCT s.person FROM samples s
                   WHERE s.person = ANY (v_persons || v_light)
                   GROUP BY s.person, s.round HAVING count(*) > 1);
  -- every anomaly subject in reach, so the live-anomaly index finds them with one probe each
  v_subjects := v_tubes || v_boxes ||
                ARRAY(SELECT DISTINCT s.round || '/' || s.person FROM samples s
                      WHERE s.person = ANY (v_again));

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
    WHERE f.person IN (SELECT unnest(v_persons))
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
    WHERE s.person = ANY (v_again)
      AND NOT EXISTS (SELECT 1 FROM followups f WHERE f.person = s.person
                        AND f.linked_tube = s.tube)
    GROUP BY s.round, s.person HAVING count(*) >= 2
  ), scope AS (
    SELECT a.subject, a.id FROM anomalies a
    WHERE a.subject = ANY (v_subjects) AND a.state IN ('open', 'acknowledged')
      AND a.type NOT IN ('overdue_transport', 'overdue_test', 'overdue_followup')
      AND ((a.subject_kind = 'tube' AND a.subject = ANY (v_tubes))
        OR (a.subject_kind = 'box' AND a.subject = ANY (v_boxes))
        OR (a.subject_kind = 'person' AND split_part(a.subject, '/', 2) = ANY (v_again)))
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
