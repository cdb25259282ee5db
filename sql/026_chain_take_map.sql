-- 026: the sealer's take finds each event's partition in a map, not by a join the planner
-- cannot size.
--
-- tl_chain_take (sql/018) joined the taken events with their (role, sender, day) partitions.
-- The planner sizes the taken set from an array it takes for ten elements, so it joined by a
-- nested loop: events x partitions comparisons. With batches (a take of ~1,000 events from a
-- few senders) that is cheap; with single-event requests a take holds one or two events of
-- each of hundreds of sites: 1,000 x 200 = 200,000 comparisons, 42 of the take's 89 ms
-- (EXPLAIN ANALYZE on a benchmark cluster). The sealer then cost ~90 µs per event against ~30
-- with batches. Now the partitions are one jsonb object keyed by role, sender and day, and
-- each event looks its key up: 35 ms for the same take. The rows, their order and the lock
-- are those of sql/018; the body is otherwise sql/018's.
CREATE OR REPLACE FUNCTION tl_chain_take(p_max int, p_tz text)
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
    WHERE NOT EXISTS (SELECT 1 FROM chain_links l WHERE l.event_id = t.event_id)
  ), parts AS MATERIALIZED (
    -- tl_chain_partition once per sender and day (sql/018), as one object
    SELECT jsonb_object_agg(g.role || '|' || g.sender || '|' || g.day, g.part) AS map
    FROM (SELECT d.role, d.sender, d.day,
                 tl_chain_partition(d.role, d.sender, min(d.received), p_tz) AS part
          FROM todo d WHERE d.id IS NOT NULL
          GROUP BY d.role, d.sender, d.day) g
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
