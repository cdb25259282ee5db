-- 007: overdue anomalies, the lab arrival board and the daily ledger (DESIGN §4–5).
--
-- Overdue anomalies are opened by a periodic sweep (tl_overdue_sweep, run by a libuv timer in
-- every daemon) and closed as soon as their object moves on (tl_overdue_clear, from every
-- write, and again by the sweep). Several daemons may sweep at once: the unique index on live
-- (subject, type) makes a second insert of the same anomaly a no-op, and an advisory lock lets
-- one sweep run at a time.
--   overdue_transport  a box sealed and not received within the transport limit (a tube sealed
--                      and not packed into a sealed box: the tube itself)
--   overdue_test       a tube received and neither resulted nor rejected within the test limit
--   overdue_followup   a follow-up still open after the follow-up limit

CREATE FUNCTION tl_overdue_clear(p_tubes text[], p_boxes text[], p_persons text[])
RETURNS void LANGUAGE sql AS $$
  UPDATE anomalies a SET state = 'auto_resolved', resolved_at = now()
  WHERE a.subject = ANY (p_tubes || p_boxes ||
                         ARRAY(SELECT f.tube || '/' || f.person FROM followups f
                               WHERE f.person = ANY (p_persons)))
    AND a.state IN ('open', 'acknowledged') AND a.type LIKE 'overdue%' AND (
       (a.type = 'overdue_transport' AND a.subject_kind = 'box' AND a.subject = ANY (p_boxes)
        AND EXISTS (SELECT 1 FROM boxes b WHERE b.code = a.subject AND b.received_at IS NOT NULL))
    OR (a.type = 'overdue_transport' AND a.subject_kind = 'tube' AND a.subject = ANY (p_tubes)
        AND EXISTS (SELECT 1 FROM tubes t LEFT JOIN boxes b ON b.code = t.box WHERE t.code = a.subject
                      AND (t.received_at IS NOT NULL OR b.sealed_at IS NOT NULL)))
    OR (a.type = 'overdue_test' AND a.subject = ANY (p_tubes)
        AND EXISTS (SELECT 1 FROM tubes t WHERE t.code = a.subject
                      AND (t.result IS NOT NULL OR t.rejected_at IS NOT NULL)))
    OR (a.type = 'overdue_followup' AND split_part(a.subject, '/', 2) = ANY (p_persons)
        AND NOT EXISTS (SELECT 1 FROM followups f WHERE f.tube = split_part(a.subject, '/', 1)
                          AND f.person = split_part(a.subject, '/', 2) AND f.state = 'open')))
$$;

-- Opens what is overdue at p_now, closes what no longer is, re-counts the touched roll-ups.
-- Returns the number of anomalies opened, or -1 when another daemon is sweeping.
CREATE FUNCTION tl_overdue_sweep(p_now timestamptz, p_transport interval, p_test interval,
                                 p_followup interval) RETURNS int LANGUAGE plpgsql AS $$
DECLARE
  v_opened int;
  v_pairs text[];
