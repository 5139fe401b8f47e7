#!/usr/bin/env bash
# cli_jobs.sh: a job by id from the command line. A real opg-coordinator on
# 127.0.0.1 (free ports), its worker started later: `opg submit --no-wait`
# prints an id; `opg status`, `opg result` (plain, --wait, --stream) and
# `opg cancel` act on it; the result fetched later is the one `opg submit`
# streams for the same job (text and trace root), and `opg result --save`
# writes a record `opg verify` finds VALID; unknown ids and bad arguments
# are errors. Then a CurveZMQ coordinator with two admitted
# clients: neither sees nor cancels the other's job.
# Usage: cli_jobs.sh BUILD_DIR TINY_DIR
set -uo pipefail
build=$1 tiny=$2
opg=$build/tools/opg
model=$tiny/tiny-tok-long.gguf
. "$(dirname "$0")/cli_common.sh"
# run NAME CMD...: stdout in $dir/NAME.out, stderr in $dir/NAME.err, exit code in $rc
run() {
    local name=$1
    shift
    "$@" >"$dir/$name.out" 2>"$dir/$name.err"
    rc=$?
}
expect() { # NAME WANT-RC PATTERN(stdout or stderr)
    [ "$rc" -eq "$2" ] && cat "$dir/$1.out" "$dir/$1.err" | grep -q -- "$3" \
        || fail "$1: exit $rc (expected $2), no '$3': $(cat "$dir/$1.out" "$dir/$1.err")"
}

# endpoints ZeroMQ would take otherwise than meant (a port over 65535 binds a random one)
run badport "$build/coordinator/opg-coordinator" --db "$dir/bad.db" --workers tcp://127.0.0.1:99999 \
    --clients tcp://127.0.0.1:1 --metrics off
expect badport 1 "endpoint tcp://127.0.0.1:99999: port '99999' is not a number from 0 to 65535"
run bogus "$build/coordinator/opg-coordinator" --db "$dir/bad.db" --workers bogus --clients tcp://127.0.0.1:1 \
    --metrics off
expect bogus 1 "endpoint bogus: not tcp://HOST:PORT, ipc://PATH or inproc://NAME"
run lhbind "$build/coordinator/opg-coordinator" --db "$dir/bad.db" --workers "tcp://localhost:$(free_port)" \
    --clients "tcp://127.0.0.1:$(free_port)" --metrics off
expect lhbind 1 "a bind takes an IP address, an interface name or \*, not a host name"
run wbadport "$build/worker/opg-worker" -C tcp://127.0.0.1:70000 -m "$model" --backend cpu
expect wbadport 1 "port '70000' is not a number"
run cbadport "$opg" status 1 -C tcp://127.0.0.1:70000
expect cbadport 1 "port '70000' is not a number"

wp=$(free_port) cp=$(free_port)
C="tcp://127.0.0.1:$cp"
"$build/coordinator/opg-coordinator" --db "$dir/jobs.db" --workers "tcp://127.0.0.1:$wp" --clients "$C" \
    --metrics off 2>"$dir/coordinator.log" &
pids+=($!)

# queued: no worker yet
run submit1 "$opg" submit -C "$C" -m "$model" -p abc -n 4 --no-wait
expect submit1 0 "^job=1$"
run status1 "$opg" status 1 -C "$C"
expect status1 0 "^job=1 state=queued tokens=0$"
run early "$opg" result 1 -C "$C"
expect early 1 "job 1 is not finished"
run submit2 "$opg" submit -C "$C" -m "$model" -p abc -n 8 --no-wait
expect submit2 0 "^job=2$"
run cancel2 "$opg" cancel 2 -C "$C"
expect cancel2 0 "^job=2 state=cancelled$"
run result2 "$opg" result 2 -C "$C"
expect result2 1 "cancelled"

"$build/worker/opg-worker" -C "tcp://127.0.0.1:$wp" -m "$model" --backend cpu --threads 1 --name w1 \
    2>"$dir/worker.log" &
