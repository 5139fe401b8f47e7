#!/usr/bin/env bash
# gpu_check.sh: on a machine with an NVIDIA GPU, in one go: configure and build
# opg with CUDA and without the network layers (-DOPG_NETWORK=OFF), run the
# GPU tests (ctest -L gpu) and the CPU suite, run compute-sanitizer over the
# GPU tests, the GPU part of opg-bench (--backend cuda, with a model), and
# `opg run` on the real model on the cpu and cuda backends (trace roots).
# Writes OUT_DIR/summary.md (a short table, also printed) and one full log per
# phase: env.log, build.log, test.log, sanitize.log, bench.log.
#
# The machine needs the CUDA toolkit, a C compiler, CMake and Python 3; the
# libraries it lacks come from the carry folder made by bench/gpu_carry.sh
# (default <repo>/.carry; docs/gpu.md). No network is used.
#
# Usage: bench/gpu_check.sh OUT_DIR [PHASE ...]
#   PHASE: env build test sanitize bench (default: all five, in this order).
#   Phases can be run in separate calls: the build folder keeps the build and
#   the results so far, and every call rewrites summary.md with all of them.
# Environment:
#   GPU_CHECK_BUILD   build folder (default <repo>/build-gpu)
#   GPU_CHECK_CARRY   carry folder (default <repo>/.carry)
#   GPU_CHECK_ARCHS   CUDA architectures (default when nvidia-smi sees a GPU: its
#                     compute capability, e.g. 90, else `native`; without a GPU
#                     the project's default list)
#   GPU_CHECK_DEPS    system | carry (default: system when pkg-config finds all)
#   GPU_CHECK_CARRY_PKGCONF=1  use the carry's pkgconf even where pkg-config exists
#   GPU_CHECK_SAN_TIMEOUT  seconds per compute-sanitizer run (default 300)
#   GPU_CHECK_SAN_BUDGET   seconds for the six compute-sanitizer runs together (default:
#                     none); each run gets at most what is left (a run the budget
#                     cuts is a note "cut by GPU_CHECK_SAN_BUDGET", one the per-run
#                     timeout cuts a FAIL), and the runs it leaves no 10 s for are
#                     notes "not run" (in this order: memcheck of both tests,
#                     racecheck, synccheck, initcheck of both)
#   GPU_CHECK_TEST_TIMEOUT  seconds per GPU test (ctest --timeout; default 180) and per
#                     test rerun alone
#   GPU_CHECK_BENCH_TIMEOUT seconds for opg-bench --backend cuda (default 240); each
#                     `opg run` of the bench phase gets 120
#   OPG_MODEL         the real model (default <repo>/models/SmolLM2-135M-Instruct.Q4_1.gguf)
#   GPU_CHECK_MODEL_PARTS  where the real model's parts are (default <repo>/.carry-model):
#                     when the model is missing, every call joins the parts
#                     bench/gpu_carry.sh --model-parts made (part-K-of-N) once all N
#                     are there, and checks the SHA-256 of scripts/fetch-model.sh
#                     (GPU_CHECK_MODEL_SHA overrides it); calls may bring one part each
# Exit status: 0 when no row is FAIL (note rows allowed), 1 otherwise, 2 for bad usage.
set -uo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [ $# -lt 1 ] || [ "${1:-}" = "-h" ] || [ "${1:-}" = "--help" ]; then
    awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
    [ $# -lt 1 ] && exit 2 || exit 0
fi
out=$1
shift
phases=("$@")
[ ${#phases[@]} -eq 0 ] && phases=(env build test sanitize bench)
for p in "${phases[@]}"; do
    case "$p" in env | build | test | sanitize | bench) ;;
    *) echo "gpu_check.sh: unknown phase '$p' (env build test sanitize bench)" >&2; exit 2 ;;
    esac
done
mkdir -p "$out" || exit 2
out=$(cd "$out" && pwd)
build=${GPU_CHECK_BUILD:-$root/build-gpu}
carry=${GPU_CHECK_CARRY:-$root/.carry}
model=${OPG_MODEL:-$root/models/SmolLM2-135M-Instruct.Q4_1.gguf}
parts_dir=${GPU_CHECK_MODEL_PARTS:-$root/.carry-model}
san_timeout=${GPU_CHECK_SAN_TIMEOUT:-300}
san_budget=${GPU_CHECK_SAN_BUDGET:-0}
test_timeout=${GPU_CHECK_TEST_TIMEOUT:-180}
bench_timeout=${GPU_CHECK_BENCH_TIMEOUT:-240}
if ! [[ $test_timeout =~ ^[1-9][0-9]{0,6}$ && $bench_timeout =~ ^[1-9][0-9]{0,6}$ ]]; then
    echo "gpu_check.sh: GPU_CHECK_TEST_TIMEOUT and GPU_CHECK_BENCH_TIMEOUT take whole seconds, at least 1" >&2
    exit 2
fi
# a test binary asked to list its tests or to run one would pass ctest having run nothing
unset OPG_TEST_LIST OPG_TEST_ONLY
# timeout 0 would mean no limit at all
if ! [[ $san_timeout =~ ^[0-9]{1,7}$ && $san_budget =~ ^[0-9]{1,7}$ ]] || [ "$san_timeout" -eq 0 ]; then
    echo "gpu_check.sh: GPU_CHECK_SAN_TIMEOUT (at least 1) and GPU_CHECK_SAN_BUDGET take whole seconds" >&2
    exit 2
fi
jobs=$(nproc 2>/dev/null || echo 4)
mkdir -p "$build"
results=$build/gpu_check_results.tsv # phase <tab> check <tab> ok|FAIL|note <tab> detail
touch "$results"

say() { echo "gpu_check: $*" >&2; }
# row PHASE CHECK STATUS DETAIL: replaces an earlier row of the same check
row() {
    local tmp
    tmp=$(mktemp)
    awk -F'\t' -v c="$2" '$2 != c' "$results" >"$tmp" && mv "$tmp" "$results"
    printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >>"$results"
    say "$2: $3 $4"
    write_summary # at every row: a call cut off at its limit still brings the table back
}
write_summary() {
    {
        echo "# opg GPU check"
        echo
        echo "$(date -u +%Y-%m-%dT%H:%M:%SZ), $(hostname), build $build"
        echo
        echo "| phase | check | result | detail |"
        echo "|---|---|---|---|"
        awk -F'\t' '{ printf "| %s | %s | %s | %s |\n", $1, $2, $3, $4 }' "$results"
        echo
        echo "Full logs beside this file: env.log build.log test.log sanitize.log bench.log."
    } >"$out/summary.md"
}
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

have_gpu() { command -v nvidia-smi >/dev/null && nvidia-smi -L 2>/dev/null | grep -q '^GPU '; }
# The GPUs' compute capabilities as a CMake architecture list ("90", "86;90"),
# empty when the driver does not say. Preferred to CMake's `native`, which
# needs CMake 3.24 and a device query at configure time.
gpu_archs() {
    nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | tr -d ' .\r' |
        grep -E '^[0-9]+$' | sort -un | paste -sd';' -
}

# ---- dependencies: the system's, else the carry's --------------------------------
pc_args=()
deps_mode=""
setup_deps() {
    [ -n "$deps_mode" ] && return 0
    local want=${GPU_CHECK_DEPS:-}
    if [ -z "$want" ]; then
        if command -v pkg-config >/dev/null &&
            pkg-config --exists libsodium libxxhash libpcre2-8 cmocka libcjson 2>/dev/null; then
            want=system
        else
            want=carry
        fi
    fi
    if [ "$want" = system ]; then
        deps_mode=system
        return 0
    fi
    local sr=$carry/sysroot libdir=$carry/sysroot/usr/lib/x86_64-linux-gnu
    if [ ! -d "$sr" ]; then
        say "no pkg-config modules libsodium libxxhash libpcre2-8 cmocka libcjson here and no carry at $carry"
        say "(run bench/gpu_carry.sh on a machine that has them, and bring .carry along)"
        return 1
    fi
    # only the carried .pc files, their paths under the sysroot
    export PKG_CONFIG_LIBDIR=$libdir/pkgconfig PKG_CONFIG_SYSROOT_DIR=$sr
    unset PKG_CONFIG_PATH
    local pc
    if command -v pkg-config >/dev/null && [ -z "${GPU_CHECK_CARRY_PKGCONF:-}" ]; then
        pc=$(command -v pkg-config)
    else
        # the carried pkgconf, through a wrapper so its library path stays its own
        pc=$build/pkgconf-carry.sh
        printf '#!/bin/sh\nLD_LIBRARY_PATH=%s exec %s "$@"\n' "$libdir" "$sr/usr/bin/pkgconf" >"$pc"
        chmod +x "$pc"
    fi
    "$pc" --exists libsodium libxxhash libpcre2-8 cmocka libcjson || {
        say "the carry's .pc files do not resolve with $pc"
        return 1
    }
    pc_args=(-DPKG_CONFIG_EXECUTABLE="$pc" -DCMAKE_BUILD_RPATH="$libdir")
    export LD_LIBRARY_PATH=$libdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
    deps_mode="carry ($carry)"
}

# The tiny models' generator needs numpy and gguf: gguf from the carry's wheel
# when missing; without numpy, the carry's pre-generated models (gpu_carry.sh
# --tiny) and ctest told not to run the generator fixture.
ctest_fixture_args=()
setup_python() {
    if python3 -c 'import numpy, gguf' 2>/dev/null; then return 0; fi
    if python3 -c 'import numpy' 2>/dev/null && ls "$carry"/wheels/gguf-*.whl >/dev/null 2>&1; then
        local site=$build/pysite
        if python3 -m pip install -q --no-index --no-deps --no-compile --upgrade --target "$site" \
            "$carry"/wheels/*.whl >/dev/null 2>&1; then
            export PYTHONPATH=$site${PYTHONPATH:+:$PYTHONPATH}
        else # a pure-Python wheel is an importable zip
            export PYTHONPATH=$(ls "$carry"/wheels/gguf-*.whl | head -1)${PYTHONPATH:+:$PYTHONPATH}
        fi
        python3 -c 'import numpy, gguf' 2>/dev/null && return 0
    fi
    if [ -d "$carry/tiny" ]; then
        mkdir -p "$build/tests/tiny"
        cp "$carry"/tiny/* "$build/tests/tiny/"
        ctest_fixture_args=(-FS tiny_models)
        say "tiny models: the carry's pre-generated ones"
        return 0
    fi
    say "python3 lacks numpy/gguf and the carry has no tiny models (gpu_carry.sh --tiny)"
    return 1
}

# ---- phases ----------------------------------------------------------------------------
phase_env() {
    local log=$out/env.log
    {
        echo "== date"; date -u
        echo "== uname"; uname -a
        echo "== os"; cat /etc/os-release 2>/dev/null | head -3
        echo "== glibc"; ldd --version 2>&1 | head -1
        echo "== nvidia-smi"; nvidia-smi 2>&1
        echo "== nvcc"; nvcc --version 2>&1
        echo "== compute-sanitizer"; compute-sanitizer --version 2>&1 | head -3
        echo "== cmake"; cmake --version 2>&1 | head -1
        echo "== cc"; ${CC:-cc} --version 2>&1 | head -1
        echo "== python3"; python3 --version 2>&1
        python3 -c 'import numpy; print("numpy", numpy.__version__)' 2>&1
        python3 -c 'import gguf; print("gguf ok")' 2>&1
        echo "== pkg-config"; command -v pkg-config && pkg-config --modversion libsodium libxxhash libpcre2-8 cmocka libcjson 2>&1
        echo "== carry"; cat "$carry/MANIFEST" 2>&1
        echo "== cpu"; grep -m1 'model name' /proc/cpuinfo; nproc
    } >"$log" 2>&1
    if have_gpu; then
        row env gpu ok "$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | head -1)"
    else
        row env gpu FAIL "nvidia-smi sees no GPU"
    fi
    row env toolkit note "$(nvcc --version 2>/dev/null | grep -o 'release [0-9.]*' || echo 'no nvcc')"
}

phase_build() {
    local log=$out/build.log t0 archs
    if ! setup_deps >>"$log" 2>&1; then
        row build dependencies FAIL "see build.log"
        return
    fi
    row build dependencies ok "$deps_mode"
    archs=${GPU_CHECK_ARCHS:-}
    if [ -z "$archs" ] && have_gpu; then
        archs=$(gpu_archs)
        [ -n "$archs" ] || archs=native
    fi
    local arch_args=()
    [ -n "$archs" ] && arch_args=(-DOPG_CUDA_ARCHITECTURES="$archs")
    t0=$(now)
    {
        echo "== configure"
        cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DOPG_CUDA=ON -DOPG_NETWORK=OFF \
            "${arch_args[@]}" "${pc_args[@]}"
    } >>"$log" 2>&1
    local rc=$?
    if [ $rc -ne 0 ]; then
        row build configure FAIL "cmake exit $rc (build.log)"
        return
    fi
    if ! grep -q 'opg: cuda backend ON' "$log"; then
        row build configure FAIL "the cuda backend is OFF: $(grep -o 'cuda backend OFF.*' "$log" | tail -1)"
        return
    fi
    row build configure ok "OPG_CUDA=ON OPG_NETWORK=OFF, archs ${archs:-default}"
    { echo "== build"; cmake --build "$build" -j"$jobs"; } >>"$log" 2>&1
    rc=$?
    local nwarn
    nwarn=$(grep -c 'warning' "$log")
    if [ $rc -ne 0 ]; then
        row build compile FAIL "exit $rc after $(secs "$t0") s (build.log)"
    else
        row build compile ok "$(secs "$t0") s, $nwarn warning line(s)"
    fi
}

# Rows for each test of a ctest log ("Test #n: name ....   Passed   1.2 sec").
ctest_rows() {
    local phase=$1 log=$2 expect_run=$3
    grep -E 'Test +#[0-9]+: ' "$log" | grep -vE 'Start ' | while read -r line; do
        local name status t
        name=$(echo "$line" | sed -E 's/.*Test +#[0-9]+: ([^ ]+).*/\1/')
        t=$(echo "$line" | grep -oE '[0-9.]+ sec' | tail -1)
        if echo "$line" | grep -q 'Passed'; then status=ok
        elif echo "$line" | grep -q 'Skipped'; then
            status=$([ "$expect_run" = 1 ] && echo FAIL || echo note)
            t="skipped"
        else status=FAIL; t=$(echo "$line" | sed -E 's/.*\*\*\*//; s/  +/ /g')
        fi
        printf '%s\t%s\t%s\n' "$name" "$status" "$t"
    done
}

phase_test() {
    local log=$out/test.log
    if [ ! -x "$build/tests/test_gpu_kernels" ]; then
        row test gpu-tests FAIL "not built (run the build phase)"
        return
    fi
    setup_deps >>"$log" 2>&1
    setup_python >>"$log" 2>&1 || row test tiny-models FAIL "no way to make the tiny models (test.log)"
    local gpu_expected=0
    have_gpu && gpu_expected=1
    {
        echo "== ctest -L gpu"
        (cd "$build" && ctest -L gpu -V --output-on-failure --timeout "$test_timeout" "${ctest_fixture_args[@]}")
    } >>"$log" 2>&1
    ctest_rows test "$log" "$gpu_expected" | while IFS=$'\t' read -r name status t; do
        row test "$name" "$status" "$t"
    done
    # a GPU test binary that failed by a launch error, a device fault, a crash
    # or a timeout: each of its tests that did not pass, again in a process of
    # its own, since a device fault ends the process's CUDA context and fails
    # every test after it. A difference in bits needs none (the tests keep
    # going and print every differing case).
    local bin tname n blog detail names
    for bin in test_gpu_kernels test_gpu_model; do
        detail=$(awk -F'\t' -v c="$bin" '$2 == c && $3 == "FAIL" { print $4 }' "$results")
        [ -n "$detail" ] && have_gpu || continue
        n=$(sed -nE "s/^([0-9]+): Test command: .*\/$bin( .*)?$/\1/p" "$log" | tail -1)
        blog=$build/gpu_check_$bin.log
        if [ -n "$n" ]; then grep -E "^$n: " "$log" | sed -E "s/^$n: //" >"$blog"; else : >"$blog"; fi
        if ! echo "$detail" | grep -qiE 'timeout|exception|signal' &&
            ! grep -qE 'returned -?[0-9]+: |:[0-9]+: cuda[A-Za-z]*\(|exception|Segmentation|illegal|launch failure' "$blog"; then
            continue
        fi
        names=$(cd "$build/tests" && OPG_TEST_LIST=1 timeout 60 "./$bin" 2>/dev/null | grep -E '^test_[a-z0-9_]+$')
        if [ -z "$names" ]; then
            row test "$bin (alone)" note "it did not list its tests: no reruns"
            continue
        fi
        for tname in $names; do
            grep -qE "^\[       OK \] $tname\$" "$blog" && continue
            echo "== $bin, $tname alone" >>"$log"
            if (cd "$build/tests" && OPG_TEST_ONLY=$tname OPG_TINY_DIR=$build/tests/tiny \
                timeout "$test_timeout" "./$bin") >>"$log" 2>&1; then
                row test "$bin $tname (alone)" ok ""
            else
                row test "$bin $tname (alone)" FAIL "test.log: '== $bin, $tname alone'"
            fi
        done
    done
    local cpu_log=$build/gpu_check_cpu.log
    # without the emulated kernels (label cuemu: CI runs them; here the real
    # ones ran above), whose longest test alone takes minutes of device time
    (cd "$build" && ctest -L cpu -LE cuemu -j"$jobs" --output-on-failure "${ctest_fixture_args[@]}") >"$cpu_log" 2>&1
    { echo; echo "== ctest -L cpu -LE cuemu"; cat "$cpu_log"; } >>"$log"
    local summary
    summary=$(grep -E 'tests passed' "$cpu_log" | tail -1)
    if grep -qE '100% tests passed' "$cpu_log"; then row test cpu-suite ok "$summary"
    else row test cpu-suite FAIL "${summary:-no summary} (test.log)"
    fi
}

phase_sanitize() {
    local log=$out/sanitize.log cs
    cs=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null)
    if [ -z "$cs" ]; then
        row sanitize compute-sanitizer FAIL "not found"
        return
    fi
    if [ ! -x "$build/tests/test_gpu_kernels" ]; then
        row sanitize compute-sanitizer FAIL "tests not built"
        return
    fi
    setup_deps >>"$log" 2>&1
    if [ ! -f "$build/tests/tiny/tiny-f32.gguf" ]; then
        setup_python >>"$log" 2>&1
        [ -f "$build/tests/tiny/tiny-f32.gguf" ] ||
            (mkdir -p "$build/tests/tiny" && python3 "$root/tests/data/gen_tiny_models.py" "$build/tests/tiny") >>"$log" 2>&1
    fi
    local tool test phase_t0 left run_timeout
    phase_t0=$(now)
    for tool in memcheck racecheck synccheck initcheck; do
        for test in test_gpu_kernels test_gpu_model; do
            # the model test's host-heavy parts add little under the slower tools
            [ "$test" = test_gpu_model ] && [ "$tool" = racecheck -o "$tool" = synccheck ] && continue
            local extra=() t0 rc cut=0
            run_timeout=$san_timeout
            if [ "$san_budget" -gt 0 ]; then
                left=$(awk -v b="$san_budget" -v a="$phase_t0" -v n="$(now)" 'BEGIN { printf "%d", b - (n - a) }')
                if [ "$left" -lt 10 ]; then
                    row sanitize "$tool $test" note "not run: GPU_CHECK_SAN_BUDGET ($san_budget s) spent"
                    continue
                fi
                [ "$left" -lt "$run_timeout" ] && run_timeout=$left cut=1
            fi
            [ "$tool" = memcheck ] && extra=(--leak-check full)
            t0=$(now)
            echo "== $tool $test" >>"$log"
            OPG_GPU_TEST_QUICK=1 OPG_MODEL=/nonexistent OPG_TINY_DIR=$build/tests/tiny \
                timeout "$run_timeout" "$cs" --tool "$tool" "${extra[@]}" --error-exitcode 86 \
                --print-limit 50 "$build/tests/$test" >>"$log" 2>&1
            rc=$?
            local summary
            summary=$(grep -E '========= ERROR SUMMARY|RACECHECK SUMMARY|LEAK SUMMARY' "$log" | tail -1 | sed 's/========= //')
            case $rc in
            0) row sanitize "$tool $test" ok "${summary:-clean}, $(secs "$t0") s" ;;
            124)
                if [ $cut = 1 ]; then
                    row sanitize "$tool $test" note "cut by GPU_CHECK_SAN_BUDGET after $run_timeout s: no verdict"
                else
                    row sanitize "$tool $test" FAIL "timed out after $run_timeout s"
                fi
                ;;
            77) row sanitize "$tool $test" FAIL "test skipped: no device under the sanitizer" ;;
            86) row sanitize "$tool $test" FAIL "${summary:-errors} (sanitize.log)" ;;
            *) row sanitize "$tool $test" FAIL "exit $rc (sanitize.log)" ;;
            esac
        done
    done
}

