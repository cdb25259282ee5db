-- 014: the sealer gets an advisory lock of its own.
--
-- tl_chain_seal (sql/010) took "one sealer at a time" as pg_try_advisory_xact_lock(7420263),
-- the key that tl_fold and tl_rollup_rebuild (sql/008) lock to fold the roll-up deltas one at
-- a time. So a stats read (which folds first) and the daemon's fold timer waited for every
-- sealing transaction (~0.4 s for 1,700 events under ingest), and a seal was skipped whenever
-- a fold held the key. Sealing and folding touch different tables: the sealer now locks 7420264.
-- Keys in use: 7420262 overdue sweep (007), 7420263 fold and rebuild (008), 7420264 sealer.

-- Chains up to p_max pending events. Returns (events chained, partitions advanced, pending
-- ids whose event no longer exists); sealed = -1 when another daemon is sealing.
CREATE OR REPLACE FUNCTION tl_chain_seal(p_max int, p_tz text)
RETURNS TABLE (sealed bigint, partitions bigint, vanished bigint) LANGUAGE plpgsql AS $$
BEGIN
  IF NOT pg_try_advisory_xact_lock(7420264) THEN
    RETURN QUERY SELECT -1::bigint, 0::bigint, 0::bigint;
    RETURN;
  END IF;
  RETURN QUERY
  WITH taken AS (
    DELETE FROM chain_pending
    WHERE ctid = ANY (ARRAY(SELECT ctid FROM chain_pending LIMIT p_max))
    RETURNING event_id
  ), found AS (
    SELECT e AS row, EXISTS (SELECT 1 FROM chain_links l WHERE l.event_id = e.id) AS chained
    FROM (SELECT DISTINCT t.event_id FROM taken t) t JOIN events e ON e.id = t.event_id
  ), ev AS (
    SELECT f.row, tl_chain_partition((f.row).sender_role, (f.row).sender, (f.row).received_at,
                                     p_tz) AS part
    FROM found f WHERE NOT f.chained
  ), numbered AS (
    SELECT ev.row, ev.part, coalesce(h.link, decode(repeat('00', 32), 'hex')) AS head,
           coalesce(h.seq, 0) + row_number() OVER (PARTITION BY ev.part
                                                   ORDER BY (ev.row).received_at, (ev.row).id) AS seq
    FROM ev LEFT JOIN chain_heads h ON h.partition = ev.part
  ), linked AS (
    SELECT n.part, n.seq, (n.row).id AS event_id,
           tl_chain_agg(n.head, tl_chain_canon(n.part, n.seq, n.row))
             OVER (PARTITION BY n.part ORDER BY n.seq ROWS UNBOUNDED PRECEDING) AS link
    FROM numbered n
  ), ins AS (
    INSERT INTO chain_links (partition, seq, event_id, link)
    SELECT l.part, l.seq, l.event_id, l.link FROM linked l
    RETURNING chain_links.partition, chain_links.seq, chain_links.link
  ), up AS (
    INSERT INTO chain_heads AS h (partition, seq, link, updated_at)
    SELECT DISTINCT ON (i.partition) i.partition, i.seq, i.link, now() FROM ins i
    ORDER BY i.partition, i.seq DESC
    ON CONFLICT (partition) DO UPDATE
      SET seq = EXCLUDED.seq, link = EXCLUDED.link, updated_at = EXCLUDED.updated_at
    RETURNING h.partition
  )
  SELECT (SELECT count(*) FROM ins), (SELECT count(*) FROM up),
         (SELECT count(DISTINCT t.event_id) FROM taken t) - (SELECT count(*) FROM found);
END $$;