pids+=($!)
run wait1 "$opg" result 1 -C "$C" -m "$model" --wait
expect wait1 0 "^job=1 tokens=4 stop=max_tokens .*trace_root="
# the same job submitted and streamed: the same text and trace root
run submit3 "$opg" submit -C "$C" -m "$model" -p abc -n 4
expect submit3 0 "^job=3 tokens=4"
[ "$(sed 1d "$dir/submit3.out" | sed 's/^job=3 /job=1 /')" = "$(cat "$dir/wait1.out")" ] \
    || fail "opg result 1 differs from opg submit of the same job: $(cat "$dir/wait1.out") / $(cat "$dir/submit3.out")"
run stream3 "$opg" result 3 -C "$C" -m "$model" --stream
expect stream3 0 "^job=3 tokens=4"
[ "$(cat "$dir/stream3.out")" = "$(sed 1d "$dir/submit3.out")" ] \
    || fail "opg result --stream differs from opg submit: $(cat "$dir/stream3.out")"
# without the job's model: token ids, and the same summary (a model without a
# tokenizer; another model's tokenizer, which would misread the ids)
run ids0 "$opg" result 1 -C "$C" -m "$tiny/tiny-f32.gguf"
expect ids0 0 "has no tokenizer: printing token ids"
run ids1 "$opg" result 1 -C "$C" -m "$tiny/tiny-tok-over.gguf"
expect ids1 0 "is not the job's model: printing token ids"
run sids "$opg" result 1 -C "$C" -m "$tiny/tiny-tok-over.gguf" --stream
expect sids 0 "is not the job's model: printing token ids" # known from the request, before the first token
[ "$(sed -n 1,2p "$dir/sids.out")" = "$(sed -n 1,2p "$dir/ids1.out")" ] || fail "--stream, ids expected: $(cat "$dir/sids.out")"
sed -n 1p "$dir/ids1.out" | grep -Eq '^[0-9]+( [0-9]+){3}$' || fail "ids expected: $(cat "$dir/ids1.out")"
[ "$(sed -n 2p "$dir/ids1.out")" = "$(sed -n 2p "$dir/wait1.out")" ] || fail "summary differs without the model"
run quiet1 "$opg" result 1 -C "$C" -q
[ "$rc" -eq 0 ] && [ "$(cat "$dir/quiet1.out")" = "$(sed -n 2p "$dir/wait1.out")" ] || fail "-q: $(cat "$dir/quiet1.out")"
# a record of a job submitted without waiting: the request as the coordinator stored it
run save1 "$opg" result 1 -C "$C" -q --save "$dir/rec1.json"
expect save1 0 "^record=$dir/rec1.json$"
run verify1 "$opg" verify "$dir/rec1.json" -m "$model" --backend cpu -t 1
expect verify1 0 "^verdict *VALID"
run save1again "$opg" result 1 -C "$C" --save "$dir/rec1.json"
expect save1again 2 "never overwritten"
run save2 "$opg" result 2 -C "$C" --save "$dir/rec2.json"
expect save2 1 "cancelled"
[ ! -e "$dir/rec2.json" ] || fail "a record was written for a cancelled job"
run nowaitsave "$opg" submit -C "$C" -m "$model" -p abc --no-wait --save "$dir/x.json"
expect nowaitsave 2 "opg result JOB --save"
run status1b "$opg" status 1 -C "$C"
expect status1b 0 "^job=1 state=done tokens=4$"
run cancel1 "$opg" cancel 1 -C "$C"
expect cancel1 0 "^job=1 state=done$"
# the prompt from a file and from standard input (-f): the same job as -p abc (job 3)
printf abc >"$dir/prompt.txt"
run submit4 "$opg" submit -C "$C" -m "$model" -f "$dir/prompt.txt" -n 4 -q
expect submit4 0 "^job=4 tokens=4"
run submit5 "$opg" submit -C "$C" -m "$model" -f - -n 4 -q <"$dir/prompt.txt"
expect submit5 0 "^job=5 tokens=4"
root3=$(grep -o 'trace_root=[0-9a-f]*' "$dir/submit3.out")
[ -n "$root3" ] && grep -q "$root3" "$dir/submit4.out" && grep -q "$root3" "$dir/submit5.out" \
    || fail "-f: another trace root than -p's ($root3): $(cat "$dir/submit4.out" "$dir/submit5.out")"