# Runs opg and prints "decode_tps prefill_tps root" from its summary.
opg_run_stats() {
    local errf=$1
    shift
    local outp
    outp=$(timeout 120 "$build/tools/opg" run "$@" 2>"$errf") || return 1
    local rt dec pre
    rt=$(echo "$outp" | sed -n 's/^trace_root=//p')
    dec=$(sed -nE 's/^decode +([0-9.]+) tokens\/s.*/\1/p' "$errf")
    pre=$(sed -nE 's/^prefill +([0-9.]+) tokens\/s.*/\1/p' "$errf")
    echo "$dec $pre $rt"
}

phase_bench() {
    local log=$out/bench.log
    if [ ! -x "$build/tools/opg" ]; then
        row bench opg-run FAIL "not built"
        return
    fi
    setup_deps >>"$log" 2>&1
    # opg-bench's GPU part: every backend op on cuda against the cpu backend,
    # cuBLAS beside the float GEMMs, and a model (the real one, else a tiny one)
    local ob=$build/bench/opg-bench json=$out/opg-bench-cuda.json mdl=$model
    [ -f "$mdl" ] || mdl=$build/tests/tiny/tiny-q4_1.gguf
    if [ ! -x "$ob" ]; then
        row bench opg-bench-cuda FAIL "opg-bench not built"
    else
        local margs=() t0 rc
        [ -f "$mdl" ] && margs=(--model "$mdl")
        echo "== opg-bench --backend cuda ${margs[*]} --json" >>"$log"
        t0=$(now)
        timeout "$bench_timeout" "$ob" --backend cuda "${margs[@]}" --json >"$json" 2>>"$log"
        rc=$?
        if [ $rc -eq 3 ]; then
            row bench opg-bench-cuda FAIL "no cuda backend: $(grep 'opg-bench:' "$log" | tail -1)"
            rc=0 # said; no JSON to read
        elif [ $rc -eq 124 ]; then
            row bench opg-bench-cuda FAIL "timed out after ${bench_timeout} s (GPU_CHECK_BENCH_TIMEOUT; bench.log)"
        fi
        local rows=""
        # the JSON as a table in bench.log, and summary rows (check<TAB>status<TAB>detail)
        [ -s "$json" ] && rows=$(python3 - "$json" "$out/opg-bench-cuda.md" <<'PY'
import json, sys
try:
    d = json.load(open(sys.argv[1]))
except Exception as e:
    print("opg-bench-cuda ops\tFAIL\tno JSON (%s)" % e); sys.exit(0)
f = lambda v, fmt: "-" if v is None else fmt % v
with open(sys.argv[2], "w") as md:
    md.write("opg-bench --backend cuda: %s, copy %s GB/s, %s\n\n" % (d["device"], f(d["copy_gbs"], "%.0f"), d["date"]))
    md.write("| op | shape | us | GFLOP/s | GB/s | % copy | cuBLAS us | bits |\n|---|---|---|---|---|---|---|---|\n")
    for o in d["ops"]:
        md.write("| %s | %s | %s | %s | %s | %s | %s | %s |\n" % (o["op"], o["shape"], f(o["median_us"], "%.1f"),
                 f(o["gflops"], "%.0f"), f(o["gbs"], "%.0f"), f(o["pct_copy"], "%.0f"), f(o["cublas_us"], "%.1f"), o["bits"]))
    m = d.get("model")
    if m:
        md.write("\nmodel %s: prefill %s tok/s, decode %s tok/s (1 seq), %s tok/s (%d seqs); roots alone/batched/in-batch = cpu: %s/%s/%s %s\n" % (
            m["file"], f(m["prefill_tps"], "%.0f"), f(m["decode_tps_1"], "%.0f"), f(m["decode_tps_batch"], "%.0f"), m["batch"],
            m["same_alone"], m["same_batched"], m["same_in_batch"], m["error"]))
ops = d["ops"]
bad = [o["op"] for o in ops if o["bits"] != "same"]
by = {o["op"]: o for o in ops}
detail = "%d ops, %s" % (len(ops), "every result = cpu backend" if not bad else "not = cpu: " + ",".join(bad))
g = by.get("gemv_q8_0")
if g and g["gbs"]: detail += "; gemv_q8_0 %.0f GB/s (%s%% of copy)" % (g["gbs"], f(g["pct_copy"], "%.0f"))
h = by.get("gemm_f16")
if h and h["median_us"] and h["cublas_us"]: detail += "; gemm_f16 %.1fx cuBLAS's time" % (h["median_us"] / h["cublas_us"])
print("opg-bench-cuda ops\t%s\t%s" % ("ok" if not bad and ops else "FAIL", detail))
m = d.get("model")
if m:
    same = m["same_alone"] and m["same_batched"] and m["same_in_batch"]
    print("opg-bench-cuda model %s\t%s\tprefill %s tok/s, decode %s tok/s (1 seq), %s tok/s (%d seqs), roots %s %s" % (
        m["file"], "ok" if same else "FAIL", f(m["prefill_tps"], "%.0f"), f(m["decode_tps_1"], "%.0f"),
        f(m["decode_tps_batch"], "%.0f"), m["batch"], "= cpu" if same else "DIFFER", m["error"]))
PY
)
        [ -f "$out/opg-bench-cuda.md" ] && cat "$out/opg-bench-cuda.md" >>"$log"
        while IFS=$'\t' read -r name status detail; do
            [ -n "$name" ] && row bench "$name" "$status" "$detail"
        done <<<"$rows"
        [ $rc -eq 0 ] || row bench opg-bench-cuda FAIL "exit $rc after $(secs "$t0") s (bench.log)"
    fi
    if [ ! -f "$model" ]; then
        row bench opg-run note "no model at $model (scripts/fetch-model.sh, or OPG_MODEL): not timed"
        return
    fi
    local prompt="Explain in one paragraph why the sky is blue." errf=$build/gpu_check_run.err
    local -A roots
    local be mode args
    for mode in alone batched; do
        args=(-m "$model" --chat -p "$prompt" -n 128 -q)
        [ "$mode" = batched ] && args+=(--batch-with 7)
        for be in cpu cuda; do
            echo "== opg run --backend $be ($mode)" >>"$log"
            # one untimed run first (CUDA context, page cache)
            [ "$be" = cuda ] && "$build/tools/opg" run "${args[@]}" -n 4 --backend cuda >/dev/null 2>&1
            local st
            if st=$(opg_run_stats "$errf" "${args[@]}" --backend "$be"); then
                cat "$errf" >>"$log"
                local dec pre rt
                read -r dec pre rt <<<"$st"
                roots[$be.$mode]=$rt
                row bench "opg run $be $mode" ok "decode $dec tok/s, prefill $pre tok/s"
            else
                cat "$errf" >>"$log"
                row bench "opg run $be $mode" FAIL "$(tail -1 "$errf")"
            fi
        done
        if [ -n "${roots[cpu.$mode]:-}" ] && [ "${roots[cpu.$mode]}" = "${roots[cuda.$mode]:-}" ]; then
            row bench "trace root cpu = cuda ($mode)" ok "${roots[cpu.$mode]}"
        else
            row bench "trace root cpu = cuda ($mode)" FAIL "cpu ${roots[cpu.$mode]:-?} cuda ${roots[cuda.$mode]:-?}"
        fi
    done
    # a validator on the other backend: replay the cuda job on cuda (--verify)
    echo "== opg run --backend cuda --verify" >>"$log"
    if timeout 120 "$build/tools/opg" run -m "$model" --chat -p "$prompt" -n 64 -q --backend cuda --verify \
        >>"$log" 2>&1; then
        row bench "opg run cuda --verify" ok "replay root matches"
    else
        row bench "opg run cuda --verify" FAIL "bench.log"
    fi
}

