#!/usr/bin/env bash
# cli_verify.sh: a job record end to end. A real opg-coordinator and
# opg-worker on 127.0.0.1 (free ports) serve a tiny model with a tokenizer;
# `opg submit --save` writes the record; `opg verify` finds it VALID (exit 0)
# and finds each tampering INVALID (exit 3) naming the check: the receipt's
# signature, the prompt, the trace root, the record's job id; and records a cheating worker
# signs itself (tests/forge_record.c: trace root recomputed, fresh key) with
# its output cut short, a stop it never sends, an inflated prompt count or
# ids outside the vocabulary. A model other than the job's is an error
# (exit 1); --save never overwrites (exit 2).
# Usage: cli_verify.sh BUILD_DIR TINY_DIR FORGE_RECORD
set -uo pipefail
build=$1 tiny=$2 forge=$3
opg=$build/tools/opg
model=$tiny/tiny-tok-long.gguf
. "$(dirname "$0")/cli_common.sh"

wp=$(free_port) cp=$(free_port)
"$build/coordinator/opg-coordinator" --db "$dir/jobs.db" --workers "tcp://127.0.0.1:$wp" \
    --clients "tcp://127.0.0.1:$cp" --metrics off 2>"$dir/coordinator.log" &
pids+=($!)
"$build/worker/opg-worker" -C "tcp://127.0.0.1:$wp" -m "$model" --backend cpu --threads 1 --name w1 \
    2>"$dir/worker.log" &
pids+=($!)
for _ in $(seq 100); do grep -q "event=worker_ready" "$dir/coordinator.log" 2>/dev/null && break; sleep 0.1; done
grep -q "event=worker_ready" "$dir/coordinator.log" || fail "the worker did not register"

rec=$dir/job.json
"$opg" submit -C "tcp://127.0.0.1:$cp" -m "$model" -p abc -n 4 -q --save "$rec" >"$dir/submit.out" 2>&1 \
    || fail "submit: $(cat "$dir/submit.out")"
