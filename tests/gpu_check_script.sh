#!/usr/bin/env bash
# gpu_check_script.sh TEST_GPU_KERNELS TEST_GPU_MODEL TINY_DIR: bench/gpu_check.sh's
# sanitize phase with a stand-in compute-sanitizer (no GPU needed), checking the
# budget that keeps the phase inside one device call (GPU_CHECK_SAN_BUDGET):
# runs fit while 10 s are left, the rest are rows "not run", a run the budget
# cuts is a note (no verdict) while one the per-run timeout cuts is a FAIL, and
# bad values are usage errors (exit 2); and the joining of the real model's
# parts (gpu_carry.sh --model-parts) when all have come; the rerun of each
# test of a failed GPU test binary in a process of its own.
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

# 13 s for runs of 2 s: two fit (12 and 10 whole seconds left), then 8 is under 10
stand_in 2
PATH="$tmp/bin:$PATH" GPU_CHECK_BUILD="$tmp/b" GPU_CHECK_SAN_BUDGET=13 \
    "$root/bench/gpu_check.sh" "$tmp/out" sanitize >"$tmp/log" 2>&1
rc=$?
[ $rc -eq 0 ] || fail "budget 13: exit $rc: $(cat "$tmp/log")"
[ "$(rows '| ok |')" -eq 2 ] || fail "budget 13: not 2 runs ok: $(cat "$tmp/out/summary.md")"
[ "$(rows 'not run: GPU_CHECK_SAN_BUDGET (13 s) spent')" -eq 4 ] || fail "budget 13: not 4 rows not run: $(cat "$tmp/out/summary.md")"
grep -q '| sanitize | memcheck test_gpu_kernels | ok |' "$tmp/out/summary.md" || fail "memcheck of the kernels not first"

# a run longer than the budget is cut at what is left: no verdict, not a failure
stand_in 30
PATH="$tmp/bin:$PATH" GPU_CHECK_BUILD="$tmp/b" GPU_CHECK_SAN_BUDGET=11 \
    "$root/bench/gpu_check.sh" "$tmp/out" sanitize >"$tmp/log" 2>&1
rc=$?
[ $rc -eq 0 ] || fail "a run cut by the budget: exit $rc, expected 0: $(cat "$tmp/log")"
grep -q '| memcheck test_gpu_kernels | note | cut by GPU_CHECK_SAN_BUDGET after 1[01] s: no verdict |' \
    "$tmp/out/summary.md" || fail "a run cut by the budget: $(cat "$tmp/out/summary.md")"
[ "$(rows 'not run')" -eq 5 ] || fail "after a cut run: $(cat "$tmp/out/summary.md")"

# the per-run timeout still fails a run (a hang), within the budget: 1 s runs
# while 10 s are left (12, 11, 10)
PATH="$tmp/bin:$PATH" GPU_CHECK_BUILD="$tmp/b" GPU_CHECK_SAN_BUDGET=13 GPU_CHECK_SAN_TIMEOUT=1 \
    "$root/bench/gpu_check.sh" "$tmp/out" sanitize >"$tmp/log" 2>&1
rc=$?
[ $rc -eq 1 ] || fail "per-run timeout: exit $rc, expected 1: $(cat "$tmp/log")"
[ "$(rows '| FAIL | timed out after 1 s |')" -ge 2 ] || fail "per-run timeout: $(cat "$tmp/out/summary.md")"

for bad in "GPU_CHECK_SAN_BUDGET=ten" "GPU_CHECK_SAN_TIMEOUT=0" "GPU_CHECK_SAN_BUDGET=99999999999999999999" \
    "GPU_CHECK_TEST_TIMEOUT=0" "GPU_CHECK_TEST_TIMEOUT=3m" "GPU_CHECK_BENCH_TIMEOUT=-5" "GPU_CHECK_BENCH_TIMEOUT=12345678"; do
    env "$bad" "$root/bench/gpu_check.sh" "$tmp/out" sanitize >"$tmp/log" 2>&1
    rc=$?
    [ $rc -eq 2 ] && grep -q "whole seconds" "$tmp/log" || fail "$bad: exit $rc: $(cat "$tmp/log")"