BEGIN
  IF NOT pg_try_advisory_xact_lock(7420262) THEN RETURN -1; END IF;

  -- close what moved on (also what was closed by the write path meanwhile)
  WITH gone AS (
    UPDATE anomalies a SET state = 'auto_resolved', resolved_at = p_now
    WHERE a.state IN ('open', 'acknowledged') AND a.type LIKE 'overdue%' AND NOT (
         (a.type = 'overdue_transport' AND a.subject_kind = 'box' AND EXISTS (
            SELECT 1 FROM boxes b WHERE b.code = a.subject AND b.received_at IS NULL))
      OR (a.type = 'overdue_transport' AND a.subject_kind = 'tube' AND EXISTS (
            SELECT 1 FROM tubes t LEFT JOIN boxes b ON b.code = t.box WHERE t.code = a.subject
              AND t.received_at IS NULL AND b.sealed_at IS NULL))
      OR (a.type = 'overdue_test' AND EXISTS (
            SELECT 1 FROM tubes t WHERE t.code = a.subject AND t.result IS NULL AND t.rejected_at IS NULL))
      OR (a.type = 'overdue_followup' AND EXISTS (
            SELECT 1 FROM followups f WHERE f.tube = split_part(a.subject, '/', 1)
              AND f.person = split_part(a.subject, '/', 2) AND f.state = 'open')))
    RETURNING a.round, a.site
  ), due (subject, subject_kind, type, region, round, site, detail) AS (
    SELECT b.code, 'box', 'overdue_transport', b.region, tl_box_round(b.code), b.site,
           jsonb_build_object('sealed_at', b.sealed_at)
    FROM boxes b WHERE b.sealed_at IS NOT NULL AND b.received_at IS NULL
      AND b.sealed_at < p_now - p_transport
    UNION ALL
    SELECT t.code, 'tube', 'overdue_transport', t.region, t.round, t.site,
           jsonb_build_object('sealed_at', t.sealed_at)
    FROM tubes t LEFT JOIN boxes b ON b.code = t.box
    WHERE t.sealed_at IS NOT NULL AND t.received_at IS NULL AND b.sealed_at IS NULL
      AND t.sealed_at < p_now - p_transport
    UNION ALL
    SELECT t.code, 'tube', 'overdue_test', t.region, t.round, t.site,
           jsonb_build_object('received_at', t.received_at)
    FROM tubes t WHERE t.received_at IS NOT NULL AND t.result IS NULL AND t.rejected_at IS NULL
      AND t.received_at < p_now - p_test
    UNION ALL
    SELECT f.tube || '/' || f.person, 'followup', 'overdue_followup', f.region, f.round, f.site,
           jsonb_build_object('opened_at', f.opened_at, 'kind', f.kind)
    FROM followups f WHERE f.state = 'open' AND f.opened_at < p_now - p_followup
  ), opened AS (
    INSERT INTO anomalies (subject, subject_kind, type, region, round, site, detail, opened_at)
    SELECT d.subject, d.subject_kind, d.type, d.region, d.round, d.site, d.detail, p_now FROM due d
    WHERE NOT EXISTS (SELECT 1 FROM anomalies a WHERE a.subject = d.subject AND a.type = d.type
                        AND a.state IN ('open', 'acknowledged', 'resolved'))
    ON CONFLICT (subject, type) WHERE state IN ('open', 'acknowledged') DO NOTHING
    RETURNING round, site
  )
  SELECT (SELECT count(*) FROM opened),
         ARRAY(SELECT DISTINCT jsonb_build_array(x.round, x.site)::text
               FROM (SELECT round, site FROM opened UNION SELECT round, site FROM gone) x
               WHERE x.round IS NOT NULL AND x.site IS NOT NULL)
    INTO v_opened, v_pairs;
  PERFORM tl_rollup(v_pairs);
  RETURN v_opened;
END $$;

-- Boxes on their way to a lab (倒计时): picked up (or delivered) and not yet received, with an
-- expected arrival = pickup + the median transit time of the site → lab route so far (pickup
-- to delivery, else to receipt), or p_default when the route has no history yet.
CREATE FUNCTION tl_arrivals_json(p_lab text, p_default interval) RETURNS jsonb LANGUAGE sql STABLE AS $$
  WITH heading AS (
    SELECT b.*, coalesce(b.dest_lab, b.delivered_lab) AS lab FROM boxes b
    WHERE b.received_at IS NULL AND (b.picked_up_at IS NOT NULL OR b.delivered_at IS NOT NULL)
      AND coalesce(b.delivered_lab, b.dest_lab) = p_lab
  ), eta AS (
    SELECT h.*, (SELECT count(*) FROM tubes t WHERE t.box = h.code) AS tubes,
      (SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM
                coalesce(x.delivered_at, x.received_at) - x.picked_up_at))
       FROM boxes x WHERE x.site = h.site AND coalesce(x.received_lab, x.delivered_lab) = p_lab
         AND x.picked_up_at IS NOT NULL AND coalesce(x.delivered_at, x.received_at) > x.picked_up_at) AS median_s
    FROM heading h
  )
  SELECT jsonb_build_object('lab', p_lab, 'arrivals', coalesce(jsonb_agg(jsonb_build_object(
      'box', e.code, 'site', e.site, 'courier', e.courier, 'tubes', e.tubes,
      'state', CASE WHEN e.delivered_at IS NOT NULL THEN 'delivered' ELSE 'in_transit' END,
      'picked_up_at', e.picked_up_at, 'delivered_at', e.delivered_at,
      'expected_at', coalesce(e.delivered_at, e.picked_up_at + coalesce(make_interval(secs => e.median_s), p_default)),
      'eta_basis', CASE WHEN e.delivered_at IS NOT NULL THEN 'delivered'
                        WHEN e.median_s IS NOT NULL THEN 'route_median' ELSE 'default' END)
    ORDER BY coalesce(e.delivered_at, e.picked_up_at + coalesce(make_interval(secs => e.median_s), p_default)), e.code), '[]'))
  FROM eta e
