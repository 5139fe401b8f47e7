#!/usr/bin/env bash
# prompt_stall.sh: how long a running job's stream stalls while its worker
# takes in big text prompts. One coordinator and one worker (1 compute
# thread) on 127.0.0.1; a job streams its output (greedy, N tokens) while K
# jobs with MIB MiB text prompts are submitted, one a second. Prints the
# median and the longest gaps between the streamed job's output chunks
# before and while the big prompts come (the worker sends a job's tokens
# every 50 ms at most, so a gap well over one step is a stall), and the
# worker's CPU time while idle afterwards.
# Usage: bench/prompt_stall.sh [BUILD_DIR] [MIB] [K] [N] [MODEL]
#   defaults: build 1 4 600 models/SmolLM2-135M-Instruct.Q4_1.gguf
set -euo pipefail
bin=${1:-build}
mib=${2:-1}
k=${3:-4}
n=${4:-600}
model=${5:-models/SmolLM2-135M-Instruct.Q4_1.gguf}
for b in tools/opg coordinator/opg-coordinator worker/opg-worker; do
    [ -x "$bin/$b" ] || { echo "prompt_stall: no $bin/$b: build it first" >&2; exit 2; }
done
[ -f "$model" ] || { echo "prompt_stall: no model $model" >&2; exit 2; }
port=${OPG_BASE_PORT:-5750}
wep="tcp://127.0.0.1:$port"
cep="tcp://127.0.0.1:$((port + 1))"
dir=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$dir"
}
trap cleanup EXIT INT TERM

"$bin/coordinator/opg-coordinator" --workers "$wep" --clients "$cep" --metrics off --db "$dir/jobs.db" \
    2>"$dir/coordinator.log" &
pids+=($!)
"$bin/worker/opg-worker" -C "$wep" -m "$model" -t 1 --slots 8 --name stall 2>"$dir/worker.log" &
worker=$!
pids+=($worker)
for _ in $(seq 1 300); do grep -q 'event=worker_ready' "$dir/coordinator.log" 2>/dev/null && break; sleep 0.1; done
grep -q 'event=worker_ready' "$dir/coordinator.log" || { echo "prompt_stall: the worker did not connect" >&2; exit 1; }

# the big prompts: words of English-like length, as a config file (argv
# cannot carry a MiB)
python3 - "$mib" "$dir/big.json" <<'PY'
import json, random, sys
random.seed(1)
n = int(float(sys.argv[1]) * (1 << 20)) - 64  # the config file is at most 1 MiB
words, size = [], 0
while size < n:
    w = "".join(random.choice("etaoinshrdlucmfwypvbgk") for _ in range(random.randint(2, 9)))
    words.append(w)
    size += len(w) + 1
json.dump({"prompt": " ".join(words)[:n]}, open(sys.argv[2], "w"))
PY

# the streamed job: the arrival time of every chunk of its output
"$bin/tools/opg" submit -C "$cep" -m "$model" -p "1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12," \
    -n "$n" --temp 0 2>/dev/null | python3 -u -c '
import os, sys, time
fd = sys.stdin.fileno()
with open(sys.argv[1], "w") as out:
    while True:
        b = os.read(fd, 65536)
        if not b:
            break
        out.write("%.6f\n" % time.time())
        out.flush()
' "$dir/times" &
stream=$!
sleep 3 # the stream settles
start=$(python3 -c 'import time; print(time.time())')
for _ in $(seq 1 "$k"); do
    "$bin/tools/opg" submit -C "$cep" -m "$model" --config "$dir/big.json" --no-wait -n 1 >/dev/null
    sleep 1
done
end=$(python3 -c 'import time; print(time.time())')
wait "$stream"
# the worker idle afterwards: its CPU time over 2 s (a busy loop shows here)
ticks() { awk '{print $14 + $15}' "/proc/$worker/stat"; }
t0=$(ticks); sleep 2; t1=$(ticks)
idle_ms=$(( (t1 - t0) * 1000 / $(getconf CLK_TCK) ))
python3 - "$dir/times" "$start" "$end" "$mib" "$k" <<'PY'
import statistics, sys
t = [float(x) for x in open(sys.argv[1])]
start, end = float(sys.argv[2]), float(sys.argv[3])
gaps = [(b - a, b) for a, b in zip(t, t[1:])]
before = [g for g, at in gaps if t[0] + 1 <= at < start]  # past the prompt's prefill
during = [g for g, at in gaps if start <= at <= end + 0.5]
if not before or not during:
    sys.exit("prompt_stall: the streamed job ended too soon (%d chunks in %.1f s); raise N" % (len(t), t[-1] - t[0] if t else 0))
ms = lambda v: "%.0f ms" % (v * 1000)
print("before the prompts: %d gaps, median %s, longest %s" % (len(before), ms(statistics.median(before)), ms(max(before))))
print("while %s x %s MiB text prompts came: %d gaps, median %s, longest %s" %
      (sys.argv[5], sys.argv[4], len(during), ms(statistics.median(during)), ms(max(during))))
PY
echo "the worker idle afterwards: ${idle_ms} ms of CPU in 2 s"
