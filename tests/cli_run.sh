#!/usr/bin/env bash
# cli_run.sh: `opg run` end to end on the real default model (SmolLM2-135M-Instruct
# Q4_1, fetched by scripts/fetch-model.sh): coherent greedy answer, and the same
# trace root on 1 and 2 threads, alone and batched with 7 other prompts, and by
# teacher-forced re-execution. Also the CLI's error paths.
# Usage: cli_run.sh OPG_BINARY MODEL_PATH TINY_DIR (gen_tiny_models.py's output)
set -uo pipefail
opg=$1 model=$2 tiny=$3
fail() { echo "FAIL: $*" >&2; exit 1; }

# error paths first (need no model)
"$opg" run -p x -m /nonexistent.gguf >/dev/null 2>err.txt; rc=$?
[ $rc -eq 1 ] || fail "missing model: exit $rc, want 1"
grep -q "cannot read model /nonexistent.gguf" err.txt || fail "missing model: message: $(cat err.txt)"
"$opg" run --bogus >/dev/null 2>err.txt; [ $? -eq 2 ] || fail "unknown flag: want exit 2"
"$opg" run -m "$model" >/dev/null 2>err.txt; [ $? -eq 2 ] || fail "no prompt: want exit 2"
grep -q "a prompt is required" err.txt || fail "no prompt: message: $(cat err.txt)"
"$opg" run -p x -n -5 >/dev/null 2>err.txt; [ $? -eq 2 ] || fail "negative -n: want exit 2"
"$opg" run --help | grep -q "usage: opg run" || fail "--help"
"$opg" run -p x --backend cuda:abc >/dev/null 2>err.txt; [ $? -eq 2 ] || fail "--backend cuda:abc: want exit 2"
grep -q "cuda:N" err.txt || fail "--backend cuda:abc: message: $(cat err.txt)"
printf 'GGUF\x03\x00\x00\x00garbage' > bad.gguf
"$opg" run -m bad.gguf -p x >/dev/null 2>err.txt; [ $? -eq 1 ] || fail "corrupt model: want exit 1"
grep -q "bad.gguf" err.txt || fail "corrupt model: message names the file: $(cat err.txt)"
# tiny models with a tokenizer (no real model needed): a tokenizer larger
# than the embedding is refused; tokens of 257+ bytes are streamed whole
"$opg" run -m "$tiny/tiny-tok-over.gguf" -p abc -n 3 --backend cpu >/dev/null 2>err.txt; rc=$?
[ $rc -eq 1 ] || fail "tokenizer over the vocabulary: exit $rc, want 1"
grep -q "the tokenizer has 100 tokens but token_embd only 96 rows" err.txt || fail "tok-over: $(cat err.txt)"
text=$("$opg" run -m "$tiny/tiny-tok-long.gguf" -p abc -n 4 -t 1 --backend cpu 2>err.txt | head -n 1) \
    || fail "tok-long: $(cat err.txt)"
