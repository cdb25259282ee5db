-- 005: the read side (DESIGN §5): a tube's and a box's chain of custody, a person's rounds
-- with their status, as JSON built next to the data. Every function takes the caller's role,
-- scope and region and returns NULL for an object outside it (the API answers 404: no hint
-- that it exists).

CREATE FUNCTION tl_tube_state(t tubes) RETURNS text LANGUAGE sql STABLE AS $$
  SELECT CASE
    WHEN t.result IS NOT NULL THEN 'resulted'
    WHEN t.rejected_at IS NOT NULL THEN 'rejected'
    WHEN t.received_at IS NOT NULL THEN 'received'
    WHEN b.delivered_at IS NOT NULL THEN 'delivered'
    WHEN b.picked_up_at IS NOT NULL THEN 'in_transit'
    WHEN t.box IS NOT NULL THEN 'packed'
    WHEN t.sealed_at IS NOT NULL THEN 'sealed'
    WHEN t.sampled > 0 THEN 'sampling'
    WHEN t.opened_at IS NOT NULL THEN 'opened'
    ELSE 'unknown' END
  FROM (SELECT 1) one LEFT JOIN boxes b ON b.code = t.box
$$;

CREATE FUNCTION tl_sees(p_role text, p_scope text, p_region text, o_region text, o_site text,
                        o_labs text[], o_courier text) RETURNS boolean LANGUAGE sql IMMUTABLE AS $$
  SELECT CASE p_role
    WHEN 'admin' THEN true
    WHEN 'collector' THEN o_site = p_scope
    WHEN 'courier' THEN o_courier = p_scope
    WHEN 'lab' THEN p_scope = ANY (o_labs)
    -- a reader's scope is a region (prefix) or a single site
    WHEN 'viewer' THEN CASE WHEN p_scope ~ '^[0-9]+$' THEN left(o_region, length(p_region)) = p_region
                            ELSE o_site = p_scope END
    WHEN 'supervisor' THEN CASE WHEN p_scope ~ '^[0-9]+$' THEN left(o_region, length(p_region)) = p_region
                                ELSE o_site = p_scope END
    ELSE false END
$$;

CREATE FUNCTION tl_anomaly_json(a anomalies) RETURNS jsonb LANGUAGE sql STABLE AS $$
  SELECT jsonb_build_object('id', a.id, 'type', a.type, 'state', a.state,
    'subject_kind', a.subject_kind,
    'subject', CASE WHEN a.subject_kind = 'person'
                    THEN split_part(a.subject, '/', 1) || '/' ||
                         coalesce((SELECT p.id_masked FROM persons p
                                   WHERE p.hmac = split_part(a.subject, '/', 2)), '?')
                    ELSE a.subject END,
    'region', a.region, 'round', a.round, 'detail', a.detail, 'opened_at', a.opened_at,
    'opened_by', a.opened_by, 'owner', a.owner, 'acknowledged_at', a.acknowledged_at,
    'note', a.note, 'resolved_at', a.resolved_at)
$$;

