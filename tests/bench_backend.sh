#!/usr/bin/env bash
# bench_backend.sh: opg-bench --backend B --quick on a tiny model: every op
# and the model's trace roots must match the cpu backend's (exit 0), the
# table and the JSON must say so. On the cuda backend without a usable device
# (opg-bench exits 3) the test is skipped with a visible line.
# Usage: bench_backend.sh OPG_BENCH BACKEND MODEL
set -uo pipefail
bench=$1 backend=$2 model=$3
fail() { echo "FAIL: $*" >&2; exit 1; }

"$bench" --backend "$backend" --quick --threads 2 --model "$model" >table.txt 2>err.txt
rc=$?
cat table.txt
if [ $rc -eq 3 ]; then
    echo "skipped: no CUDA device ($(tail -1 err.txt))"
    exit 77
fi
[ $rc -eq 0 ] || fail "exit $rc: $(tail -3 err.txt)"
grep -Eq '^(gemv|gemm)_q4_K .* same$' table.txt || fail "no gemv/gemm q4_K row that says same"
[ "$(grep -Ec '^[a-z].* (same|DIFF|ERROR)$' table.txt)" -eq 26 ] || fail "want 26 op rows"
grep -q 'DIFF\|ERROR' table.txt && fail "a DIFF or ERROR row"
grep -q '= on the cpu backend: *same' table.txt || fail "model root line"

"$bench" --backend "$backend" --quick --op gemv_q8_0,attention --json >out.json 2>err.txt ||
    fail "--json: exit $?: $(tail -1 err.txt)"
python3 - out.json "$backend" <<'PY' || fail "JSON"
import json, sys
d = json.load(open(sys.argv[1]))
assert d["backend"] == sys.argv[2].split(":")[0], d["backend"]
ops = [o["op"] for o in d["ops"]]
assert ops == ["gemv_q8_0", "attn_decode", "attn_prefill"], ops
assert all(o["bits"] == "same" and o["median_us"] > 0 for o in d["ops"]), d["ops"]
assert d["model"] is None
PY

# a model that is not GGUF, under a name JSON must escape (quote, backslash,
# a control byte, non-ASCII): exit 1, and the JSON still parses and says why
odd=$'we"ird\\n\001m\303\251.gguf'
trap 'rm -f "$odd"' EXIT
head -c 100 /dev/zero >"$odd"
"$bench" --backend "$backend" --quick --op rope --model "$odd" --json >bad.json 2>err.txt
[ $? -eq 1 ] || fail "a model that is not GGUF: want exit 1"
python3 - bad.json <<'PY' || fail "JSON of a bad model"
import json, sys
m = json.load(open(sys.argv[1], encoding="ascii"))["model"]
assert m["file"] == 'we"ird\\n\x01m??.gguf', repr(m["file"])
assert "not a GGUF file" in m["error"] and m["trace_root"] == "", m
PY

# a JSON that cannot be written is an error, not a silent success
if [ -w /dev/full ]; then
    "$bench" --backend "$backend" --quick --op rope --json >/dev/full 2>err.txt
    [ $? -eq 1 ] || fail "--json to a full device: want exit 1"
    grep -q "could not write the JSON" err.txt || fail "full device message: $(tail -1 err.txt)"
fi

# usage errors exit 2 with a message, before any work
"$bench" --backend bogus 2>err.txt; [ $? -eq 2 ] || fail "bad backend: want exit 2"
"$bench" --backend cudax 2>err.txt; [ $? -eq 2 ] || fail "misspelt cuda backend: want exit 2"
"$bench" --backend "$backend" --op nosuchop 2>err.txt; [ $? -eq 2 ] || fail "bad op: want exit 2"
grep -q "unknown op 'nosuchop'" err.txt || fail "bad op message: $(cat err.txt)"
"$bench" --backend "$backend" --model /nonexistent.gguf 2>err.txt; [ $? -eq 2 ] || fail "bad model: want exit 2"
grep -q "cannot read model /nonexistent.gguf" err.txt || fail "bad model message: $(cat err.txt)"
"$bench" --backend "$backend" --dispatch 2>err.txt; [ $? -eq 2 ] || fail "--dispatch with --backend: want exit 2"
echo "ok"
