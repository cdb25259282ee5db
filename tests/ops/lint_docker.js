// ctest ops_docker_lint — the docker/ files through real linters, since no Docker engine runs
// on the dev machines or in CI:
//   docker/Dockerfile   dockerfile-utils (the parser of the VS Code Docker extension: what the
//                       Docker builder itself would refuse) and dockerfilelint (best practice:
//                       apt-get -y and --no-install-recommends, ports, argument formats)
//   docker/compose.yaml the Compose Specification's JSON schema (the copy dclint ships) with
//                       ajv, dclint's rules with no warning allowed, and what the project
//                       needs of it (PostgreSQL 15, migrate first, /readyz, the demo profile,
//                       only variables that `tubeloopd --help` knows)
// Each linter also gets a broken input that it must refuse, so a linter that silently checks
// nothing fails this test. Linters: tests/ops/package-lock.json (scripts/lib.sh tl_ops_deps).
'use strict';

const fs = require('node:fs');
const path = require('node:path');
const { spawnSync } = require('node:child_process');

const here = __dirname;
const top = process.env.TUBELOOP_SOURCE_DIR || path.resolve(here, '../..');
const failures = [];
let checks = 0;

function check(ok, what) {
  checks++;
  if (!ok) failures.push(what);
}

function need(name) {
  try {
    return require(name);
  } catch (e) {
    console.error(`ops_docker_lint: ${name} is not installed (scripts/lib.sh tl_ops_deps): ${e.message}`);
    process.exit(1);
  }
}

const dockerfileUtils = need('dockerfile-utils');
const dockerfilelint = need('dockerfilelint');
const YAML = need('yaml');
const Ajv = need('ajv');

// ---- Dockerfile ---------------------------------------------------------------------------
function lintDockerfile(text) {
  const found = [];
  for (const d of dockerfileUtils.validate(text)) {
    found.push(`dockerfile-utils line ${d.range.start.line + 1}: ${d.message}`);
  }
  for (const d of dockerfilelint.run('Dockerfile', text)) {
    found.push(`dockerfilelint line ${d.line}: ${d.rule}: ${d.title}`);
  }
  return found;
}

const dockerfile = fs.readFileSync(path.join(top, 'docker/Dockerfile'), 'utf8');
const dfProblems = lintDockerfile(dockerfile);
check(dfProblems.length === 0, `docker/Dockerfile: ${dfProblems.join('; ')}`);

// Negative control: each linter must refuse something in this one.
const badDockerfile = 'FROM debian:12\nRUN apt-get install curl\nEXPOSE notaport\nCOPY onlyone\n';
const badFound = lintDockerfile(badDockerfile);
check(badFound.some((m) => m.startsWith('dockerfile-utils')), 'dockerfile-utils accepted a broken Dockerfile');
check(badFound.some((m) => m.includes('apt-get_missing_param')), 'dockerfilelint accepted apt-get without -y');

// ---- compose.yaml -------------------------------------------------------------------------
const composePath = path.join(top, 'docker/compose.yaml');
const composeText = fs.readFileSync(composePath, 'utf8');
const doc = YAML.parseDocument(composeText, { merge: true });
check(doc.errors.length === 0, `compose.yaml is not valid YAML: ${doc.errors.map(String).join('; ')}`);
const compose = doc.toJS();

const dclintDir = path.join(here, 'node_modules/dclint'); // its exports hide these files
const schemaPath = path.join(dclintDir, 'schemas/compose.schema.json');
// The file names draft-07 as "https://json-schema.org/draft-07/schema", which ajv knows as
// "http://json-schema.org/draft-07/schema#": drop the name, ajv's default draft is 07.
const { $schema: draft, ...schema } = JSON.parse(fs.readFileSync(schemaPath, 'utf8'));
check(/draft-07/.test(draft), `the compose schema is ${draft}, not draft-07`);
const ajv = new Ajv({ allErrors: true, strict: false, allowUnionTypes: true });
const validate = ajv.compile(schema);
const schemaErrors = (obj) => (validate(obj) ? [] : validate.errors.map((e) => `${e.instancePath} ${e.message}`));
const ce = schemaErrors(compose);
check(ce.length === 0, `compose.yaml against the Compose Specification schema: ${ce.join('; ')}`);

// Negative controls for the schema: a misspelt health-check key, a bad depends_on condition.
const broken = structuredClone(compose);
broken.services.tubeloopd.healthcheck.intervall = '10s';
check(schemaErrors(broken).length > 0, 'the schema accepted healthcheck.intervall');
const broken2 = structuredClone(compose);
broken2.services.tubeloopd.depends_on.migrate.condition = 'service_done';
check(schemaErrors(broken2).length > 0, 'the schema accepted depends_on condition service_done');