run bothp "$opg" submit -C "$C" -m "$model" -p abc -f "$dir/prompt.txt"
expect bothp 2 "give the prompt once"
run nofile "$opg" submit -C "$C" -m "$model" -f "$dir/none.txt"
expect nofile 1 "cannot open the prompt file"
head -c 1048577 /dev/zero | tr '\0' a >"$dir/big.txt"
run bigp "$opg" submit -C "$C" -m "$model" -f "$dir/big.txt"
expect bigp 1 "over 1048576 bytes"
# unknown ids and bad arguments
for c in status result cancel; do
    run "unknown-$c" "$opg" $c 99 -C "$C"
    expect "unknown-$c" 1 "no job 99"
    run "noid-$c" "$opg" $c -C "$C"
    expect "noid-$c" 2 "one job id expected"
    for bad in 0 abc -1 1x 9223372036854775808; do
        run "bad-$c" "$opg" $c -C "$C" -- "$bad"
        expect "bad-$c" 2 "is not a job id"
    done
done
run two "$opg" status 1 2 -C "$C"
expect two 2 "one job id expected"
run help "$opg" result --help
expect help 0 "opg result JOB"
run sk "$opg" status 1 -C "$C" --server-key x
expect sk 2 "needs --key"
run far "$opg" status 1 -C tcp://192.0.2.1:5556
expect far 1 "CurveZMQ is required"
run ctx1 "$build/worker/opg-worker" -C "tcp://127.0.0.1:$wp" -m "$model" --ctx 1
expect ctx1 2 "--ctx must be 0"

# CurveZMQ: two admitted clients, each sees only its own jobs
for k in coord a b; do
    "$opg" keygen -o "$dir/$k.key" >"$dir/$k.pub" 2>/dev/null || fail "keygen $k"
done
# a job that fails (its prompt longer than the context): the error names the job
head -c 3000 /dev/zero | tr '\0' a >"$dir/long.txt"
run failsub "$opg" submit -C "$C" -m "$model" -f "$dir/long.txt" -n 4 --no-wait
expect failsub 0 "^job="
fid=$(sed -n 's/^job=//p' "$dir/failsub.out")
run failres "$opg" result "$fid" -C "$C" --wait
expect failres 1 "^opg result: job $fid: prompt too long: 3000 tokens, the context holds 256"
run kns "$opg" status 1 -C "$C" --key "$dir/a.key" # a key alone would go unused: plain text
expect kns 2 "--key needs --server-key"
run twice "$build/worker/opg-worker" -C "$C" -m "$model" -m "$(dirname "$model")/./$(basename "$model")" \
    --backend cpu --metrics off
expect twice 2 "and -m $model are the same file: give each model once"
cp "$model" "$dir/copy.gguf" # the same bytes in another file: found once loaded
run twocopies "$build/worker/opg-worker" -C "$C" -m "$model" -m "$dir/copy.gguf" --backend cpu --metrics off
expect twocopies 2 "-m $dir/copy.gguf is the same model as -m $model (id "
run badbe "$build/worker/opg-worker" -C "$C" -m "$model" --backend cuda:x
expect badbe 2 "--backend must be auto, cpu, cuda or cuda:N, got 'cuda:x'"
run longname "$build/worker/opg-worker" -C "$C" -m "$model" --name "$(printf '%065d' 0)"
expect longname 2 "--name is 65 bytes, at most 64"
run rcx "$build/worker/opg-worker" -C "$C" -m "$model" --reconnect-ms 5000 --reconnect-max-ms 100
expect rcx 2 "--reconnect-ms (5000) is above --reconnect-max-ms (100)"
: >"$dir/empty.allow"
run emptyallow "$build/coordinator/opg-coordinator" --db "$dir/k.db" --workers "tcp://127.0.0.1:$(free_port)" \
    --clients "tcp://127.0.0.1:$(free_port)" --metrics off --key "$dir/coord.key" --allow-workers "$dir/empty.allow" \
    --allow-clients "$dir/a.pub"
