#!/usr/bin/env bash
# test.sh: builds opg and runs the whole test suite twice: a Release build and
# an ASan+UBSan build. Prints the number of tests. Usage: scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh
opg_install_deps

# The real default model for the end-to-end test (cli_run skips, visibly, without it).
scripts/fetch-model.sh || echo "opg: WARNING: could not fetch the default model; cli_run will be skipped" >&2

jobs=$(nproc 2>/dev/null || echo 2)
run_suite() { # build-dir build-type
    local dir=$1 type=$2
    echo "== $type build ($dir)"
    cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE="$type" >/dev/null
    cmake --build "$dir" -j"$jobs"
    echo "== $type tests"
    (cd "$dir" && ctest -j"$jobs" --output-on-failure --timeout 900) | tee "$dir/ctest.log"
    local summary
    summary=$(grep -E 'tests passed|tests failed' "$dir/ctest.log" | tail -1)
    # ctest hides a skipped test's output: show why the GPU tests skipped
    grep -q 'test_gpu_.*Skipped' "$dir/ctest.log" &&
    (cd "$dir" && ctest -L gpu -V 2>&1 | grep -E '^[0-9]+: skipped:' | sed -E 's/^([0-9]+): /   test #\1: /') || true
    echo "== $type: $summary"
}
run_suite build Release
run_suite build-asan Asan
echo "== all test suites passed"
