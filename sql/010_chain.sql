-- 010: the tamper-evident custody log (docs/RELIABILITY.md §9).
--
-- Every accepted event is chained, after its commit, into the SHA-256 chain of its partition
-- (the sender's county and the day, in the deployment's zone, that the server received it):
--
--   link(0) = 32 zero bytes
--   link(n) = SHA-256(link(n-1) || canonical(partition, n, event))
--
-- canonical() is a sequence of fields, each a 4-byte big-endian length and its UTF-8 bytes
-- (SQL NULL: the length 0xFFFFFFFF and no bytes): the tag 'tubeloop-chain-v1', the partition,
-- n in decimal, then every column of the event row — id, type, at and received_at as whole
-- microseconds since 1970-01-01 UTC in decimal, sender_role, sender, digest, tube, box, body
-- (jsonb's text form), anomalies (text[]'s text form). anomalies is written by tl_write in
-- the inserting transaction (sql/004), so it is final when the event becomes visible here.
-- The same encoding is written in C (lib/crypto/chain.c): `tubeloopd verify` recomputes every
-- link from the events with it and never trusts this file's functions.
--
-- Nothing here runs in the write transaction except one statement-level trigger that notes
-- the new event ids in chain_pending (no lock, no index). The sealer (lib/api/sealer.c, every
-- --seal-interval seconds in each daemon, one at a time by an advisory lock) takes the pending
-- ids, orders each partition's new events by (received_at, id) and appends their links;
-- signed checkpoints of each head are written by the daemon (Ed25519, keys file) through
-- tl_chain_checkpoint. chain_links and chain_checkpoints are insert-only; chain_heads is the
-- one mutable row per partition.

-- Ids of committed events not chained yet (a queue: no index, so that the insert in the
-- write transaction costs as little as possible; the sealer takes rows by ctid).
CREATE TABLE chain_pending (
  event_id  uuid NOT NULL
);

CREATE FUNCTION tl_chain_enqueue() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO chain_pending (event_id) SELECT n.id FROM chain_new n;
  RETURN NULL;
END $$;

CREATE TRIGGER events_chain_enqueue AFTER INSERT ON events
  REFERENCING NEW TABLE AS chain_new FOR EACH STATEMENT EXECUTE FUNCTION tl_chain_enqueue();

CREATE TABLE chain_links (
  partition  text NOT NULL CHECK (partition ~ '^[0-9]{6}/[0-9]{4}-[0-9]{2}-[0-9]{2}$'),
  seq        bigint NOT NULL CHECK (seq >= 1),
  event_id   uuid NOT NULL UNIQUE,
  link       bytea NOT NULL CHECK (octet_length(link) = 32),
  sealed_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (partition, seq)
);

-- The last link of each partition, and where its last checkpoint is.
CREATE TABLE chain_heads (
  partition       text PRIMARY KEY,
  seq             bigint NOT NULL CHECK (seq >= 1),
  link            bytea NOT NULL CHECK (octet_length(link) = 32),
  updated_at      timestamptz NOT NULL DEFAULT now(),
  checkpoint_seq  bigint NOT NULL DEFAULT 0,
  checkpoint_at   timestamptz
);

-- A signed statement "partition P had link L at seq S", Ed25519 over the message of
-- lib/crypto/chain.h (tl_chain_checkpoint_message); key_id names the signing key.
CREATE TABLE chain_checkpoints (
  partition  text NOT NULL,
  seq        bigint NOT NULL CHECK (seq >= 1),
  link       bytea NOT NULL CHECK (octet_length(link) = 32),
  signed_at  timestamptz NOT NULL,
  key_id     text NOT NULL CHECK (key_id ~ '^[0-9a-f]{16}$'),
  signature  bytea NOT NULL CHECK (octet_length(signature) = 64),
  PRIMARY KEY (partition, seq)
);

CREATE FUNCTION tl_chain_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION '% is append-only', TG_TABLE_NAME USING ERRCODE = 'insufficient_privilege';
END $$;

CREATE TRIGGER chain_links_append_only BEFORE UPDATE OR DELETE ON chain_links
  FOR EACH ROW EXECUTE FUNCTION tl_chain_append_only();
CREATE TRIGGER chain_links_no_truncate BEFORE TRUNCATE ON chain_links
  FOR EACH STATEMENT EXECUTE FUNCTION tl_chain_append_only();
CREATE TRIGGER chain_checkpoints_append_only BEFORE UPDATE OR DELETE ON chain_checkpoints
  FOR EACH ROW EXECUTE FUNCTION tl_chain_append_only();
CREATE TRIGGER chain_checkpoints_no_truncate BEFORE TRUNCATE ON chain_checkpoints
  FOR EACH STATEMENT EXECUTE FUNCTION tl_chain_append_only();

-- One field of the canonical encoding.
CREATE FUNCTION tl_chain_field(p text) RETURNS bytea LANGUAGE sql STABLE PARALLEL SAFE AS $$
  SELECT CASE WHEN p IS NULL THEN '\xffffffff'::bytea
              ELSE int4send(octet_length(convert_to(p, 'UTF8'))) || convert_to(p, 'UTF8') END
$$;

