#!/usr/bin/env bash
# gpu_check_script.sh TEST_GPU_KERNELS TEST_GPU_MODEL TINY_DIR: bench/gpu_check.sh's
# sanitize phase with a stand-in compute-sanitizer (no GPU needed), checking the
# budget that keeps the phase inside one device call (GPU_CHECK_SAN_BUDGET):
# runs fit while 10 s are left, the rest are rows "not run", a run cut by the
# budget is a FAIL "timed out", and a bad value is a usage error (exit 2).
set -u
[ $# -eq 3 ] || { echo "usage: $0 TEST_GPU_KERNELS TEST_GPU_MODEL TINY_DIR" >&2; exit 2; }
root=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
mkdir -p "$tmp/b/tests" "$tmp/bin"
ln -s "$1" "$tmp/b/tests/test_gpu_kernels"
ln -s "$2" "$tmp/b/tests/test_gpu_model"
ln -s "$3" "$tmp/b/tests/tiny"
# stand_in SECONDS: a compute-sanitizer that takes that long and finds nothing
stand_in() {
    printf '#!/bin/sh\nsleep %s\necho "========= ERROR SUMMARY: 0 errors"\nexit 0\n' "$1" >"$tmp/bin/compute-sanitizer"
    chmod +x "$tmp/bin/compute-sanitizer"
    rm -f "$tmp/b/gpu_check_results.tsv"
}
rows() { grep -c "$1" "$tmp/out/summary.md"; }

# 13 s for runs of 2 s: two fit (13, then 11 s left), then 9 s is under 10
stand_in 2
PATH="$tmp/bin:$PATH" GPU_CHECK_BUILD="$tmp/b" GPU_CHECK_SAN_BUDGET=13 \
    "$root/bench/gpu_check.sh" "$tmp/out" sanitize >"$tmp/log" 2>&1
rc=$?
[ $rc -eq 0 ] || fail "budget 13: exit $rc: $(cat "$tmp/log")"
[ "$(rows '| ok |')" -eq 2 ] || fail "budget 13: not 2 runs ok: $(cat "$tmp/out/summary.md")"
[ "$(rows 'not run: GPU_CHECK_SAN_BUDGET (13 s) spent')" -eq 4 ] || fail "budget 13: not 4 rows not run: $(cat "$tmp/out/summary.md")"
grep -q '| sanitize | memcheck test_gpu_kernels | ok |' "$tmp/out/summary.md" || fail "memcheck of the kernels not first"

# a run longer than the budget is cut at what is left
stand_in 30
PATH="$tmp/bin:$PATH" GPU_CHECK_BUILD="$tmp/b" GPU_CHECK_SAN_BUDGET=11 \
    "$root/bench/gpu_check.sh" "$tmp/out" sanitize >"$tmp/log" 2>&1
rc=$?
[ $rc -eq 1 ] || fail "a cut run: exit $rc, expected 1: $(cat "$tmp/log")"
grep -q '| memcheck test_gpu_kernels | FAIL | timed out after 1[01] s |' "$tmp/out/summary.md" \
    || fail "a cut run: $(cat "$tmp/out/summary.md")"
[ "$(rows 'not run')" -eq 5 ] || fail "after a cut run: $(cat "$tmp/out/summary.md")"

GPU_CHECK_SAN_BUDGET=ten "$root/bench/gpu_check.sh" "$tmp/out" sanitize >"$tmp/log" 2>&1
rc=$?
[ $rc -eq 2 ] && grep -q "whole seconds" "$tmp/log" || fail "GPU_CHECK_SAN_BUDGET=ten: exit $rc: $(cat "$tmp/log")"
echo "gpu_check.sh sanitize budget: ok"