expect emptyallow 2 "empty.allow holds no key: no worker could connect"
run oneallow "$build/coordinator/opg-coordinator" --db "$dir/k.db" --workers "tcp://127.0.0.1:$(free_port)" \
    --clients "tcp://127.0.0.1:$(free_port)" --metrics off --key "$dir/coord.key" --allow-workers "$dir/a.pub"
expect oneallow 2 "both --allow-workers and --allow-clients are needed .*--allow-clients missing"
cat "$dir/a.pub" "$dir/b.pub" >"$dir/clients.allow"
cp "$dir/a.pub" "$dir/workers.allow" # no worker: the jobs stay queued
wp2=$(free_port) cp2=$(free_port)
C2="tcp://127.0.0.1:$cp2"
"$build/coordinator/opg-coordinator" --db "$dir/jobs2.db" --workers "tcp://127.0.0.1:$wp2" --clients "$C2" \
    --metrics off --key "$dir/coord.key" --allow-workers "$dir/workers.allow" \
    --allow-clients "$dir/clients.allow" 2>"$dir/coordinator2.log" &
pids+=($!)
S=$(cat "$dir/coord.pub")
run a-submit "$opg" submit -C "$C2" --key "$dir/a.key" --server-key "$S" -m "$model" -p abc -n 4 --no-wait
expect a-submit 0 "^job=1$"
run b-status "$opg" status 1 -C "$C2" --key "$dir/b.key" --server-key "$S"
expect b-status 1 "no job 1"
run b-result "$opg" result 1 -C "$C2" --key "$dir/b.key" --server-key "$S" --wait --timeout-ms 2000
expect b-result 1 "no job 1"
run b-cancel "$opg" cancel 1 -C "$C2" --key "$dir/b.key" --server-key "$S"
expect b-cancel 1 "no job 1"
run b-stream "$opg" result 1 -C "$C2" --key "$dir/b.key" --server-key "$S" --stream
expect b-stream 1 "no job 1"
run a-status "$opg" status 1 -C "$C2" --key "$dir/a.key" --server-key "$S"
expect a-status 0 "^job=1 state=queued"
run a-cancel "$opg" cancel 1 -C "$C2" --key "$dir/a.key" --server-key "$S"
expect a-cancel 0 "^job=1 state=cancelled$"
# Text prompts and contexts: the coordinator counts a text prompt as one
# token, so the cheap worker with a 2-position context seems to hold a job of
# max_tokens 2; it answers with the prompt's length and the job moves to the
# worker whose context holds it. With that worker gone, it fails, and
# `opg result` says why (a failed job is finished, not "not finished").
wp3=$(free_port) cp3=$(free_port)
C3="tcp://127.0.0.1:$cp3"
"$build/coordinator/opg-coordinator" --db "$dir/jobs3.db" --workers "tcp://127.0.0.1:$wp3" --clients "$C3" \
    --metrics off 2>"$dir/coordinator3.log" &
pids+=($!)
"$build/worker/opg-worker" -C "tcp://127.0.0.1:$wp3" -m "$model" --backend cpu --threads 1 --name small --ctx 2 \
    --price 1 2>"$dir/small.log" &
pids+=($!)
"$build/worker/opg-worker" -C "tcp://127.0.0.1:$wp3" -m "$model" --backend cpu --threads 1 --name big --price 5 \
    2>"$dir/big.log" &
big=$!
pids+=($big)
for _ in $(seq 100); do [ "$(grep -c "event=worker_ready" "$dir/coordinator3.log")" -ge 2 ] && break; sleep 0.1; done
run text "$opg" submit -C "$C3" -m "$model" -p abcabcabc -n 2 -q
expect text 0 "stop=max_tokens"
grep -q "prompt longer than the worker's context" "$dir/coordinator3.log" \
    || fail "the job did not move from the small context: $(grep job_ "$dir/coordinator3.log")"