grep -q "^record=$rec" "$dir/submit.out" || fail "submit did not report the record: $(cat "$dir/submit.out")"
# the streamed text holds the model's 257+ byte tokens whole (as opg run's)
text=$("$opg" submit -C "tcp://127.0.0.1:$cp" -m "$model" -p abc -n 4 2>/dev/null | sed -n 2p)
[ ${#text} -ge 257 ] || fail "opg submit streamed ${#text} bytes, no long token whole: '$text'"
"$opg" submit -C "tcp://127.0.0.1:$cp" -m "$model" -p abc -n 4 -q --save "$rec" >/dev/null 2>"$dir/err"; rc=$?
[ $rc -eq 2 ] && grep -q "never overwritten" "$dir/err" || fail "--save over an existing record: exit $rc"
"$opg" submit -C "tcp://127.0.0.1:$cp" -m "$model" -p abc -n 4 -q --save "$dir/none/job.json" >/dev/null 2>"$dir/err"; rc=$?
[ $rc -eq 2 ] && grep -q "cannot write in" "$dir/err" || fail "--save into a missing directory: exit $rc: $(cat "$dir/err")"

verify() { "$opg" verify "$1" -m "${2:-$model}" --backend cpu -t 1 >"$dir/verify.out" 2>&1; }
verify "$rec"; rc=$?
[ $rc -eq 0 ] && grep -q "^verdict *VALID" "$dir/verify.out" || fail "the untouched record: exit $rc: $(cat "$dir/verify.out")"

# tamper (python: JSON and base64 in, the same out) and expect INVALID naming the check
tamper() { # NAME PYTHON-EXPRESSION-ON (req, res) bytearrays, CHECK-LINE
    python3 - "$rec" "$dir/$1.json" "$2" <<'PY' || fail "tampering $1"
import base64, json, sys
src, dst, code = sys.argv[1], sys.argv[2], sys.argv[3]
r = json.load(open(src))
req = bytearray(base64.b64decode(r["request"]))
res = bytearray(base64.b64decode(r["result"]))
exec(code)
r["request"] = base64.b64encode(bytes(req)).decode()
r["result"] = base64.b64encode(bytes(res)).decode()
json.dump(r, open(dst, "w"))
PY
    verify "$dir/$1.json"; rc=$?
    [ $rc -eq 3 ] && grep -q "^verdict *INVALID" "$dir/verify.out" && grep -q "^$3 *FAILED" "$dir/verify.out" \
        || fail "tampered $1: exit $rc, expected 3 with '$3 FAILED': $(cat "$dir/verify.out")"
}
root=$(sed -n 's/.*trace_root=\([0-9a-f]*\).*/\1/p' "$dir/submit.out")
[ ${#root} -eq 64 ] || fail "no trace root from submit"
# the signature's last byte (the receipt is the Result's last field, the signature the receipt's)
tamper signature 'res[-1] ^= 1' "signature"
# another prompt than the worker ran: "abc" -> "abd"
tamper prompt 'i = req.find(b"abc"); req[i + 2] = ord("d")' "receipt prompt"
# another trace root in the Result (its own field comes before the receipt's copy)
tamper root "i = res.find(bytes.fromhex('$root')); res[i] ^= 1" "receipt root"
# the request's max_tokens (field 5, 4 -> 5; the last 0x28 0x04 of the SubmitJob is it) edited
# after the fact: the worker signed what it ran, so the record contradicts its receipt
tamper max_tokens 'i = req.rfind(b"\x28\x04"); req[i + 1] = 5' "receipt params"
# the Result's stop reason (field 5, right after its trace root) edited: the worker signed another;
# the verdict needs no re-execution (no trace root line)
tamper stop "i = res.find(bytes.fromhex('$root')) + 32; assert res[i] == 0x28; res[i + 1] = 4 if res[i + 1] != 4 else 2" \
    "receipt stop"
grep -q "^trace root" "$dir/verify.out" && fail "a record already INVALID was re-executed: $(cat "$dir/verify.out")"
# the record's own job id (a copy of the Result's) edited: the record contradicts itself
tamper jobid 'r["job_id"] += 1' "record job"
# the request's contract version (field 9 of SubmitJob: 0x48 0x01, its last field here) edited
tamper contract 'i = req.rfind(b"\x48\x01"); req[i + 1] = 2' "receipt params"
# a record of another contract (request and receipt agree): not this opg's to check, no fault of the worker's
"$forge" "$rec" "$dir/v2.json" "$model" - - - - - contract=2 2>"$dir/forge.err" || fail "forge v2: $(cat "$dir/forge.err")"
verify "$dir/v2.json"; rc=$?
[ $rc -eq 1 ] && grep -q "^contract *v2, this opg runs v1: not checked" "$dir/verify.out" \
    && ! grep -q "^verdict" "$dir/verify.out" || fail "another contract: exit $rc: $(cat "$dir/verify.out")"
# a FIFO is refused at once, not waited on
mkfifo "$dir/fifo.json"
timeout 20 "$opg" verify "$dir/fifo.json" -m "$model" >"$dir/verify.out" 2>&1; rc=$?
[ $rc -eq 1 ] && grep -q "not a regular file" "$dir/verify.out" || fail "a FIFO as the record: exit $rc: $(cat "$dir/verify.out")"
# signed by the cheat itself: stop, count and ids must still hold
forged() { # NAME EXPECT(VALID|CHECK-LINE) FORGE-ARGS...
    local name=$1 want=$2
    shift 2
    "$forge" "$rec" "$dir/$name.json" "$model" "$@" 2>"$dir/forge.err" || fail "forge $name: $(cat "$dir/forge.err")"
    verify "$dir/$name.json"; rc=$?
    if [ "$want" = VALID ]; then
        [ $rc -eq 0 ] && grep -q "^verdict *VALID" "$dir/verify.out" || fail "forged $name: exit $rc: $(cat "$dir/verify.out")"
    else
        [ $rc -eq 3 ] && grep -q "^$want *FAILED" "$dir/verify.out" \
            || fail "forged $name: exit $rc, expected 3 with '$want FAILED': $(cat "$dir/verify.out")"
    fi
}
forged resigned VALID                # the same result, another key: the forge itself is sound
forged short stop 2                  # 2 of max_tokens 4, still "max_tokens"
forged cancelled stop 2 3            # a Result of a cancelled job
forged empty stop 0 4                # no token, "context full"
forged early stop 2 4                # "context full" after 2 tokens, the context the receipt names not full
forged smallctx VALID 2 4 - - fit    # the same, signing the small context it then ran: consistent
grep -q "^context *.*fewer than the job could fill" "$dir/verify.out" || fail "a small context not shown: $(cat "$dir/verify.out")"
forged legacy receipt - - - - - legacy  # a receipt without fields 10-13: named as such, not as a bad signature
grep -q "^receipt *FAILED: Receipt.sampling: missing (not a receipt of this protocol" "$dir/verify.out" \
    || fail "a legacy receipt: $(cat "$dir/verify.out")"
forged billed "receipt prompt" - - 99  # usage.prompt_tokens inflated
forged foreign "token ids" - - - 500,1 # ids outside the vocabulary of 96
# a model other than the job's
verify "$rec" "$tiny/tiny-tok-over.gguf"; rc=$?
[ $rc -eq 1 ] && grep -q "give that model with -m" "$dir/verify.out" || fail "another model: exit $rc: $(cat "$dir/verify.out")"
# a backend no opg knows: usage (a known one missing here is an error, 1)
"$opg" verify "$rec" -m "$model" --backend bogus >"$dir/verify.out" 2>&1; rc=$?
[ $rc -eq 2 ] && grep -q "backend must be auto, cpu, cuda or cuda:N" "$dir/verify.out" \
    || fail "--backend bogus: exit $rc: $(cat "$dir/verify.out")"
# not a record
echo '{"opg_job_record": 1}' >"$dir/bad.json"
verify "$dir/bad.json"; rc=$?
[ $rc -eq 1 ] && grep -q "missing" "$dir/verify.out" || fail "a bad record: exit $rc: $(cat "$dir/verify.out")"
echo "ok: a saved job record verifies; tampered signature, prompt and trace root are each INVALID"