[ ${#text} -ge 257 ] || fail "tok-long: streamed text is ${#text} bytes, no long token whole: '$text'"
# the prompt from a file or standard input (-f): the job of -p with that text
printf abc >prompt.txt
rp=$("$opg" run -m "$tiny/tiny-tok-long.gguf" -p abc -n 4 -t 1 -q --backend cpu 2>err.txt | sed -n 's/^trace_root=//p')
rf=$("$opg" run -m "$tiny/tiny-tok-long.gguf" -f prompt.txt -n 4 -t 1 -q --backend cpu 2>err.txt | sed -n 's/^trace_root=//p')
rs=$("$opg" run -m "$tiny/tiny-tok-long.gguf" -f - -n 4 -t 1 -q --backend cpu <prompt.txt 2>err.txt | sed -n 's/^trace_root=//p')
[ -n "$rp" ] && [ "$rp" = "$rf" ] && [ "$rp" = "$rs" ] || fail "-f: roots -p $rp, -f FILE $rf, -f - $rs"
r0=$("$opg" run -m "$tiny/tiny-tok-long.gguf" -p abc -n 4 -t 0 -q --backend cpu 2>err.txt | sed -n 's/^trace_root=//p')
[ "$r0" = "$rp" ] || fail "-t 0 (all cores): root $r0, -t 1 gave $rp: $(cat err.txt)"
"$opg" run -p x -f prompt.txt >/dev/null 2>err.txt; [ $? -eq 2 ] || fail "-p and -f: want exit 2"
grep -q "give the prompt once" err.txt || fail "-p and -f: message: $(cat err.txt)"
for bad in "none.txt:cannot open the prompt file none.txt" "empty.txt:prompt file empty.txt: empty" \
           "nul.txt:holds a NUL byte" "big.txt:over 16777216 bytes" ".:cannot read it"; do
    f=${bad%%:*}
    : >empty.txt; printf 'a\0b' >nul.txt; head -c 16777217 /dev/zero | tr '\0' a >big.txt
    "$opg" run -m "$tiny/tiny-tok-long.gguf" -f "$f" --backend cpu >/dev/null 2>err.txt; rc=$?
    [ $rc -eq 1 ] && grep -q "${bad#*:}" err.txt || fail "-f $f: exit $rc: $(cat err.txt)"
done
rm -f empty.txt nul.txt big.txt prompt.txt
if [ -w /dev/full ]; then # output that cannot be written is a failure, not exit 0
    "$opg" run -m "$tiny/tiny-tok-long.gguf" -p abc -n 2 -t 1 --backend cpu >/dev/full 2>err.txt; rc=$?
    [ $rc -eq 1 ] && grep -q "writing to standard output: No space left on device" err.txt \
        || fail "stdout on /dev/full: exit $rc: $(cat err.txt)"
    "$opg" --help >/dev/full 2>err.txt; [ $? -eq 1 ] || fail "--help on /dev/full: want exit 1"
fi

if [ ! -f "$model" ]; then
    echo "skipped: $model not present (scripts/fetch-model.sh fetches it)"
    exit 77
fi
prompt="What is the capital of France?"
out1=$("$opg" run -m "$model" --chat -p "$prompt" -n 32 -t 1 2>err1.txt) || fail "run 1: $(cat err1.txt)"
echo "$out1"
echo "$out1" | grep -q "Paris" || fail "greedy answer does not mention Paris"
root1=$(echo "$out1" | sed -n 's/^trace_root=//p')
out2=$("$opg" run -m "$model" --chat -p "$prompt" -n 32 -t 2 --batch-with 7 --verify -q 2>err2.txt) \
    || fail "run 2 (batched, verify): $(cat err2.txt)"
root2=$(echo "$out2" | sed -n 's/^trace_root=//p')
replay=$(echo "$out2" | sed -n 's/^replay_root=//p')
[ -n "$root1" ] || fail "no trace root printed"
[ "$root1" = "$root2" ] || fail "trace root differs: 1 thread alone $root1, 2 threads batched $root2"
[ "$root1" = "$replay" ] || fail "teacher-forced replay root $replay differs from $root1"
# seeded sampling: same seed, same root; the root changes with the seed
s1=$("$opg" run -m "$model" -p "Once upon a time" -n 16 --temp 0.8 --seed 7 -q -t 1 2>/dev/null | sed -n 's/^trace_root=//p')
s2=$("$opg" run -m "$model" -p "Once upon a time" -n 16 --temp 0.8 --seed 7 -q -t 2 --batch-with 3 2>/dev/null | sed -n 's/^trace_root=//p')
s3=$("$opg" run -m "$model" -p "Once upon a time" -n 16 --temp 0.8 --seed 8 -q -t 1 2>/dev/null | sed -n 's/^trace_root=//p')
[ "$s1" = "$s2" ] || fail "seeded run differs between 1 thread alone and 2 threads batched"
[ "$s1" != "$s3" ] || fail "a different seed gave the same trace root"
# a prompt over -c: the CLI says so (not the scheduler's "request 0"); a
# neighbour of --batch-with that does not fit is left out with a notice and
# the user's job is unchanged
"$opg" run -m "$model" -p "$prompt" -n 2 -c 4 -q >/dev/null 2>err.txt; rc=$?
[ $rc -eq 1 ] || fail "prompt over -c: exit $rc, want 1"
grep -q "the prompt is [0-9]* tokens, the context holds 4 (-c)" err.txt || fail "prompt over -c: $(cat err.txt)"
c1=$("$opg" run -m "$model" -p "Hi" -n 2 -c 8 -q 2>/dev/null | sed -n 's/^trace_root=//p')
c2=$("$opg" run -m "$model" -p "Hi" -n 2 -c 8 -q --batch-with 7 2>err.txt | sed -n 's/^trace_root=//p')
grep -q "neighbour prompt [0-9]* left out" err.txt || fail "--batch-with over -c: no notice: $(cat err.txt)"
grep -q "^batch *[2-7] sequence" err.txt || fail "--batch-with over -c: all neighbours left out: $(cat err.txt)"
[ -n "$c1" ] && [ "$c1" = "$c2" ] || fail "--batch-with over -c: root $c2, alone $c1"
echo "ok: trace root $root1 identical (1 thread alone, 2 threads batched with 7, replay)"
