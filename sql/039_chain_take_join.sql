-- 039: the sealer's take names the partitions with one join instead of a function call each.
--
-- tl_chain_take (sql/036) called tl_chain_partition once per sender and day. That SQL
-- function looks the sender up in sites, couriers or labs with a sub-select, which PostgreSQL
-- does not inline: each call is a statement of its own, with its executor set up and torn
-- down. Single-event requests from 400 sites put ~400 senders into every take: a take of
-- 1,000 events took 33.6 ms, and the same take with the join 18.6-20.0 ms, the same rows in
-- the same order (psql on a benchmark cluster, a transaction rolled back after each take,
-- docs/PERFORMANCE.md, thirteenth update). The sealer's takes run beside the ingest on the
-- same two cores, every seal interval, so their length is one of the bursts in a single
-- scan's p99. The partition is still the sender's county and the day of the event's
-- receipt in p_tz, '000000' for a sender that is in no table; tests/db/schema_test.sql holds
-- the take to tl_chain_partition for every role. The body is otherwise sql/036's.
CREATE OR REPLACE FUNCTION tl_chain_take(p_max int, p_tz text, p_careful boolean DEFAULT true)
RETURNS TABLE (partition text, head_seq bigint, head_link text, ev events)
LANGUAGE plpgsql SET work_mem = '64MB' AS $$
BEGIN
  IF NOT pg_try_advisory_xact_lock(7420264) THEN
    RETURN QUERY SELECT NULL::text, -1::bigint, NULL::text, NULL::events;
    RETURN;
  END IF;
  RETURN QUERY
  WITH taken AS (
    DELETE FROM chain_pending
    WHERE ctid = ANY (ARRAY(SELECT ctid FROM chain_pending LIMIT p_max))
    RETURNING event_id
  ), todo AS (
    SELECT e AS row, e.id, e.sender_role AS role, e.sender, e.received_at AS received,
           (e.received_at AT TIME ZONE p_tz)::date AS day
    FROM (SELECT DISTINCT t.event_id FROM taken t) t LEFT JOIN events e ON e.id = t.event_id
    WHERE NOT p_careful OR NOT EXISTS (SELECT 1 FROM chain_links l WHERE l.event_id = t.event_id)
  ), parts AS MATERIALIZED (
    -- each sender's county by one join, as tl_chain_partition names it (sql/010)
    SELECT jsonb_object_agg(g.role || '|' || g.sender || '|' || g.day,
             coalesce(CASE g.role WHEN 'collector' THEN left(s.township, 6)
                                  WHEN 'courier' THEN c.county
                                  WHEN 'lab' THEN l.county END, '000000')
             || '/' || to_char(g.day, 'YYYY-MM-DD')) AS map
    FROM (SELECT DISTINCT d.role, d.sender, d.day FROM todo d WHERE d.id IS NOT NULL) g
    LEFT JOIN sites s ON g.role = 'collector' AND s.code = g.sender
    LEFT JOIN couriers c ON g.role = 'courier' AND c.code = g.sender
    LEFT JOIN labs l ON g.role = 'lab' AND l.code = g.sender
  ), placed AS (
    -- (an event that no longer exists has no key, and no partition)
    SELECT d.*, (SELECT p.map FROM parts p) ->> (d.role || '|' || d.sender || '|' || d.day) AS part
    FROM todo d
  )
  SELECT d.part, CASE WHEN d.id IS NOT NULL THEN coalesce(h.seq, 0) END,
         CASE WHEN d.id IS NOT NULL
              THEN encode(coalesce(h.link, decode(repeat('00', 32), 'hex')), 'hex') END,
         d.row
  FROM placed d
  LEFT JOIN chain_heads h ON h.partition = d.part
  ORDER BY d.part COLLATE "C", d.received, d.id;
END $$;