done
# the real model carried in parts (gpu_carry.sh --model-parts): a call with
# some parts notes what is missing; once all are there they are joined and
# checked; parts that join into other bytes fail and leave no model
mkdir -p "$tmp/parts" "$tmp/models"
head -c 300000 /dev/urandom >"$tmp/whole"
sha=$(sha256sum "$tmp/whole" | cut -d' ' -f1)
head -c 200000 "$tmp/whole" >"$tmp/parts/part-1-of-2"
tail -c 100000 "$tmp/whole" >"$tmp/part2"
check_parts() { # EXPECTED-ROW: one env-phase call (its gpu row fails here: no GPU)
    GPU_CHECK_BUILD="$tmp/b" GPU_CHECK_MODEL_PARTS="$tmp/parts" GPU_CHECK_MODEL_SHA=$sha \
        OPG_MODEL="$tmp/models/m.gguf" "$root/bench/gpu_check.sh" "$tmp/out" env >"$tmp/log" 2>&1
    grep -q "| model | model parts | $1" "$tmp/out/summary.md" || fail "model parts: wanted '$1': $(cat "$tmp/out/summary.md")"
}
check_parts "note | part(s) 1 of 2 here; bring 2 in a later call"
[ ! -e "$tmp/models/m.gguf" ] || fail "a model from half its parts"
printf 'x' | cat - "$tmp/part2" | head -c 100000 >"$tmp/parts/part-2-of-2" # one byte off
check_parts "FAIL | the 2 parts joined do not have the expected sha256 $sha"
[ ! -e "$tmp/models/m.gguf" ] && [ ! -e "$tmp/models/m.gguf.joining" ] || fail "a model from bad parts"
cp "$tmp/part2" "$tmp/parts/part-2-of-2"
check_parts "ok | 2 parts joined into m.gguf, sha256 $sha"
cmp -s "$tmp/whole" "$tmp/models/m.gguf" || fail "the joined model differs"
check_parts "ok | 2 parts joined" # a later call: the model is there, the row stays

# a GPU test binary that failed by a device fault: each of its tests that
# did not pass, again in a process of its own; one that only found differing
# bits: none (stand-in nvidia-smi that sees a GPU; stand-in binaries: the
# kernels' passes test_a, then faults; alone test_b still fails and test_c
# passes; the model's fails by a difference only)
mkdir -p "$tmp/fb/tests"
cat >"$tmp/bin/nvidia-smi" <<'SH'
#!/bin/sh
echo "GPU 0: Stand-in (UUID: GPU-0)"
SH
cat >"$tmp/fb/tests/test_gpu_kernels" <<'SH'
#!/bin/sh
if [ -n "${OPG_TEST_LIST:-}" ]; then printf 'test_a\ntest_b\ntest_c\n'; exit 0; fi
case "${OPG_TEST_ONLY:-}" in
"") printf '[       OK ] test_a\nk.c:9: opg_cuda_matmul(s, y) returned -5: an illegal memory access was encountered\n'; exit 1 ;;
test_b) exit 1 ;;
*) exit 0 ;;
esac
SH
cat >"$tmp/fb/tests/test_gpu_model" <<'SH'
#!/bin/sh
[ -z "${OPG_TEST_LIST:-}" ] || { echo test_x; exit 0; }
printf 'f32: logits: 1 of 96 values differ in bits\n1 case(s) above differ\n[  ERROR   ] test_x\n'; exit 1
SH
chmod +x "$tmp/bin/nvidia-smi" "$tmp/fb/tests/test_gpu_kernels" "$tmp/fb/tests/test_gpu_model"
cat >"$tmp/fb/CTestTestfile.cmake" <<CM
add_test(test_gpu_kernels "$tmp/fb/tests/test_gpu_kernels")
set_tests_properties(test_gpu_kernels PROPERTIES LABELS "gpu")
add_test(test_gpu_model "$tmp/fb/tests/test_gpu_model")
set_tests_properties(test_gpu_model PROPERTIES LABELS "gpu")
CM
PATH="$tmp/bin:$PATH" GPU_CHECK_BUILD="$tmp/fb" OPG_TEST_ONLY=nothing "$root/bench/gpu_check.sh" "$tmp/out" test \
    >"$tmp/log" 2>&1
for want in "| test | test_gpu_kernels | FAIL |" "| test | test_gpu_model | FAIL |" \
    "| test | test_gpu_kernels test_b (alone) | FAIL |" "| test | test_gpu_kernels test_c (alone) | ok |"; do
    grep -qF "$want" "$tmp/out/summary.md" || fail "reruns: no row '$want': $(cat "$tmp/out/summary.md")"
done
! grep -q "test_a (alone)\|test_x (alone)" "$tmp/out/summary.md" || fail "a rerun of a test that passed, or after a difference only: $(cat "$tmp/out/summary.md")"

echo "gpu_check.sh sanitize budget, model parts and isolated reruns: ok"
