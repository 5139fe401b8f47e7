#!/usr/bin/env bash
# deps.sh: installs what building and testing opg needs on a fresh Debian/Ubuntu
# machine, only the packages that are missing. Sourced by run.sh and test.sh.
set -euo pipefail

OPG_DEB_PACKAGES=(build-essential cmake pkg-config libcmocka-dev libsodium-dev libxxhash-dev libpcre2-dev libprotobuf-c-dev protobuf-c-compiler
    libzmq3-dev libsqlite3-dev libmicrohttpd-dev libcjson-dev uthash-dev python3)

opg_install_deps() {
    local missing=()
    for p in "${OPG_DEB_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        echo "opg: installing ${missing[*]}" >&2
        local sudo=""
        [ "$(id -u)" -ne 0 ] && sudo="sudo"
        $sudo apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
    # PyPI gguf + numpy: tests/data/gen_tiny_models.py writes the tiny test models.
    if ! python3 -c "import gguf, numpy" 2>/dev/null; then
        echo "opg: installing the Python packages gguf numpy" >&2
        local sudo=""
        [ "$(id -u)" -ne 0 ] && sudo="sudo"
        if ! python3 -m pip --version >/dev/null 2>&1; then
            $sudo apt-get update -qq
            DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends python3-pip >/dev/null
        fi
        # Debian's own python3 refuses pip installs outside a venv (PEP 668) unless told.
        local user=""
        [ "$(id -u)" -ne 0 ] && user="--user"
        python3 -m pip install --quiet $user gguf numpy 2>/dev/null ||
            python3 -m pip install --quiet $user --break-system-packages gguf numpy
    fi
    # cuobjdump (in the full CUDA toolkit; NVIDIA's PyPI wheel where nvcc came
    # without it): test_cuda_fatbin reads the kernels' fat binaries with it.
    if command -v nvcc >/dev/null 2>&1 &&
       ! python3 tests/ptx/ptx_contract.py --find-cuobjdump --toolkit-bin "$(dirname "$(command -v nvcc)")" >/dev/null; then
        local major pkg user=""
        major=$(nvcc --version 2>/dev/null | sed -nE 's/.*release ([0-9]+)\..*/\1/p' || true)
        case "$major" in
            "") pkg="" ;;
            12) pkg="nvidia-cuda-cuobjdump-cu12" ;;
            *) pkg="nvidia-cuda-cuobjdump==${major}.*" ;;
        esac
        [ "$(id -u)" -ne 0 ] && user="--user"
        if [ -z "$pkg" ]; then
            echo "opg: WARNING: cannot tell nvcc's version; no cuobjdump installed, test_cuda_fatbin will be skipped" >&2
        else
            echo "opg: installing the Python package $pkg (cuobjdump)" >&2
            python3 -m pip install --quiet $user "$pkg" 2>/dev/null ||
                python3 -m pip install --quiet $user --break-system-packages "$pkg" ||
                echo "opg: WARNING: could not install $pkg; test_cuda_fatbin will be skipped" >&2
        fi
    fi
}

# CUDA: nvcc is used when present (the kernels' .cu files are compiled even
# without a GPU); add the usual install location to PATH.
if ! command -v nvcc >/dev/null 2>&1 && [ -x /usr/local/cuda/bin/nvcc ]; then
    export PATH="/usr/local/cuda/bin:$PATH"
fi