CREATE FUNCTION tl_chain_micros(p timestamptz) RETURNS text LANGUAGE sql STABLE PARALLEL SAFE AS $$
  SELECT (extract(epoch FROM p) * 1000000)::bigint::text
$$;

-- canonical(partition, seq, event). A new column of events must be added here and in
-- lib/crypto/chain.c together, as a new version of the tag; verify refuses a column it does
-- not know.
CREATE FUNCTION tl_chain_canon(p_partition text, p_seq bigint, e events) RETURNS bytea
LANGUAGE sql STABLE PARALLEL SAFE AS $$
  SELECT tl_chain_field('tubeloop-chain-v1') || tl_chain_field(p_partition)
      || tl_chain_field(p_seq::text) || tl_chain_field(e.id::text) || tl_chain_field(e.type)
      || tl_chain_field(tl_chain_micros(e.at)) || tl_chain_field(e.sender_role)
      || tl_chain_field(e.sender) || tl_chain_field(tl_chain_micros(e.received_at))
      || tl_chain_field(e.digest) || tl_chain_field(e.tube) || tl_chain_field(e.box)
      || tl_chain_field(e.body::text) || tl_chain_field(e.anomalies::text)
$$;

-- The running chain as a window aggregate: the first row starts from the partition's head.
CREATE FUNCTION tl_chain_step(p_state bytea, p_head bytea, p_canon bytea) RETURNS bytea
LANGUAGE sql IMMUTABLE AS $$
  SELECT sha256(coalesce(p_state, p_head) || p_canon)
$$;
CREATE AGGREGATE tl_chain_agg(bytea, bytea) (SFUNC = tl_chain_step, STYPE = bytea);

-- The partition of an event: the sender's county and the day it was received.
CREATE FUNCTION tl_chain_partition(p_role text, p_sender text, p_received timestamptz, p_tz text)
RETURNS text LANGUAGE sql STABLE AS $$
  SELECT coalesce(CASE p_role
           WHEN 'collector' THEN (SELECT left(s.township, 6) FROM sites s WHERE s.code = p_sender)
           WHEN 'courier' THEN (SELECT c.county FROM couriers c WHERE c.code = p_sender)
           WHEN 'lab' THEN (SELECT l.county FROM labs l WHERE l.code = p_sender) END, '000000')
         || '/' || to_char(p_received AT TIME ZONE p_tz, 'YYYY-MM-DD')
$$;

-- Chains up to p_max pending events. Returns (events chained, partitions advanced, pending
-- ids whose event no longer exists); sealed = -1 when another daemon is sealing.
CREATE FUNCTION tl_chain_seal(p_max int, p_tz text)
RETURNS TABLE (sealed bigint, partitions bigint, vanished bigint) LANGUAGE plpgsql AS $$
BEGIN
  IF NOT pg_try_advisory_xact_lock(7420263) THEN
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

-- Heads due for a checkpoint: moved by p_links links, or moved and not checkpointed for
-- p_every. Also the database's clock, which the signature covers, in microseconds.
CREATE FUNCTION tl_chain_due(p_links bigint, p_every interval)
RETURNS TABLE (partition text, seq bigint, link text, now_us text) LANGUAGE sql STABLE AS $$
  SELECT h.partition, h.seq, encode(h.link, 'hex'), tl_chain_micros(now())
  FROM chain_heads h
  WHERE h.seq > h.checkpoint_seq
    AND (h.seq - h.checkpoint_seq >= p_links OR h.checkpoint_at IS NULL
         OR h.checkpoint_at <= now() - p_every)
  ORDER BY h.partition LIMIT 1000
$$;

-- Stores signed checkpoints: p = [{"partition", "seq", "link" (hex), "signature" (hex)}],
-- all signed at p_signed_us with key p_key_id. Returns how many were new.
CREATE FUNCTION tl_chain_checkpoint(p jsonb, p_signed_us bigint, p_key_id text)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
  v_n bigint;
BEGIN
  WITH cp AS (
    SELECT x.partition, x.seq, decode(x.link, 'hex') AS link, decode(x.signature, 'hex') AS signature
    FROM jsonb_to_recordset(p) AS x(partition text, seq bigint, link text, signature text)
  ), ins AS (
    INSERT INTO chain_checkpoints (partition, seq, link, signed_at, key_id, signature)
    SELECT cp.partition, cp.seq, cp.link,
           'epoch'::timestamptz + p_signed_us * interval '1 microsecond', p_key_id, cp.signature
    FROM cp
    WHERE EXISTS (SELECT 1 FROM chain_links l WHERE l.partition = cp.partition
                    AND l.seq = cp.seq AND l.link = cp.link)
    ON CONFLICT (partition, seq) DO NOTHING
    RETURNING chain_checkpoints.partition, chain_checkpoints.seq, chain_checkpoints.signed_at
  ), up AS (
    UPDATE chain_heads h SET checkpoint_seq = i.seq, checkpoint_at = i.signed_at
    FROM ins i WHERE h.partition = i.partition AND h.checkpoint_seq < i.seq
    RETURNING 1
  )
  SELECT count(*) INTO v_n FROM ins;
  RETURN v_n;
END $$;
