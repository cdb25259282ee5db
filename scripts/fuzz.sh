#!/usr/bin/env bash
# fuzz.sh — the long fuzzing run (not part of the test command, which replays the corpora).
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]     default 60 s, every target
#
# Builds build/fuzz with clang, -DTL_FUZZ=ON (libFuzzer + ASan + UBSan), then runs each target
# on a scratch copy of its corpus (tests/fuzz/corpus/<target>) with its dictionary, and prints
# per target: executions, coverage, corpus size, crashes. New inputs stay in the scratch
# folder (build/fuzz/work/<target>); a crash leaves its input there too: turn it into a
# regression test by copying it into tests/fuzz/corpus/<target>/ once fixed.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=lib.sh
. "$top/scripts/lib.sh"
secs=${1:-60}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(http events idnum pii csv)

tl_deps
if ! command -v clang >/dev/null || ! ls /usr/lib/llvm-*/lib/clang/*/lib/linux/libclang_rt.fuzzer-x86_64.a >/dev/null 2>&1; then
  [ "$(id -u)" -eq 0 ] || tl_die "clang and libclang-rt-dev are needed: apt-get install clang libclang-rt-dev"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq clang libclang-rt-dev >/dev/null
fi
tl_say "build: build/fuzz (clang, libFuzzer, ASan+UBSan)"
CC=clang cmake -S "$top" -B "$top/build/fuzz" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTL_FUZZ=ON >/dev/null
cmake --build "$top/build/fuzz" -j"$(nproc)" --target $(printf 'fuzz_%s ' "${targets[@]}") >/dev/null

status=0
printf '\n%-8s %12s %8s %8s %8s\n' target execs cov corpus crashes
for t in "${targets[@]}"; do
  work="$top/build/fuzz/work/$t"
  mkdir -p "$work/corpus" "$work/crashes"
  cp -n "$top/tests/fuzz/corpus/$t/"* "$work/corpus/" 2>/dev/null || true
  dict=()
  case $t in http) dict=(-dict="$top/tests/fuzz/http.dict") ;; events) dict=(-dict="$top/tests/fuzz/json.dict") ;; csv) dict=(-dict="$top/tests/fuzz/csv.dict") ;; esac
  log="$work/run.log"
  set +e
  ASAN_OPTIONS=detect_leaks=1 "$top/build/fuzz/tests/fuzz/fuzz_$t" "${dict[@]}" -max_total_time="$secs" \
    -max_len=65536 -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$work/crashes/" "$work/corpus" >"$log" 2>&1
  rc=$?
  set -e
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo 0)
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*' || echo 0)
  crashes=$(find "$work/crashes" -type f | wc -l)
  printf '%-8s %12s %8s %8s %8s\n' "$t" "$execs" "$cov" "$(ls "$work/corpus" | wc -l)" "$crashes"
  if [ "$rc" -ne 0 ] || [ "$crashes" -ne 0 ]; then
    status=1
    tail -30 "$log"
  fi
done
exit $status
