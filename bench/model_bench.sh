#!/usr/bin/env bash
# model_bench.sh: prefill and decode tokens/s of `opg run` on a GGUF model, with
# the bytes a decode step must read (every weight the step touches) as GB/s and
# as a fraction of the copy bandwidth opg-bench measures on the same threads.
# Usage: bench/model_bench.sh [MODEL.gguf] [THREADS]   (run from the repo root,
# after building build/tools/opg and build/bench/opg-bench)
set -euo pipefail
model=${1:-models/SmolLM2-135M-Instruct.Q4_1.gguf}
threads=${2:-$(nproc)}
opg=build/tools/opg
bench=build/bench/opg-bench
[ -x "$opg" ] && [ -x "$bench" ] || { echo "build opg and opg-bench first" >&2; exit 2; }

# Bytes of weights one decode step reads: all tensors except the embedding
# table (one row per token), which is read whole when it is also the output.
read_bytes=$(python3 - "$model" <<'PY'
import sys, gguf
r = gguf.GGUFReader(sys.argv[1])
names = {t.name for t in r.tensors}
tied = "output.weight" not in names
print(sum(int(t.n_bytes) for t in r.tensors if t.name != "token_embd.weight" or tied))
PY
)
# copy bandwidth on the same thread count (opg-bench's STREAM-like test; the
# rope op is only there because opg-bench needs one op to run)
copy=$("$bench" --op rope --quick --threads "$threads" --json 2>/dev/null |
       python3 -c 'import json, sys; print(json.load(sys.stdin)["bandwidth"]["copy_gbs"])' || echo "")

prefill_prompt=$(python3 -c 'print(" ".join(["The quick brown fox jumps over the lazy dog near the river bank."] * 18))')
run() { "$opg" run -m "$model" -t "$threads" -q "$@" 2>&1; }
best_prefill=0 best_decode=0
for i in 1 2 3; do
    p=$(run -p "$prefill_prompt" -n 1 | sed -n 's/^prefill *\([0-9.]*\) tokens\/s.*/\1/p')
    d=$(run -p "1, 2, 3, 4, 5, 6, 7, 8," -n 128 | sed -n 's/^decode *\([0-9.]*\) tokens\/s.*/\1/p')
    best_prefill=$(python3 -c "print(max($best_prefill, ${p:-0}))")
    best_decode=$(python3 -c "print(max($best_decode, ${d:-0}))")
done
python3 - "$model" "$threads" "$read_bytes" "$best_prefill" "$best_decode" "$copy" <<'PY'
import sys
model, threads, nbytes, pf, dc, copy = sys.argv[1:7]
nbytes, pf, dc = int(nbytes), float(pf), float(dc)
gbs = nbytes * dc / 1e9
print(f"model            {model}")
print(f"threads          {threads}")
print(f"prefill          {pf:.1f} tokens/s (prompt of ~230 tokens, best of 3)")
print(f"decode           {dc:.1f} tokens/s (128 tokens, best of 3)")
print(f"decode reads     {nbytes/1e6:.1f} MB of weights per token -> {gbs:.2f} GB/s", end="")
print(f" = {100*gbs/float(copy):.0f}% of copy bandwidth {float(copy):.1f} GB/s" if copy else "")
PY