# ---- the real model, carried in parts --------------------------------------------------
# It is bigger than what one call of a device tool may bring (64 MiB here), so
# gpu_carry.sh --model-parts splits it; parts brought by earlier calls stay in
# the working tree beside the ones this call brings (docs/gpu.md).
join_model_parts() {
    [ ! -f "$model" ] || return 0
    local first n k have=() missing=() sha
    first=$(ls "$parts_dir"/part-*-of-* 2>/dev/null | head -1)
    [ -n "$first" ] || return 0
    n=${first##*-of-}
    [[ $n =~ ^[0-9]{1,3}$ ]] || { row model "model parts" FAIL "$first: not part-K-of-N"; return 0; }
    for k in $(seq 1 "$n"); do
        if [ -f "$parts_dir/part-$k-of-$n" ]; then have+=("$k"); else missing+=("$k"); fi
    done
    if [ ${#missing[@]} -gt 0 ]; then
        row model "model parts" note "part(s) ${have[*]} of $n here; bring ${missing[*]} in a later call (the model is not used until then)"
        return 0
    fi
    sha=${GPU_CHECK_MODEL_SHA:-$(sed -n 's/^sha=\([0-9a-f]\{64\}\)$/\1/p' "$root/scripts/fetch-model.sh")}
    mkdir -p "$(dirname "$model")"
    for k in $(seq 1 "$n"); do cat "$parts_dir/part-$k-of-$n"; done >"$model.joining"
    if [ -n "$sha" ] && echo "$sha  $model.joining" | sha256sum -c --status; then
        mv "$model.joining" "$model"
        row model "model parts" ok "$n parts joined into $(basename "$model"), sha256 $sha"
    else
        rm -f "$model.joining"
        row model "model parts" FAIL "the $n parts joined do not have the expected sha256 ${sha:-(none found)}"
    fi
}
join_model_parts

for ph in "${phases[@]}"; do
    say "phase $ph"
    # a phase run again replaces all its rows of an earlier call
    tmp=$(mktemp)
    awk -F'\t' -v p="$ph" '$1 != p' "$results" >"$tmp" && mv "$tmp" "$results"
    "phase_$ph"
done

# ---- summary ----------------------------------------------------------------------------
write_summary
cat "$out/summary.md"
if awk -F'\t' '$3 == "FAIL"' "$results" | grep -q .; then exit 1; fi
exit 0
