-- 009: standard exports for neighbouring systems (issue 8): a region's results of a day as an
-- HL7 FHIR R4 Bundle and as HL7 v2.5.1 ORU^R01 messages, and its chain of custody as a GS1
-- EPCIS 2.0 JSON-LD document. The documents are built next to the data, one bounded page at a
-- time (a keyset cursor, never OFFSET), and carry personal data only in masked form: a patient
-- is a pseudonym (an MD5 of the person's keyed HMAC, so it can neither be turned back into an
-- ID number nor be used as a lookup key), the masked ID number and the masked name.
--
-- Identifiers (README "Exports"): tubes, boxes, sites, labs and couriers are named by private
-- URNs, urn:tubeloop:tube:CODE and so on. GS1 keys (GIAI/GRAI/SGLN) would need a GS1 Company
-- Prefix that the deployment does not have, and a 32-character barcode does not fit a GIAI.

-- A time as RFC 3339 with the session's (the deployment's) offset, to the second: what FHIR's
-- dateTime/instant and EPCIS's eventTime accept.
CREATE FUNCTION tl_x_time(t timestamptz) RETURNS text LANGUAGE sql STABLE AS $$
  SELECT to_char(t, 'YYYY-MM-DD"T"HH24:MI:SS') || to_char(t, 'TZH:TZM')
$$;

-- HL7 v2 TS/DTM: YYYYMMDDHHMMSS+ZZZZ.
CREATE FUNCTION tl_hl7_time(t timestamptz) RETURNS text LANGUAGE sql STABLE AS $$
  SELECT to_char(t, 'YYYYMMDDHH24MISS') || to_char(t, 'TZHTZM')
$$;