// dclint: its own schema check and rules, warnings are failures.
const dclintBin = path.join(dclintDir, 'bin/dclint.cjs');
function dclint(file) {
  return spawnSync(process.execPath, [dclintBin, '--max-warnings', '0', '--no-color', file],
                   { encoding: 'utf8', env: { ...process.env, NO_COLOR: '1' } });
}
const dc = dclint(composePath);
check(dc.status === 0, `dclint docker/compose.yaml (exit ${dc.status}):\n${dc.stdout}${dc.stderr}`);
const tmp = fs.mkdtempSync(path.join(process.env.TUBELOOP_TEST_TMP || require('node:os').tmpdir(), 'ops-lint-'));
try {
  const bad = path.join(tmp, 'compose.yaml');
  fs.writeFileSync(bad, 'version: "3"\nservices:\n  web:\n    image: nginx\n    ports:\n      - 8080:80\n');
  check(dclint(bad).status !== 0, 'dclint accepted an untagged image, a version field and unquoted ports');
} finally {
  fs.rmSync(tmp, { recursive: true, force: true });
}

// What the project needs of the compose file.
const s = compose.services || {};
check(/^postgres:15(\.|$)/.test(s.postgres?.image || ''), 'postgres must run the postgres:15 image');
check((s.postgres?.healthcheck?.test || []).join(' ').includes('pg_isready'), 'postgres needs a pg_isready health check');
check(JSON.stringify(s.migrate?.command) === '["migrate"]', 'migrate must run `tubeloopd migrate`');
check(s.migrate?.depends_on?.postgres?.condition === 'service_healthy', 'migrate must wait for a healthy postgres');
check(s.migrate?.build?.dockerfile === 'docker/Dockerfile' && s.migrate?.build?.context === '..',
      'migrate builds docker/Dockerfile from the repository root');
check(s.tubeloopd?.depends_on?.migrate?.condition === 'service_completed_successfully',
      'tubeloopd must start only after migrate succeeded');
check((s.tubeloopd?.healthcheck?.test || []).some((a) => /^https:\/\/127\.0\.0\.1:8443\/readyz$/.test(a)),
      'tubeloopd health check must ask /readyz on its listen port');
check(s.tubeloopd?.environment?.TUBELOOP_LISTEN === '0.0.0.0:8443', 'tubeloopd listens on 8443 (the health check asks there)');
check((s.simulator?.profiles || []).includes('demo'), 'the simulator must be in the optional profile "demo"');
check(s.simulator?.depends_on?.tubeloopd?.condition === 'service_healthy', 'the simulator waits for a healthy tubeloopd');
for (const name of ['migrate', 'tubeloopd', 'simulator']) {
  check(s[name]?.image === s.migrate?.image, `${name} must run the image that migrate builds`);
}
const entry = (s.simulator?.entrypoint || [])[0] || '';
check(new RegExp(`^COPY docker/simulate\\.sh ${entry.replace(/[.]/g, '\\.')}$`, 'm').test(dockerfile),
      `the simulator's entrypoint ${entry} must be the docker/simulate.sh the Dockerfile copies`);
check(fs.statSync(path.join(top, 'docker/simulate.sh')).mode & 0o111, 'docker/simulate.sh must be executable');

// Every TUBELOOP_* variable given to tubeloopd (compose, Dockerfile ENV) is one it reads.
const help = spawnSync(process.env.TUBELOOPD || 'tubeloopd', ['--help'], { encoding: 'utf8' });
check(help.status === 0, `tubeloopd --help failed: ${help.error || help.stderr}`);
const used = new Set();
for (const name of ['migrate', 'tubeloopd']) {
  for (const k of Object.keys(s[name]?.environment || {})) used.add(k);
}
for (const m of dockerfile.matchAll(/^ENV (TUBELOOP_[A-Z_]+)=/gm)) used.add(m[1]);
for (const k of used) {
  check(k.startsWith('TUBELOOP_') && new RegExp(`\\b${k}\\b`).test(help.stdout || ''),
        `${k} is given to tubeloopd but \`tubeloopd --help\` does not know it`);
}

if (failures.length > 0) {
  for (const f of failures) console.error(`FAIL ${f}`);
  console.log(`ops_docker_lint: ${checks - failures.length} passed, ${failures.length} failed`);
  process.exit(1);
}
console.log(`ops_docker_lint: ${checks} passed, 0 failed (dockerfile-utils, dockerfilelint, ajv + compose-spec schema, dclint)`);
