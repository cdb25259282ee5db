-- 003: custody data (DESIGN §3, §4, §7): persons (encrypted), tubes, boxes, samples,
-- receipts, the append-only event log, follow-ups and anomalies.
--
-- Facts are columns: each kind of event fills its own columns, so the state after a set of
-- events does not depend on the order they arrived in (convergence). Sampling-point facts
-- (site, opened_at, sealed_at, box, ...) and hand-over/lab facts (received_at, result, ...)
-- live side by side; a lab event that came first leaves a row with only its facts (a
-- placeholder) that the late site events complete.
--
-- Distribution (Citus, see the scaling notes): tubes, samples and follow-ups by tube code;
-- boxes and receipts by box code; events by id; anomalies by subject; persons by their HMAC.
-- Every unique key includes its table's column. Registry tables would be reference tables.

-- A person, looked up by HMAC-SHA256 of the normalised ID number. Each *_enc value is
-- "KEYID:BASE64(nonce|ciphertext|tag)" (AES-256-GCM): the key id beside every value lets keys
-- rotate. The masked forms are what every answer shows.
CREATE TABLE persons (
  hmac          text PRIMARY KEY CHECK (hmac ~ '^[0-9a-f]{64}$'),
  id_type       text NOT NULL CHECK (id_type IN ('resident_id', 'passport', 'other')),
  id_enc        text NOT NULL CHECK (id_enc ~ '^[0-9]+:[A-Za-z0-9+/=]+$'),
  name_enc      text CHECK (name_enc ~ '^[0-9]+:[A-Za-z0-9+/=]+$'),
  phone_enc     text CHECK (phone_enc ~ '^[0-9]+:[A-Za-z0-9+/=]+$'),
  id_masked     text NOT NULL,
  name_masked   text,
  phone_masked  text,
  updated_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE tubes (
  code           text PRIMARY KEY CHECK (code ~ '^[A-Za-z0-9-]{6,32}$'),
  region         text NOT NULL,               -- township of the site; the lab's county for a placeholder
  -- sampling point facts
  round          text REFERENCES rounds (code),
  site           text REFERENCES sites (code),
  capacity       int CHECK (capacity IN (1, 5, 8, 10, 20)),
  opened_at      timestamptz,
  sampled        int NOT NULL DEFAULT 0,
  first_sample_at timestamptz,
  sealed_at      timestamptz,
  seal_count     int CHECK (seal_count >= 0),
  box            text,
  packed_at      timestamptz,
  -- lab facts
  received_at    timestamptz,
  received_lab   text REFERENCES labs (code),
  received_box   text,
  rejected_at    timestamptz,
  reject_reason  text CHECK (reject_reason IN ('leak', 'unlabeled', 'insufficient', 'other')),
  rejected_lab   text REFERENCES labs (code),
  result         text CHECK (result IN ('negative', 'positive', 'invalid')),
  result_at      timestamptz,
  result_lab     text REFERENCES labs (code),
  ct             jsonb,
  CHECK ((site IS NULL) = (opened_at IS NULL) AND (site IS NULL) = (round IS NULL)
         AND (site IS NULL) = (capacity IS NULL)),
  CHECK (sampled >= 0 AND sampled <= coalesce(capacity, 0)),
  CHECK (sealed_at IS NULL OR sampled > 0),
  CHECK (box IS NULL OR sealed_at IS NOT NULL),
  CHECK ((result IS NULL) = (result_at IS NULL)),
  CHECK ((rejected_at IS NULL) = (reject_reason IS NULL))
);
CREATE INDEX tubes_box ON tubes (box) WHERE box IS NOT NULL;
CREATE INDEX tubes_region ON tubes (region);
CREATE INDEX tubes_round_site ON tubes (round, site);

CREATE TABLE boxes (
  code           text PRIMARY KEY CHECK (code ~ '^[A-Za-z0-9-]{6,32}$'),
  region         text NOT NULL,               -- township of the site; else the sender's county
  -- sampling point facts
  site           text REFERENCES sites (code),
  packed_at      timestamptz,
  sealed_at      timestamptz,
  dest_lab       text REFERENCES labs (code),
  seal_count     int CHECK (seal_count >= 0),
  -- hand-over and lab facts
  picked_up_at   timestamptz,
  courier        text REFERENCES couriers (code),
  delivered_at   timestamptz,
  delivered_lab  text REFERENCES labs (code),
  received_at    timestamptz,
  received_lab   text REFERENCES labs (code),
  CHECK (sealed_at IS NULL OR (site IS NOT NULL AND dest_lab IS NOT NULL)),
  CHECK ((picked_up_at IS NULL) = (courier IS NULL)),
  CHECK ((received_at IS NULL) = (received_lab IS NULL))
);
CREATE INDEX boxes_region ON boxes (region);

-- Person ↔ tube.
CREATE TABLE samples (
  tube    text NOT NULL REFERENCES tubes (code),
  person  text NOT NULL REFERENCES persons (hmac),
  round   text NOT NULL REFERENCES rounds (code),
  site    text NOT NULL REFERENCES sites (code),
  at      timestamptz NOT NULL,
  event   uuid NOT NULL,
  PRIMARY KEY (tube, person)
);
CREATE INDEX samples_person ON samples (person, at);
CREATE INDEX samples_round_site ON samples (round, site);

-- Tubes scanned out of a box at the lab (the union of every box.receive of that box).
CREATE TABLE receipts (
  box    text NOT NULL REFERENCES boxes (code),
  tube   text NOT NULL,
  lab    text NOT NULL REFERENCES labs (code),
  at     timestamptz NOT NULL,
  event  uuid NOT NULL,
  PRIMARY KEY (box, tube)
);
CREATE INDEX receipts_tube ON receipts (tube);

-- The append-only custody log: every accepted event, personal data replaced by the person's
-- HMAC and masked forms. digest is an HMAC of the event's canonical content: the same id with
-- other content is an id_conflict. Rows are never updated except to record the anomalies the
-- event opened, in the same transaction.
CREATE TABLE events (
  id           uuid PRIMARY KEY,
  type         text NOT NULL CHECK (type IN ('tube.open', 'sample.add', 'tube.seal', 'box.pack',
                 'box.seal', 'box.pickup', 'box.deliver', 'box.receive', 'tube.reject', 'tube.result')),
  at           timestamptz NOT NULL,
  sender_role  text NOT NULL CHECK (sender_role IN ('collector', 'courier', 'lab')),
  sender       text NOT NULL,
  received_at  timestamptz NOT NULL DEFAULT now(),
  digest       text NOT NULL CHECK (digest ~ '^[0-9a-f]{64}$'),
  tube         text,
  box          text,
  body         jsonb NOT NULL,
  anomalies    text[] NOT NULL DEFAULT '{}'
);
CREATE INDEX events_tube ON events (tube, at) WHERE tube IS NOT NULL;
CREATE INDEX events_box ON events (box, at) WHERE box IS NOT NULL;
-- box.pack and box.receive name several tubes: the tube timeline finds them here.
CREATE INDEX events_tubes ON events USING gin ((body -> 'tubes')) WHERE type IN ('box.pack', 'box.receive');
CREATE RULE events_no_delete AS ON DELETE TO events DO INSTEAD NOTHING;

CREATE TABLE followups (
  tube          text NOT NULL,                -- the tube whose result called the person back
  person        text NOT NULL REFERENCES persons (hmac),
  round         text NOT NULL,
  region        text NOT NULL,
  site          text,                         -- where the calling sample was taken
  kind          text NOT NULL CHECK (kind IN ('awaiting_recheck', 'resample')),
  opened_at     timestamptz NOT NULL,
  state         text NOT NULL CHECK (state IN ('open', 'closed')),
  linked_tube   text,                         -- the single-tube sample that answers it
  linked_at     timestamptz,
  result        text CHECK (result IN ('negative', 'positive', 'invalid', 'rejected')),
  closed_at     timestamptz,
  PRIMARY KEY (tube, person),
  CHECK ((state = 'closed') = (result IS NOT NULL))
);
CREATE INDEX followups_person ON followups (person);
CREATE INDEX followups_region_state ON followups (region, state);

CREATE TABLE anomalies (
  id            uuid NOT NULL DEFAULT gen_random_uuid(),
  subject       text NOT NULL,                -- tube or box code, or ROUND/PERSON-HMAC
  subject_kind  text NOT NULL CHECK (subject_kind IN ('tube', 'box', 'person', 'followup')),
  type          text NOT NULL CHECK (type IN ('person_repeat', 'seal_count_mismatch', 'custody_gap',
                  'wrong_lab', 'tube_missing', 'tube_unexpected', 'orphan_result',
                  'overdue_transport', 'overdue_test', 'overdue_followup')),
  region        text NOT NULL,
  round         text,
  site          text,                         -- the sampling point it counts against, if any
  state         text NOT NULL DEFAULT 'open'
                  CHECK (state IN ('open', 'acknowledged', 'resolved', 'auto_resolved')),
  detail        jsonb NOT NULL DEFAULT '{}',
  opened_at     timestamptz NOT NULL DEFAULT now(),
  opened_by     uuid,
  owner         text CHECK (length(owner) <= 100),
  acknowledged_at timestamptz,
  note          text CHECK (length(note) <= 2000),
  resolved_at   timestamptz,
  PRIMARY KEY (subject, id),
  CHECK (state NOT IN ('acknowledged') OR owner IS NOT NULL),
  CHECK (state <> 'resolved' OR note IS NOT NULL)
);
CREATE UNIQUE INDEX anomalies_one_live ON anomalies (subject, type)
  WHERE state IN ('open', 'acknowledged');
CREATE INDEX anomalies_region ON anomalies (region, opened_at DESC);
CREATE INDEX anomalies_id ON anomalies (id);