$$;

-- The daily ledger (双台账): per site of the region, the day's counts at each stage side by
-- side, and every difference by name (tube or box) so that each gap can be chased.
CREATE FUNCTION tl_ledger_json(p_region text, p_rounds text[]) RETURNS jsonb LANGUAGE sql STABLE AS $$
  WITH sites_in AS (
    SELECT s.code, s.name FROM sites s WHERE left(s.township, length(p_region)) = p_region OR s.code = p_region
  ), per AS (
    SELECT si.code, si.name,
      (SELECT count(DISTINCT x.person) FROM samples x WHERE x.site = si.code AND x.round = ANY (p_rounds)) AS persons_sampled,
      (SELECT count(*) FROM tubes t WHERE t.site = si.code AND t.round = ANY (p_rounds) AND t.sealed_at IS NOT NULL) AS tubes_sealed,
      (SELECT count(*) FROM tubes t WHERE t.site = si.code AND t.round = ANY (p_rounds) AND t.received_at IS NOT NULL) AS tubes_received,
      (SELECT count(*) FROM tubes t WHERE t.site = si.code AND t.round = ANY (p_rounds) AND t.result IS NOT NULL) AS tubes_resulted,
      (SELECT count(DISTINCT x.person) FROM samples x JOIN person_rounds r ON r.person = x.person AND r.round = x.round
        WHERE x.site = si.code AND x.round = ANY (p_rounds) AND r.status IN ('negative', 'positive')) AS persons_returned,
      (SELECT coalesce(jsonb_agg(t.code ORDER BY t.code), '[]') FROM tubes t WHERE t.site = si.code
        AND t.round = ANY (p_rounds) AND t.sampled > 0 AND t.sealed_at IS NULL) AS not_sealed,
      (SELECT coalesce(jsonb_agg(t.code ORDER BY t.code), '[]') FROM tubes t WHERE t.site = si.code
        AND t.round = ANY (p_rounds) AND t.sealed_at IS NOT NULL AND t.received_at IS NULL) AS sealed_not_received,
      (SELECT coalesce(jsonb_agg(t.code ORDER BY t.code), '[]') FROM tubes t WHERE t.site = si.code
        AND t.round = ANY (p_rounds) AND t.received_at IS NOT NULL AND t.result IS NULL
        AND t.rejected_at IS NULL) AS received_not_resulted,
      (SELECT coalesce(jsonb_agg(t.code ORDER BY t.code), '[]') FROM tubes t WHERE t.site = si.code
        AND t.round = ANY (p_rounds) AND t.rejected_at IS NOT NULL AND t.result IS NULL) AS rejected,
      (SELECT coalesce(jsonb_agg(DISTINCT b.code), '[]') FROM boxes b JOIN tubes t ON t.box = b.code
        WHERE b.site = si.code AND t.round = ANY (p_rounds) AND b.sealed_at IS NOT NULL AND b.received_at IS NULL) AS boxes_not_received
    FROM sites_in si
  )
  SELECT jsonb_build_object('region', p_region, 'sites', coalesce(jsonb_agg(jsonb_build_object(
      'code', p.code, 'name', p.name,
      'counts', jsonb_build_object('persons_sampled', p.persons_sampled, 'tubes_sealed', p.tubes_sealed,
         'tubes_received', p.tubes_received, 'tubes_resulted', p.tubes_resulted,
         'persons_returned', p.persons_returned),
      'differences', jsonb_build_object('tubes_not_sealed', p.not_sealed,
         'tubes_sealed_not_received', p.sealed_not_received,
         'tubes_received_not_resulted', p.received_not_resulted, 'tubes_rejected', p.rejected,
         'boxes_not_received', p.boxes_not_received,
         'persons_not_returned', p.persons_sampled - p.persons_returned))
    ORDER BY p.code), '[]'))
  FROM per p
$$;
