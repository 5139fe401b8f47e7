#!/usr/bin/env bash
# run.sh: the main job, a local opg network on the CPU backend. Builds opg,
# fetches the embedded default model (SmolLM2-135M-Instruct, Q4_1 GGUF,
# SHA-256 checked), starts an opg-coordinator (SQLite job store) and two
# opg-workers on 127.0.0.1, submits a few jobs with `opg submit`, prints
# their outputs and trace roots, verifies one offline from its saved job
# record (`opg verify`: the worker's signed receipt, and a local re-execution
# giving the same trace root), then stops the network cleanly.
# Environment: OPG_RUN_DIR keeps the logs and the job store there (default: a
# temporary directory, removed at the end); OPG_BASE_PORT (default 5555).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh
opg_install_deps
scripts/fetch-model.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc 2>/dev/null || echo 2)" --target opg opg-coordinator opg-worker

bin=build
port=${OPG_BASE_PORT:-5555}
workers_ep="tcp://127.0.0.1:$port"
clients_ep="tcp://127.0.0.1:$((port + 1))"
metrics="127.0.0.1:$((port + 2))"
if [ -n "${OPG_RUN_DIR:-}" ]; then dir=$OPG_RUN_DIR; mkdir -p "$dir"; keep=1; else dir=$(mktemp -d); keep=0; fi
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    [ "$keep" = 1 ] || rm -rf "$dir"
}
trap cleanup EXIT INT TERM

echo "== starting opg-coordinator ($workers_ep workers, $clients_ep clients, http://$metrics/metrics)"
$bin/coordinator/opg-coordinator --workers "$workers_ep" --clients "$clients_ep" --metrics "$metrics" \
    --db "$dir/jobs.db" 2>"$dir/coordinator.log" &
pids+=($!)
for w in 1 2; do
    echo "== starting opg-worker w$w (CPU backend, 1 thread, default model)"
    $bin/worker/opg-worker -C "$workers_ep" --name "w$w" -t 1 --slots 4 2>"$dir/worker$w.log" &
    pids+=($!)
done
# both workers have said Ready once the coordinator logs them
for _ in $(seq 1 300); do
    [ "$(grep -c 'event=worker_ready' "$dir/coordinator.log" 2>/dev/null || true)" -ge 2 ] && break
    sleep 0.1
done
grep 'event=worker_ready' "$dir/coordinator.log" || { echo "workers did not connect; logs in $dir" >&2; keep=1; exit 1; }

prompts=("What is the capital of France?" "Name three primary colors." "Write one sentence about the sea.")
echo "== submitting ${#prompts[@]} jobs (opg submit --chat, greedy, up to 48 tokens)"
subs=()
for i in "${!prompts[@]}"; do
    $bin/tools/opg submit -C "$clients_ep" --chat -p "${prompts[$i]}" -n 48 --save "$dir/job$i.json" \
        >"$dir/job$i.out" 2>&1 &
    subs+=($!)
done
fail=0
for i in "${!prompts[@]}"; do wait "${subs[$i]}" || fail=1; done
for i in "${!prompts[@]}"; do
    echo "-- prompt: ${prompts[$i]}"
    cat "$dir/job$i.out"
done
[ "$fail" = 0 ] || { echo "a job failed; logs in $dir" >&2; keep=1; exit 1; }

echo "== verifying job 0 offline from its saved record: opg verify (receipt, then teacher-forced re-execution)"
$bin/tools/opg verify "$dir/job0.json" -t 2 || { echo "job 0 did not verify" >&2; keep=1; exit 1; }
echo "== valid: the worker's signed receipt holds and a local re-execution reproduces its trace root"

echo "== coordinator metrics"
python3 - "$metrics" <<'PY' || true
import sys, urllib.request
text = urllib.request.urlopen("http://%s/metrics" % sys.argv[1], timeout=5).read().decode()
for line in text.splitlines():
    if line.startswith(("opg_jobs_finished_total", "opg_workers ", "opg_tokens_generated_total", "opg_job_latency_seconds_count")):
        print("  " + line)
PY
echo "== stopping the network (SIGTERM: workers drain, coordinator closes its store)"