-- HL7 v2 escaping of one component's text (2.5.1 §2.7.4): the escape character first, then the
-- field, component, subcomponent and repetition separators; line breaks as hex escapes.
CREATE FUNCTION tl_hl7_esc(v text) RETURNS text LANGUAGE sql IMMUTABLE AS $$
  SELECT replace(replace(replace(replace(replace(replace(replace(v,
    '\', '\E\'), '|', '\F\'), '^', '\S\'), '&', '\T\'), '~', '\R\'), E'\r', '\X0D\'), E'\n', '\X0A\')
$$;

-- One segment: its id and fields 1..n joined by '|' (NULL is empty), trailing empty fields
-- dropped, ended by the segment terminator. Field values must already be escaped.
CREATE FUNCTION tl_hl7_segment(p_id text, p_fields text[]) RETURNS text LANGUAGE sql IMMUTABLE AS $$
  SELECT rtrim(p_id || '|' || string_agg(coalesce(f, ''), '|' ORDER BY i), '|') || E'\r'
  FROM unnest(p_fields) WITH ORDINALITY AS u(f, i)
$$;

-- The resulted tubes of a region (GB/T 2260 prefix of the site's township) or of one site, in
-- the given rounds, in (site, code) order after the cursor, at most p_limit. The tubes_round_site
-- index finds them; scope is checked again per tube (tl_sees) behind the API's own check.
CREATE FUNCTION tl_export_tubes(p_code text, p_is_site boolean, p_rounds text[], p_role text,
                                p_scope text, p_region text, p_after_site text, p_after_code text,
                                p_limit int)
RETURNS SETOF tubes LANGUAGE sql STABLE AS $$
  SELECT t.* FROM tubes t
  WHERE t.round = ANY (p_rounds)
    AND t.site = ANY (ARRAY(SELECT s.code FROM sites s
                            WHERE CASE WHEN p_is_site THEN s.code = p_code
                                       ELSE left(s.township, length(p_code)) = p_code END))
    AND t.result IS NOT NULL
    AND (p_after_site IS NULL OR (t.site, t.code) > (p_after_site, p_after_code))
    AND tl_sees(p_role, p_scope, p_region, t.region, t.site,
                ARRAY[t.received_lab, t.result_lab, t.rejected_lab], NULL)
  ORDER BY t.site, t.code
  LIMIT p_limit
$$;

-- One page of those tubes, numbered, each row with the cursor of the next page (the last
-- tube's "SITE.CODE") or NULL on the last page.
CREATE FUNCTION tl_export_page(p_code text, p_is_site boolean, p_rounds text[], p_role text,
                               p_scope text, p_region text, p_after_site text, p_after_code text,
                               p_limit int)
RETURNS TABLE (tube tubes, ord bigint, next_cursor text) LANGUAGE sql STABLE AS $$
  WITH got AS (
    SELECT g, row_number() OVER (ORDER BY g.site, g.code) AS ord
    FROM tl_export_tubes(p_code, p_is_site, p_rounds, p_role, p_scope, p_region,
                         p_after_site, p_after_code, p_limit + 1) g
  )
  SELECT x.g, x.ord, CASE WHEN (SELECT count(*) FROM got) > p_limit THEN
           (SELECT (y.g).site || '.' || (y.g).code FROM got y WHERE y.ord = p_limit) END
  FROM got x WHERE x.ord <= p_limit
$$;

-- What the FHIR and HL7 exports say about one page of tubes: per tube its lab, whether its
-- result was amended, and per sample the person's pseudonym and masked identity. A tube with
-- capacity > 1 is pooled (DESIGN §2: the capacity is fixed when it is opened).
CREATE FUNCTION tl_export_samples(p_tubes text[])
RETURNS TABLE (tube text, n bigint, at timestamptz, pseudonym uuid, id_type text, id_masked text,
               name_masked text) LANGUAGE sql STABLE AS $$
  SELECT s.tube, row_number() OVER (PARTITION BY s.tube ORDER BY s.at, s.person),
         s.at, md5('tubeloop:patient:' || s.person)::uuid, p.id_type, p.id_masked, p.name_masked
  FROM samples s JOIN persons p ON p.hmac = s.person
  WHERE s.tube = ANY (p_tubes)
$$;

CREATE FUNCTION tl_result_amended(p_tube text) RETURNS boolean LANGUAGE sql STABLE AS $$
  SELECT EXISTS (SELECT 1 FROM events e WHERE e.tube = p_tube AND e.type = 'tube.result'
                   AND e.body @> '{"amend": true}')
$$;

-- SNOMED CT for the result value, as the CDC's LIVD mapping for SARS-CoV-2 tests has it.
CREATE FUNCTION tl_result_snomed(r text) RETURNS text[] LANGUAGE sql IMMUTABLE AS $$
  SELECT CASE r WHEN 'negative' THEN ARRAY['260415000', 'Not detected']
                WHEN 'positive' THEN ARRAY['260373001', 'Detected']
                ELSE ARRAY['455371000124106', 'Invalid result'] END
$$;

-- ---------------------------------------------------------------------------------------------
-- FHIR R4: one Bundle (type collection) per page. Per tube: a Specimen for the tube (its
-- container is the tube, identified by its barcode), for a pooled tube one Specimen per swab
-- with the tube's Specimen.parent listing them ("the specimen from which this specimen
-- originated") and a Group of the tube's persons as its subject, an Observation (LOINC 94500-6,
-- value in SNOMED CT) and a DiagnosticReport. Patients appear once per page. Resource ids are
-- UUIDs derived from the tube code / pseudonym, so a resource keeps its id across exports.
-- p_next_base is the call's own URL without cursor; the Bundle links the next page with it.
CREATE FUNCTION tl_fhir_bundle(p_code text, p_is_site boolean, p_rounds text[], p_role text,
                               p_scope text, p_region text, p_after_site text, p_after_code text,
                               p_limit int, p_next_base text)
RETURNS TABLE (body text, next_cursor text) LANGUAGE sql STABLE AS $$
  WITH page AS (
    SELECT (x.tube).*, x.ord, x.next_cursor FROM tl_export_page(p_code, p_is_site, p_rounds, p_role,
      p_scope, p_region, p_after_site, p_after_code, p_limit) x
  ), cur AS (
    SELECT (SELECT max(next_cursor) FROM page) AS c
  ), sw AS (
    SELECT x.* FROM tl_export_samples(ARRAY(SELECT code FROM page)) x
  ), tt AS (
    SELECT p.*, p.capacity > 1 AS pooled,
      'urn:uuid:' || md5('tubeloop:specimen:' || p.code)::uuid AS spec_ref,
      'urn:uuid:' || md5('tubeloop:group:' || p.code)::uuid AS group_ref,
      'urn:uuid:' || md5('tubeloop:observation:' || p.code)::uuid AS obs_ref,
      'urn:uuid:' || md5('tubeloop:report:' || p.code)::uuid AS report_ref,
      CASE WHEN tl_result_amended(p.code) THEN 'amended' ELSE 'final' END AS status,
      tl_result_snomed(p.result) AS value,
      coalesce(p.result_lab, p.received_lab) AS lab, l.name AS lab_name, si.name AS site_name,
      (SELECT 'urn:uuid:' || s.pseudonym FROM sw s WHERE s.tube = p.code ORDER BY s.n LIMIT 1) AS first_patient
    FROM page p LEFT JOIN labs l ON l.code = coalesce(p.result_lab, p.received_lab)
    LEFT JOIN sites si ON si.code = p.site
  ), subj AS (
    SELECT t.code, CASE WHEN t.pooled THEN jsonb_build_object('reference', t.group_ref, 'type', 'Group')
                        WHEN t.first_patient IS NOT NULL
                        THEN jsonb_build_object('reference', t.first_patient, 'type', 'Patient') END AS ref
    FROM tt t
  ), coding AS (
    SELECT jsonb_build_object('coding', jsonb_build_array(jsonb_build_object(
             'system', 'http://loinc.org', 'code', '94500-6',
             'display', 'SARS-CoV-2 (COVID-19) RNA [Presence] in Respiratory specimen by NAA with probe detection')),
           'text', 'SARS-CoV-2 RNA (PCR)') AS loinc,
           jsonb_build_object('coding', jsonb_build_array(jsonb_build_object(
             'system', 'http://snomed.info/sct', 'code', '258529004', 'display', 'Throat swab'))) AS swab
  ), entries AS (
    -- patients, once per page, first
    SELECT 0 AS ord, 0 AS kind, d.pseudonym::text AS k, jsonb_strip_nulls(jsonb_build_object(
      'resourceType', 'Patient', 'id', d.pseudonym,
      'meta', jsonb_build_object('security', jsonb_build_array(jsonb_build_object(
        'system', 'http://terminology.hl7.org/CodeSystem/v3-ObservationValue',
        'code', 'PSEUDED', 'display', 'pseudonymized'))),
      'identifier', jsonb_build_array(
        jsonb_build_object('system', 'urn:tubeloop:patient', 'value', d.pseudonym),
        jsonb_build_object('type', jsonb_build_object('text', 'masked ' || d.id_type),
                           'system', 'urn:tubeloop:masked-id:' || d.id_type, 'value', d.id_masked)),
      'name', CASE WHEN d.name_masked IS NOT NULL
                   THEN jsonb_build_array(jsonb_build_object('use', 'anonymous', 'text', d.name_masked)) END)) AS res
    FROM (SELECT DISTINCT ON (pseudonym) * FROM sw ORDER BY pseudonym) d
    UNION ALL
    -- the tube's specimen: the container is the tube; a pooled one originates from the swabs
    SELECT t.ord, 1, t.code, jsonb_strip_nulls(jsonb_build_object(
      'resourceType', 'Specimen', 'id', md5('tubeloop:specimen:' || t.code)::uuid,
      'identifier', jsonb_build_array(jsonb_build_object('system', 'urn:tubeloop:tube', 'value', t.code)),
      'accessionIdentifier', jsonb_build_object('system', 'urn:tubeloop:tube', 'value', t.code),
      'status', 'available', 'type', (SELECT swab FROM coding), 'subject', s.ref,
      'receivedTime', tl_x_time(t.received_at),
      'parent', CASE WHEN t.pooled THEN (SELECT jsonb_agg(jsonb_build_object('reference',
                  'urn:uuid:' || md5('tubeloop:swab:' || w.tube || '/' || w.n)::uuid, 'type', 'Specimen') ORDER BY w.n)
                  FROM sw w WHERE w.tube = t.code) END,
      'collection', jsonb_build_object('collectedDateTime', tl_x_time(coalesce(t.first_sample_at, t.opened_at))),
      'processing', CASE WHEN t.pooled THEN jsonb_build_array(jsonb_build_object(
                      'description', format('pooled %s-in-1: %s swabs', t.capacity, t.sampled),
                      'timeDateTime', tl_x_time(t.sealed_at))) END,
      'container', jsonb_build_array(jsonb_build_object(
        'identifier', jsonb_build_array(jsonb_build_object('system', 'urn:tubeloop:tube', 'value', t.code)),
        'description', format('sample tube %s (capacity %s) from site %s %s', t.code, t.capacity, t.site, t.site_name))),
      'note', jsonb_build_array(jsonb_build_object('text', format('round %s, site %s', t.round, t.site)))))
    FROM tt t JOIN subj s ON s.code = t.code
    UNION ALL
    -- a pooled tube's swabs, one per person, each with its patient
    SELECT t.ord, 2, lpad(w.n::text, 4, '0'), jsonb_build_object(
      'resourceType', 'Specimen', 'id', md5('tubeloop:swab:' || w.tube || '/' || w.n)::uuid,
      'identifier', jsonb_build_array(jsonb_build_object('system', 'urn:tubeloop:swab', 'value', w.tube || '.' || w.n)),
      'status', 'unavailable', 'type', (SELECT swab FROM coding),
      'subject', jsonb_build_object('reference', 'urn:uuid:' || w.pseudonym, 'type', 'Patient'),
      'collection', jsonb_build_object('collectedDateTime', tl_x_time(w.at)),
      'note', jsonb_build_array(jsonb_build_object('text', 'pooled into tube ' || w.tube)))
    FROM tt t JOIN sw w ON w.tube = t.code WHERE t.pooled
    UNION ALL
    SELECT t.ord, 3, t.code, jsonb_strip_nulls(jsonb_build_object(
      'resourceType', 'Group', 'id', md5('tubeloop:group:' || t.code)::uuid,
      'identifier', jsonb_build_array(jsonb_build_object('system', 'urn:tubeloop:tube', 'value', t.code)),
      'type', 'person', 'actual', true, 'name', 'persons of pooled tube ' || t.code,
      'quantity', (SELECT count(*) FROM sw w WHERE w.tube = t.code),
      'member', (SELECT jsonb_agg(jsonb_build_object('entity', jsonb_build_object(
                   'reference', 'urn:uuid:' || w.pseudonym, 'type', 'Patient')) ORDER BY w.n)
                 FROM sw w WHERE w.tube = t.code)))
    FROM tt t WHERE t.pooled
    UNION ALL
    SELECT t.ord, 4, t.code, jsonb_strip_nulls(jsonb_build_object(
      'resourceType', 'Observation', 'id', md5('tubeloop:observation:' || t.code)::uuid,
      'identifier', jsonb_build_array(jsonb_build_object('system', 'urn:tubeloop:tube-result', 'value', t.code)),
      'status', t.status,
      'category', jsonb_build_array(jsonb_build_object('coding', jsonb_build_array(jsonb_build_object(
        'system', 'http://terminology.hl7.org/CodeSystem/observation-category', 'code', 'laboratory')))),
      'code', (SELECT loinc FROM coding), 'subject', s.ref,
      'effectiveDateTime', tl_x_time(coalesce(t.first_sample_at, t.opened_at, t.result_at)),
      'issued', tl_x_time(t.result_at),
      'performer', CASE WHEN t.lab IS NOT NULL THEN jsonb_build_array(jsonb_build_object('type', 'Organization',
        'identifier', jsonb_build_object('system', 'urn:tubeloop:lab', 'value', t.lab), 'display', t.lab_name)) END,
      'valueCodeableConcept', jsonb_build_object('coding', jsonb_build_array(jsonb_build_object(
        'system', 'http://snomed.info/sct', 'code', t.value[1], 'display', t.value[2])), 'text', t.result),
      'interpretation', CASE WHEN t.result IN ('negative', 'positive') THEN jsonb_build_array(jsonb_build_object(
        'coding', jsonb_build_array(jsonb_build_object(
          'system', 'http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation',
          'code', CASE t.result WHEN 'positive' THEN 'POS' ELSE 'NEG' END,
          'display', CASE t.result WHEN 'positive' THEN 'Positive' ELSE 'Negative' END)))) END,
      'note', CASE WHEN t.pooled AND t.result <> 'negative' THEN jsonb_build_array(jsonb_build_object('text',
        'pooled tube: every person of it is called back for a single-tube test')) END,
      'specimen', jsonb_build_object('reference', t.spec_ref, 'type', 'Specimen'),
      'component', (SELECT jsonb_agg(jsonb_build_object('code', jsonb_build_object('text', c.key || ' Ct'),
                      'valueQuantity', jsonb_build_object('value', c.value, 'unit', 'Ct')) ORDER BY c.key)
                    FROM jsonb_each(CASE WHEN jsonb_typeof(t.ct) = 'object' THEN t.ct END) c
                    WHERE jsonb_typeof(c.value) = 'number')))
    FROM tt t JOIN subj s ON s.code = t.code
    UNION ALL
    SELECT t.ord, 5, t.code, jsonb_strip_nulls(jsonb_build_object(
      'resourceType', 'DiagnosticReport', 'id', md5('tubeloop:report:' || t.code)::uuid,
      'identifier', jsonb_build_array(jsonb_build_object('system', 'urn:tubeloop:tube-report', 'value', t.code)),
      'status', t.status,
      'category', jsonb_build_array(jsonb_build_object('coding', jsonb_build_array(jsonb_build_object(
        'system', 'http://terminology.hl7.org/CodeSystem/v2-0074', 'code', 'LAB', 'display', 'Laboratory')))),
      'code', (SELECT loinc FROM coding), 'subject', s.ref,
      'effectiveDateTime', tl_x_time(coalesce(t.first_sample_at, t.opened_at, t.result_at)),
      'issued', tl_x_time(t.result_at),
      'performer', CASE WHEN t.lab IS NOT NULL THEN jsonb_build_array(jsonb_build_object('type', 'Organization',
        'identifier', jsonb_build_object('system', 'urn:tubeloop:lab', 'value', t.lab), 'display', t.lab_name)) END,
      'specimen', jsonb_build_array(jsonb_build_object('reference', t.spec_ref, 'type', 'Specimen')),
      'result', jsonb_build_array(jsonb_build_object('reference', t.obs_ref, 'type', 'Observation')),
      'conclusion', t.result))
    FROM tt t JOIN subj s ON s.code = t.code
  )
  SELECT jsonb_strip_nulls(jsonb_build_object(
    'resourceType', 'Bundle',
    'meta', jsonb_build_object('lastUpdated', tl_x_time(now())),
    'type', 'collection', 'timestamp', tl_x_time(now()),
    'link', jsonb_build_array(jsonb_build_object('relation', 'self', 'url', p_next_base ||
              CASE WHEN p_after_site IS NOT NULL THEN '&cursor=' || p_after_site || '.' || p_after_code ELSE '' END))
            || CASE WHEN cur.c IS NOT NULL THEN jsonb_build_array(jsonb_build_object(
                 'relation', 'next', 'url', p_next_base || '&cursor=' || cur.c)) ELSE '[]' END,
    'entry', (SELECT jsonb_agg(jsonb_build_object('fullUrl', 'urn:uuid:' || (e.res ->> 'id'),
                                                           'resource', e.res)
                                        ORDER BY e.ord, e.kind, e.k) FROM entries e)))::text,
    cur.c
  FROM cur
$$;

-- ---------------------------------------------------------------------------------------------
-- HL7 v2.5.1: one ORU^R01 message per person and resulted tube (a message has one patient),
-- inside a batch (BHS … BTS with the message count). Segments MSH PID ORC OBR OBX [OBX per Ct]
-- SPM; the specimen is the tested tube, a pooled one with the person's swab as its parent
-- (SPM-3), the pool's size (SPM-13) and role L (pool, table 0369).
CREATE FUNCTION tl_hl7_batch(p_code text, p_is_site boolean, p_rounds text[], p_role text,
                             p_scope text, p_region text, p_after_site text, p_after_code text,
                             p_limit int)
RETURNS TABLE (body text, next_cursor text) LANGUAGE sql STABLE AS $$
  WITH page AS (
    SELECT (x.tube).*, x.ord, x.next_cursor FROM tl_export_page(p_code, p_is_site, p_rounds, p_role,
      p_scope, p_region, p_after_site, p_after_code, p_limit) x
  ), cur AS (
    SELECT (SELECT max(next_cursor) FROM page) AS c
  ), msg AS (
    SELECT t.ord, w.n, t.code, w.pseudonym, t.capacity > 1 AS pooled,
      CASE WHEN tl_result_amended(t.code) THEN 'C' ELSE 'F' END AS status,
      tl_result_snomed(t.result) AS value, t.result, t.ct, t.sampled, t.received_at, t.result_at,
      w.at, w.name_masked, coalesce(t.result_lab, t.received_lab) AS lab, l.name AS lab_name
    FROM page t JOIN tl_export_samples(ARRAY(SELECT code FROM page)) w ON w.tube = t.code
    LEFT JOIN labs l ON l.code = coalesce(t.result_lab, t.received_lab)
  ), segs AS (
    SELECT m.ord, m.n,
      tl_hl7_segment('MSH', ARRAY['^~\&', 'TUBELOOP', tl_hl7_esc(m.lab), NULL, NULL,
        tl_hl7_time(now()), NULL, 'ORU^R01^ORU_R01', left(md5(m.code || '/' || m.pseudonym), 20),
        'P', '2.5.1', NULL, NULL, 'NE', 'NE', 'CHN', 'UNICODE UTF-8'])
      || tl_hl7_segment('PID', ARRAY['1', NULL, m.pseudonym || '^^^TUBELOOP^PI', NULL,
        CASE WHEN m.name_masked IS NULL THEN '^^^^^^U' ELSE tl_hl7_esc(m.name_masked) || '^^^^^^S' END])
      || tl_hl7_segment('ORC', ARRAY['RE', m.code || '^TUBELOOP', m.code || '^' || tl_hl7_esc(m.lab), NULL, 'CM'])
      || tl_hl7_segment('OBR', ARRAY['1', m.code || '^TUBELOOP', m.code || '^' || tl_hl7_esc(m.lab),
        '94500-6^SARS-CoV-2 RNA Resp Ql NAA+probe^LN', NULL, NULL, tl_hl7_time(m.at),
        NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
        tl_hl7_time(m.result_at), NULL, NULL, m.status])
      || tl_hl7_segment('OBX', ARRAY['1', 'CWE', '94500-6^SARS-CoV-2 RNA Resp Ql NAA+probe^LN', '1',
        m.value[1] || '^' || m.value[2] || '^SCT', NULL, NULL,
        CASE m.result WHEN 'negative' THEN 'N' WHEN 'positive' THEN 'A' END, NULL, NULL, m.status,
        NULL, NULL, tl_hl7_time(m.at), NULL, NULL, NULL, NULL, tl_hl7_time(m.result_at),
        NULL, NULL, NULL, CASE WHEN m.lab IS NOT NULL THEN tl_hl7_esc(coalesce(m.lab_name, m.lab))
                               || '^^^^^^^^^' || tl_hl7_esc(m.lab) END])
      || coalesce((SELECT string_agg(tl_hl7_segment('OBX', ARRAY[(1 + c.i)::text, 'NM',
           '^' || tl_hl7_esc(c.key || ' Ct') || '^L', '1', c.value::text, 'Ct', NULL, NULL, NULL, NULL,
           m.status]), '' ORDER BY c.i)
         FROM (SELECT k.key, k.value, row_number() OVER (ORDER BY k.key) AS i
               FROM jsonb_each(CASE WHEN jsonb_typeof(m.ct) = 'object' THEN m.ct END) k
               WHERE jsonb_typeof(k.value) = 'number') c), '')
      || tl_hl7_segment('SPM', ARRAY['1', m.code || '&TUBELOOP',
        CASE WHEN m.pooled THEN m.code || '.' || m.n || '&TUBELOOP' END,
        '258529004^Throat swab^SCT', NULL, NULL, NULL, NULL, NULL, NULL,
        CASE WHEN m.pooled THEN 'L^Pool^HL70369' END, NULL,
        CASE WHEN m.pooled THEN m.sampled::text END, NULL, NULL, NULL,
        tl_hl7_time(m.at), tl_hl7_time(m.received_at)]) AS t
    FROM msg m
  )
  SELECT tl_hl7_segment('BHS', ARRAY['^~\&', 'TUBELOOP', tl_hl7_esc(p_code), NULL, NULL,
           tl_hl7_time(now()), NULL, NULL, NULL, left(md5(random()::text), 20)])
         || coalesce((SELECT string_agg(x.t, '' ORDER BY x.ord, x.n) FROM segs x), '')
         || tl_hl7_segment('BTS', ARRAY[(SELECT count(*) FROM segs)::text]),
         cur.c
  FROM cur
$$;

-- ---------------------------------------------------------------------------------------------
-- EPCIS 2.0: the custody events of a region's tubes of the given rounds and of the boxes they
-- travelled in, in (time, id) order after the cursor, as one EPCISDocument per page. Each
-- tubeloop event becomes one EPCIS event whose eventID is the event's own UUID:
--   tube.open    ObjectEvent ADD      commissioning  active
--   sample.add   ObjectEvent OBSERVE  sampling       container_open
--   tube.seal    ObjectEvent OBSERVE  sampling       container_closed
--   box.pack     AggregationEvent ADD packing        container_open   (box ⊃ tubes)
--   box.seal     ObjectEvent OBSERVE  packing        container_closed (destination: the lab)
--   box.pickup   ObjectEvent OBSERVE  shipping       in_transit       (site → courier)
--   box.deliver  ObjectEvent OBSERVE  arriving       in_progress      (courier → lab)
--   box.receive  AggregationEvent DELETE receiving  in_progress      (tubes scanned out)
--   tube.reject  ObjectEvent OBSERVE  inspecting     non_conformant
--   tube.result  ObjectEvent OBSERVE  inspecting     (no disposition; the result itself goes
--                                                     through FHIR/HL7, not custody)
CREATE FUNCTION tl_epcis_loc(kind text, code text) RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$
  SELECT CASE WHEN code IS NOT NULL THEN jsonb_build_object('id', 'urn:tubeloop:' || kind || ':' || code) END
$$;

-- A sourceList/destinationList of one element (dir: 'source' or 'destination'), or NULL.
CREATE FUNCTION tl_epcis_list(ptype text, kind text, code text, dir text) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$
  SELECT CASE WHEN code IS NOT NULL THEN jsonb_build_array(jsonb_build_object('type', ptype,
                                                            dir, 'urn:tubeloop:' || kind || ':' || code)) END
$$;

CREATE FUNCTION tl_epcis_document(p_code text, p_is_site boolean, p_rounds text[], p_role text,
                                  p_scope text, p_region text, p_after_us bigint, p_after_id uuid,
                                  p_limit int)
RETURNS TABLE (body text, next_cursor text) LANGUAGE sql STABLE AS $$
  WITH tb AS (
    SELECT t.code, t.box, t.received_box FROM tubes t
    WHERE t.round = ANY (p_rounds)
      AND t.site = ANY (ARRAY(SELECT s.code FROM sites s
                              WHERE CASE WHEN p_is_site THEN s.code = p_code
                                         ELSE left(s.township, length(p_code)) = p_code END))
      AND tl_sees(p_role, p_scope, p_region, t.region, t.site,
                  ARRAY[t.received_lab, t.result_lab, t.rejected_lab], NULL)
  ), bx AS (
    -- the boxes those tubes were packed in or scanned out of, if they are in the region too
    SELECT b.code FROM boxes b
    WHERE b.code IN (SELECT box FROM tb UNION SELECT received_box FROM tb)
      AND CASE WHEN p_is_site THEN b.site = p_code ELSE left(b.region, length(p_code)) = p_code END
      AND tl_sees(p_role, p_scope, p_region, b.region, b.site,
                  ARRAY[b.dest_lab, b.delivered_lab, b.received_lab], b.courier)
  ), got AS (
    SELECT e.*, (extract(epoch FROM e.at) * 1000000)::bigint AS us FROM events e
    WHERE (e.tube = ANY (ARRAY(SELECT code FROM tb)) OR e.box = ANY (ARRAY(SELECT code FROM bx)))
      AND (p_after_us IS NULL OR ((extract(epoch FROM e.at) * 1000000)::bigint, e.id) > (p_after_us, p_after_id))
    ORDER BY e.at, e.id LIMIT p_limit + 1
  ), page AS (
    SELECT g.* FROM got g ORDER BY g.at, g.id LIMIT p_limit
  ), cur AS (
    SELECT CASE WHEN (SELECT count(*) FROM got) > p_limit THEN
             (SELECT p.us || '_' || p.id FROM page p ORDER BY p.at DESC, p.id DESC LIMIT 1) END AS c
  ), ev AS (
    SELECT e.at, e.id, jsonb_strip_nulls(jsonb_build_object(
      'type', CASE WHEN e.type IN ('box.pack', 'box.receive') THEN 'AggregationEvent' ELSE 'ObjectEvent' END,
      'eventID', 'urn:uuid:' || e.id,
      'eventTime', tl_x_time(e.at), 'eventTimeZoneOffset', to_char(e.at, 'TZH:TZM'),
      'recordTime', tl_x_time(e.received_at),
      'action', CASE e.type WHEN 'tube.open' THEN 'ADD' WHEN 'box.pack' THEN 'ADD'
                            WHEN 'box.receive' THEN 'DELETE' ELSE 'OBSERVE' END,
      'epcList', CASE WHEN e.type NOT IN ('box.pack', 'box.receive') THEN
                   jsonb_build_array('urn:tubeloop:' || CASE WHEN e.tube IS NOT NULL THEN 'tube:' || e.tube
                                                             ELSE 'box:' || e.box END) END,
      'parentID', CASE WHEN e.type IN ('box.pack', 'box.receive') THEN 'urn:tubeloop:box:' || e.box END,
      'childEPCs', CASE WHEN e.type IN ('box.pack', 'box.receive') THEN
                     (SELECT coalesce(jsonb_agg('urn:tubeloop:tube:' || c ORDER BY c), '[]')
                      FROM jsonb_array_elements_text(e.body -> 'tubes') c) END,
      'bizStep', CASE e.type WHEN 'tube.open' THEN 'commissioning' WHEN 'sample.add' THEN 'sampling'
                   WHEN 'tube.seal' THEN 'sampling' WHEN 'box.pack' THEN 'packing' WHEN 'box.seal' THEN 'packing'
                   WHEN 'box.pickup' THEN 'shipping' WHEN 'box.deliver' THEN 'arriving'
                   WHEN 'box.receive' THEN 'receiving' ELSE 'inspecting' END,
      'disposition', CASE e.type WHEN 'tube.open' THEN 'active' WHEN 'sample.add' THEN 'container_open'
                   WHEN 'tube.seal' THEN 'container_closed' WHEN 'box.pack' THEN 'container_open'
                   WHEN 'box.seal' THEN 'container_closed' WHEN 'box.pickup' THEN 'in_transit'
                   WHEN 'box.deliver' THEN 'in_progress' WHEN 'box.receive' THEN 'in_progress'
                   WHEN 'tube.reject' THEN 'non_conformant' END,
      'readPoint', CASE e.sender_role WHEN 'collector' THEN tl_epcis_loc('site', e.sender)
                     WHEN 'lab' THEN tl_epcis_loc('lab', e.sender)
                     ELSE CASE e.type WHEN 'box.pickup' THEN tl_epcis_loc('site', b.site)
                                      ELSE tl_epcis_loc('lab', e.body ->> 'lab') END END,
      'bizLocation', CASE e.sender_role WHEN 'collector' THEN tl_epcis_loc('site', e.sender)
                       WHEN 'lab' THEN tl_epcis_loc('lab', e.sender)
                       ELSE CASE WHEN e.type = 'box.deliver' THEN tl_epcis_loc('lab', e.body ->> 'lab') END END,
      'sourceList', CASE e.type
                      WHEN 'box.pickup' THEN tl_epcis_list('possessing_party', 'site', b.site, 'source')
                      WHEN 'box.deliver' THEN tl_epcis_list('possessing_party', 'courier',
                        CASE WHEN e.sender_role = 'courier' THEN e.sender ELSE b.courier END, 'source') END,
      'destinationList', CASE e.type
                      WHEN 'box.seal' THEN tl_epcis_list('location', 'lab', e.body ->> 'lab', 'destination')
                      WHEN 'box.pickup' THEN tl_epcis_list('possessing_party', 'courier', e.sender, 'destination')
                      WHEN 'box.deliver' THEN tl_epcis_list('possessing_party', 'lab',
                        coalesce(e.body ->> 'lab', CASE WHEN e.sender_role = 'lab' THEN e.sender END), 'destination') END,
      'tl:round', e.body ->> 'round',
      'tl:capacity', CASE WHEN e.type = 'tube.open' THEN coalesce((e.body -> 'capacity'), to_jsonb(t.capacity)) END,
      'tl:rejectReason', e.body ->> 'reason')) AS j
    FROM page e LEFT JOIN boxes b ON b.code = e.box LEFT JOIN tubes t ON t.code = e.tube
  )
  SELECT jsonb_build_object(
    '@context', jsonb_build_array('https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld',
                                  jsonb_build_object('tl', 'urn:tubeloop:epcis:')),
    'type', 'EPCISDocument', 'schemaVersion', '2.0', 'creationDate', tl_x_time(now()),
    'epcisBody', jsonb_build_object('eventList',
      (SELECT coalesce(jsonb_agg(ev.j ORDER BY ev.at, ev.id), '[]') FROM ev)))::text,
    cur.c
  FROM cur
$$;