CREATE FUNCTION tl_tube_json(p_code text, p_role text, p_scope text, p_region text)
RETURNS jsonb LANGUAGE sql STABLE AS $$
  SELECT jsonb_build_object(
    'code', t.code, 'round', t.round, 'site', t.site, 'region', t.region,
    'capacity', t.capacity, 'state', tl_tube_state(t),
    'persons', (SELECT coalesce(jsonb_agg(jsonb_build_object('id_type', p.id_type,
                   'id_number', p.id_masked, 'name', p.name_masked, 'phone', p.phone_masked,
                   'sampled_at', s.at) ORDER BY s.at), '[]')
                FROM samples s JOIN persons p ON p.hmac = s.person WHERE s.tube = t.code),
    'sampled', t.sampled, 'seal_count', t.seal_count,
    'box', t.box, 'destination_lab', b.dest_lab,
    'lab', coalesce(t.received_lab, t.result_lab, t.rejected_lab),
    'result', t.result, 'ct', t.ct, 'reject_reason', t.reject_reason,
    'times', jsonb_build_object('opened_at', t.opened_at, 'first_sample_at', t.first_sample_at,
       'sealed_at', t.sealed_at, 'packed_at', t.packed_at, 'box_sealed_at', b.sealed_at,
       'picked_up_at', b.picked_up_at, 'delivered_at', b.delivered_at,
       'received_at', t.received_at, 'rejected_at', t.rejected_at, 'result_at', t.result_at),
    'timeline', (SELECT coalesce(jsonb_agg(jsonb_build_object('id', e.id, 'type', e.type,
                   'at', e.at, 'sender_role', e.sender_role, 'sender', e.sender,
                   'received_at', e.received_at, 'status', 'accepted', 'anomalies', e.anomalies)
                   ORDER BY e.at, e.received_at, e.id), '[]')
                 FROM events e
                 WHERE e.tube = t.code
                    OR (e.type IN ('box.pack', 'box.receive') AND e.body -> 'tubes' ? t.code)
                    OR (e.box IN (t.box, t.received_box) AND e.type IN ('box.seal', 'box.pickup', 'box.deliver'))),
    'anomalies', (SELECT coalesce(jsonb_agg(tl_anomaly_json(a) ORDER BY a.opened_at), '[]')
                  FROM anomalies a WHERE a.subject = t.code))
  FROM tubes t LEFT JOIN boxes b ON b.code = t.box
  WHERE t.code = p_code
    AND tl_sees(p_role, p_scope, p_region, t.region, t.site,
                ARRAY[t.received_lab, t.result_lab, t.rejected_lab], NULL)
$$;

CREATE FUNCTION tl_box_json(p_code text, p_role text, p_scope text, p_region text)
RETURNS jsonb LANGUAGE sql STABLE AS $$
  SELECT jsonb_build_object(
    'code', b.code, 'site', b.site, 'region', b.region,
    'destination_lab', b.dest_lab, 'receiving_lab', b.received_lab,
    'delivered_lab', b.delivered_lab, 'courier', b.courier,
    'state', CASE WHEN b.received_at IS NOT NULL THEN 'received'
                  WHEN b.delivered_at IS NOT NULL THEN 'delivered'
                  WHEN b.picked_up_at IS NOT NULL THEN 'in_transit'
                  WHEN b.sealed_at IS NOT NULL THEN 'sealed'
                  WHEN b.site IS NOT NULL THEN 'open' ELSE 'unknown' END,
    'seal_count', b.seal_count,
    'manifest', (SELECT coalesce(jsonb_agg(t.code ORDER BY t.code), '[]') FROM tubes t WHERE t.box = b.code),
    'received', (SELECT coalesce(jsonb_agg(r.tube ORDER BY r.tube), '[]') FROM receipts r WHERE r.box = b.code),
    'missing', CASE WHEN b.received_at IS NULL THEN '[]'::jsonb ELSE
                 (SELECT coalesce(jsonb_agg(t.code ORDER BY t.code), '[]') FROM tubes t
                  WHERE t.box = b.code AND t.received_at IS NULL) END,
    'unexpected', (SELECT coalesce(jsonb_agg(r.tube ORDER BY r.tube), '[]') FROM receipts r
                   JOIN tubes t ON t.code = r.tube WHERE r.box = b.code AND t.box IS DISTINCT FROM b.code),
    'times', jsonb_build_object('packed_at', b.packed_at, 'sealed_at', b.sealed_at,
       'picked_up_at', b.picked_up_at, 'delivered_at', b.delivered_at, 'received_at', b.received_at),
    'timeline', (SELECT coalesce(jsonb_agg(jsonb_build_object('id', e.id, 'type', e.type,
                   'at', e.at, 'sender_role', e.sender_role, 'sender', e.sender,
                   'received_at', e.received_at, 'status', 'accepted', 'anomalies', e.anomalies)
                   ORDER BY e.at, e.received_at, e.id), '[]')
                 FROM events e WHERE e.box = b.code),
    'anomalies', (SELECT coalesce(jsonb_agg(tl_anomaly_json(a) ORDER BY a.opened_at), '[]')
                  FROM anomalies a WHERE a.subject = b.code))
  FROM boxes b
  WHERE b.code = p_code
    AND tl_sees(p_role, p_scope, p_region, b.region, b.site,
                ARRAY[b.dest_lab, b.delivered_lab, b.received_lab], b.courier)
