#!/usr/bin/env bash
# run.sh: the main job, on the CPU backend. Builds opg, fetches the embedded
# default model (SmolLM2-135M-Instruct, Q4_1 GGUF, SHA-256 checked), answers a
# chat prompt with `opg run` and re-executes the job by teacher-forced prefill
# to show the identical trace root, then runs opg-bench: kernel speed next to
# the measured memory bandwidth, with its bit-exactness checks. Extra
# arguments go to opg-bench (e.g. --quick, --json, --threads 2).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh
opg_install_deps
scripts/fetch-model.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc 2>/dev/null || echo 2)" --target opg opg-bench
echo "== opg run (default model, CPU backend)"
build/tools/opg run --chat -p "What is the capital of France? Answer in one sentence." -n 48 --verify
echo "== opg-bench"
exec build/bench/opg-bench "$@"
