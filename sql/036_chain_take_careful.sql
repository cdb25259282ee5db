-- 036: the sealer's take looks each event up in the chain only after a failed seal.
--
-- tl_chain_take (sql/026) skips every pending event that is already chained, with a probe of
-- chain_links' event index per event: ~7 of the ~35 ms a take of 1,000 events costs (psql on a
-- benchmark cluster, docs/PERFORMANCE.md, ninth update), ~4 % of PostgreSQL's CPU in batched
-- ingest. An event is queued once, by the statement trigger of its insert, and a take removes
-- it from the queue in the transaction that chains it, so the probe finds nothing unless the
-- queue was written by hand. If that ever happens, the append of a second link for the event
-- fails on chain_links' unique event_id and the seal rolls back; nothing is written twice.
-- The sealer (lib/api/sealer.c) then takes with p_careful until a seal commits again, and that
-- take skips the chained events as before. A caller that does not say (an older daemon during
-- an upgrade) gets the careful take. The body is sql/026's but for that condition.
DROP FUNCTION tl_chain_take(int, text);

CREATE FUNCTION tl_chain_take(p_max int, p_tz text, p_careful boolean DEFAULT true)
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