$$;

-- A person's status in each round (DESIGN §3), judged from facts:
-- positive (a single-tube positive), awaiting_recheck / resample (an open follow-up),
-- negative (a negative result that answers the person), else pending. The result is
-- returned once the status is final.
CREATE FUNCTION tl_person_json(p_hmac text, p_role text, p_region text, p_site text)
RETURNS jsonb LANGUAGE sql STABLE AS $$
  WITH visible AS (
    SELECT s.*, t.capacity, t.result, t.result_at, t.region AS tregion, t.rejected_at
    FROM samples s JOIN tubes t ON t.code = s.tube
    WHERE s.person = p_hmac
      AND (p_role = 'admin' OR left(t.region, length(p_region)) = p_region)
      AND (p_site = '' OR s.site = p_site)
  ), fu AS (
    SELECT f.* FROM followups f WHERE f.person = p_hmac
      AND f.tube IN (SELECT tube FROM visible)
  ), per_round AS (
    SELECT v.round,
      CASE
        WHEN bool_or(v.capacity = 1 AND v.result = 'positive')
          OR EXISTS (SELECT 1 FROM fu WHERE fu.round = v.round AND fu.result = 'positive') THEN 'positive'
        WHEN EXISTS (SELECT 1 FROM fu WHERE fu.round = v.round AND fu.state = 'open'
                       AND fu.kind = 'awaiting_recheck') THEN 'awaiting_recheck'
        WHEN EXISTS (SELECT 1 FROM fu WHERE fu.round = v.round AND fu.state = 'open') THEN 'resample'
        WHEN bool_or(v.result = 'negative')
          OR EXISTS (SELECT 1 FROM fu WHERE fu.round = v.round AND fu.result = 'negative') THEN 'negative'
        ELSE 'pending' END AS status,
      greatest(max(v.result_at) FILTER (WHERE v.result IN ('negative', 'positive')),
               (SELECT max(fu.closed_at) FROM fu WHERE fu.round = v.round
                  AND fu.result IN ('negative', 'positive'))) AS decided_at
    FROM visible v GROUP BY v.round
  )
  SELECT jsonb_build_object(
    'person', jsonb_build_object('id_type', p.id_type, 'id_number', p.id_masked,
                                 'name', p.name_masked, 'phone', p.phone_masked),
    'rounds', (SELECT coalesce(jsonb_agg(jsonb_build_object(
        'round', r.round, 'day', o.day, 'status', r.status,
        'result', CASE WHEN r.status IN ('negative', 'positive') THEN r.status END,
        'result_at', CASE WHEN r.status IN ('negative', 'positive') THEN r.decided_at END,
        'samples', (SELECT jsonb_agg(jsonb_build_object('tube', v.tube, 'site', v.site,
                       'sampled_at', v.at, 'capacity', v.capacity, 'tube_result', v.result,
                       'tube_result_at', v.result_at) ORDER BY v.at)
                    FROM visible v WHERE v.round = r.round),
        'followups', (SELECT coalesce(jsonb_agg(jsonb_build_object('tube', f.tube, 'kind', f.kind,
                         'state', f.state, 'opened_at', f.opened_at, 'linked_tube', f.linked_tube,
                         'result', f.result, 'closed_at', f.closed_at) ORDER BY f.opened_at), '[]')
                      FROM fu f WHERE f.round = r.round))
        ORDER BY o.day DESC, r.round), '[]')
      FROM per_round r JOIN rounds o ON o.code = r.round))
  FROM persons p
  WHERE p.hmac = p_hmac AND EXISTS (SELECT 1 FROM visible)
$$;
