-- 018: the sealer hashes in the daemon, not in PostgreSQL (issue 6, performance).
--
-- tl_chain_seal (sql/010, sql/014) computed every link in SQL: tl_chain_canon's concatenations
-- and the tl_chain_agg window aggregate over sha256, per event. A profile under ingest showed
-- it at 20 % of all PostgreSQL CPU (553 ms per call of ~1,700 events), and PostgreSQL's CPU is
-- the whole system's bottleneck. The daemon already has the same encoding in C
-- (lib/crypto/chain.c, which `tubeloopd verify` uses), so the sealer (lib/api/sealer.c) now
-- does, in one transaction on one connection:
--   BEGIN; tl_chain_take — the lock, the pending events with their partition's head;
--   the links, in C; tl_chain_append — every link and the moved heads; COMMIT.
-- Nothing is half-written: a failure rolls back and the pending ids return to the queue.
-- The advisory key stays 7420264 (sql/014), so a daemon of the previous version, which still
-- calls tl_chain_seal, and one of this version never seal at the same time.
-- tl_chain_seal stays defined but the daemon no longer calls it; tl_chain_canon stays too: it
-- is the encoding written independently of the C one, which the tests compare the stored
-- links against.

-- Takes up to p_max pending events for the sealer, in the caller's transaction (which must go
-- on to tl_chain_append and COMMIT, or roll back). One row per pending id taken (an event
-- chained already is skipped), ordered by (partition, received_at, id): the partition, its
-- current head (seq 0 and 32 zero bytes for a new partition; the link in hex) and the event
-- row, from which the daemon reads TL_CHAIN_COLUMNS. A pending id whose event no longer
-- exists comes last, as (NULL, NULL, NULL, NULL). When another daemon is sealing, the only
-- row is (NULL, -1, NULL, NULL) and nothing is taken.
-- tl_chain_seal evaluated tl_chain_partition (a lookup of the sender) several times per event;
-- here it runs once per sender and day: parts is MATERIALIZED, for inlined into the join it
-- ran once per pair of event and sender (326,405 calls, 3.6 s for 1,000 events, measured). The partitions sort in "C" order (only that each one's
-- rows are together matters, and it is cheaper than the database's collation); work_mem: the
-- sort of up to 20,000 whole events (~12 MB) stays in memory instead of spilling to disk.
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
    SELECT d.role, d.sender, d.day, tl_chain_partition(d.role, d.sender, min(d.received), p_tz) AS part
    FROM todo d WHERE d.id IS NOT NULL
    GROUP BY d.role, d.sender, d.day
  )
  SELECT p.part, CASE WHEN d.id IS NOT NULL THEN coalesce(h.seq, 0) END,
         CASE WHEN d.id IS NOT NULL
              THEN encode(coalesce(h.link, decode(repeat('00', 32), 'hex')), 'hex') END,
         d.row
  FROM todo d
  LEFT JOIN parts p ON p.role = d.role AND p.sender = d.sender AND p.day = d.day
  LEFT JOIN chain_heads h ON h.partition = p.part
  ORDER BY p.part COLLATE "C", d.received, d.id;
END $$;

-- Appends the links the daemon computed for tl_chain_take's rows (the same transaction):
-- element i of the arrays is one link (partition, seq, event id, link as 64 hex digits), the
-- arrays ordered by (partition, seq). Each partition's head moves to its last link. Returns
-- (links appended, partitions advanced). A seq or an event chained already (the lock was not
-- held, or a sealer bug) violates chain_links' keys and fails the whole transaction.
CREATE OR REPLACE FUNCTION tl_chain_append(p_partition text[], p_seq bigint[], p_event uuid[],
                                           p_link text[])
RETURNS TABLE (sealed bigint, partitions bigint) LANGUAGE sql AS $$
  WITH l AS (
    SELECT u.partition, u.seq, u.event_id, decode(u.link, 'hex') AS link
    FROM unnest(p_partition, p_seq, p_event, p_link) AS u(partition, seq, event_id, link)
  ), ins AS (
    INSERT INTO chain_links (partition, seq, event_id, link)
    SELECT l.partition, l.seq, l.event_id, l.link FROM l
    RETURNING 1
  ), up AS (
    INSERT INTO chain_heads AS h (partition, seq, link, updated_at)
    SELECT DISTINCT ON (l.partition) l.partition, l.seq, l.link, now() FROM l
    ORDER BY l.partition, l.seq DESC
    ON CONFLICT (partition) DO UPDATE
      SET seq = EXCLUDED.seq, link = EXCLUDED.link, updated_at = EXCLUDED.updated_at
    RETURNING 1
  )
  SELECT (SELECT count(*) FROM ins), (SELECT count(*) FROM up)
$$;
