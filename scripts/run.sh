#!/usr/bin/env bash
# run.sh: the main job. For now: builds opg and runs opg-bench, the kernel
# benchmarks with their bit-exactness checks, on the CPU. Extra arguments go
# to opg-bench (e.g. --quick, --json, --threads 2).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh
opg_install_deps
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc 2>/dev/null || echo 2)" --target opg-bench
exec build/bench/opg-bench "$@"