kill -TERM "$big"
for _ in $(seq 100); do grep -q "event=worker_lost worker=big" "$dir/coordinator3.log" && break; sleep 0.1; done
run nofit "$opg" submit -C "$C3" -m "$model" -p abcabcabc -n 2 -q --no-wait
expect nofit 0 "^job=2$"
for _ in $(seq 100); do "$opg" status 2 -C "$C3" | grep -q "state=failed" && break; sleep 0.1; done
run failed "$opg" result 2 -C "$C3"
expect failed 1 "prompt too long"
# A busy worker whose context holds the prompt is waited for: the job does
# not bounce off the free one that cannot hold it (the coordinator learns the
# length once). Jobs no registered worker will take (their max_price) step
# aside for the jobs behind them, and run once a worker that takes them
# registers.
wp4=$(free_port) cp4=$(free_port)
C4="tcp://127.0.0.1:$cp4"
"$build/coordinator/opg-coordinator" --db "$dir/jobs4.db" --workers "tcp://127.0.0.1:$wp4" --clients "$C4" \
    --metrics off --liveness 20 2>"$dir/coordinator4.log" &
pids+=($!)
"$build/worker/opg-worker" -C "tcp://127.0.0.1:$wp4" -m "$model" --backend cpu --threads 1 --name small4 --ctx 2 \
    --price 1 --liveness 20 2>"$dir/small4.log" &
pids+=($!)
"$build/worker/opg-worker" -C "tcp://127.0.0.1:$wp4" -m "$model" --backend cpu --threads 1 --name big4 --ctx 64 \
    --slots 1 --price 5 --liveness 20 2>"$dir/big4.log" &
big4=$!
pids+=($big4)
for _ in $(seq 100); do [ "$(grep -c "event=worker_ready" "$dir/coordinator4.log")" -ge 2 ] && break; sleep 0.1; done
kill -STOP "$big4"
run hold "$opg" submit -C "$C4" -m "$model" -p abcabcabc -n 4 --no-wait # big4's one slot, frozen
expect hold 0 "^job=1$"
run long "$opg" submit -C "$C4" -m "$model" -p abcabcabc -n 100 --no-wait # no context holds 9 + 99
expect long 0 "^job=2$"
for _ in $(seq 50); do grep -q "job=2 .*prompt longer than the worker's context" "$dir/coordinator4.log" && break; sleep 0.1; done
sleep 0.3
kill -CONT "$big4"
run long2 "$opg" result 2 -C "$C4" --wait -q
expect long2 0 "^job=2 tokens=56 stop=context"
[ "$(grep -c "job=2 .*prompt longer than the worker's context" "$dir/coordinator4.log")" -eq 1 ] \
    || fail "job 2 bounced: $(grep "job=2" "$dir/coordinator4.log")"
for i in $(seq 65); do
    "$opg" submit -C "$C4" -m "$model" -p abc -n 2 --max-price 1 --no-wait >/dev/null 2>&1 || fail "submit $i"
done
run after "$opg" submit -C "$C4" -m "$model" -p abc -n 2 -q --timeout-ms 10000
expect after 0 "stop=max_tokens"
"$build/worker/opg-worker" -C "tcp://127.0.0.1:$wp4" -m "$model" --backend cpu --threads 1 --name free4 \
    --liveness 20 2>"$dir/free4.log" &
pids+=($!)
run parked "$opg" result 3 -C "$C4" --wait -q --timeout-ms 20000
expect parked 0 "^job=3 tokens=2"
run parked2 "$opg" result 67 -C "$C4" --wait -q --timeout-ms 20000
expect parked2 0 "^job=67 tokens=2"
echo "ok: opg status/result/cancel by id (queued, cancelled, waited, streamed, = opg submit's result); each client sees only its own jobs"
