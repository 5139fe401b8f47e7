#!/usr/bin/env bash
# gpu_carry.sh: run HERE (a Debian/Ubuntu x86-64 machine with apt, i.e. the
# development machine) to collect what a bare GPU machine lacks to build and
# test opg, into one folder that travels with the working tree (git-ignored):
#
#   DEST/sysroot/   the Debian runtime + dev files of the runtime's and the
#                   tests' libraries (libsodium, libxxhash incl. xxhash.h,
#                   libpcre2-8, libcmocka, and libcjson for opg-bench's
#                   JSON) and pkgconf, unpacked with dpkg -x
#   DEST/debs/      the .deb files they came from
#   DEST/wheels/    the pure-Python gguf wheel (tests/data/gen_tiny_models.py
#                   writes the tiny test models with it)
#   DEST/tiny/      with --tiny only: the tiny models, already generated, for
#                   a GPU machine whose python3 lacks numpy (about 42 MB)
#   DEST/MANIFEST   what is in it, from where, for which glibc
#
# With --model-parts it also splits the real model (models/SmolLM2-135M-
# Instruct.Q4_1.gguf, 98 MB, fetched when missing) into <repo>/.carry-model/
# part-K-of-N of at most 48 MiB each, for a device tool that carries less
# than the model per call: bring one part per call; gpu_check.sh joins them
# once all are there and checks the SHA-256.
#
# bench/gpu_check.sh finds DEST (default <repo>/.carry) and uses each part
# only for what the GPU machine itself lacks. docs/gpu.md has the details.
#
# Usage: bench/gpu_carry.sh [--tiny] [--model-parts] [DEST]
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
tiny=0
model_parts=0
dest=""
for a in "$@"; do
    case "$a" in
    --tiny) tiny=1 ;;
    --model-parts) model_parts=1 ;;
    -h | --help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    -*) echo "gpu_carry.sh: unknown option $a" >&2; exit 2 ;;
    *) dest=$a ;;
    esac
done
dest=${dest:-$root/.carry}
mkdir -p "$dest"
dest=$(cd "$dest" && pwd)

# runtime + dev package of each library, and pkgconf (a GPU image may have
# no pkg-config); Debian 12 names
pkgs=(libsodium-dev libsodium23 libxxhash-dev libxxhash0 libpcre2-dev libpcre2-8-0
      libcmocka-dev libcmocka0 libcjson-dev libcjson1 pkgconf-bin libpkgconf3)

log() { echo "gpu_carry: $*" >&2; }

# ---- .deb files: apt-get download, else rebuilt from what dpkg installed ----
rm -rf "$dest/debs" "$dest/sysroot"
mkdir -p "$dest/debs" "$dest/sysroot"
if (cd "$dest/debs" && apt-get download "${pkgs[@]}") >"$dest/apt.log" 2>&1; then
    log "downloaded ${#pkgs[@]} packages"
    for d in "$dest"/debs/*.deb; do dpkg -x "$d" "$dest/sysroot"; done
    source_note="apt-get download"
else
    log "apt-get download failed (see $dest/apt.log); copying the installed files instead"
    for p in "${pkgs[@]}"; do
        if ! dpkg -L "$p" >/dev/null 2>&1; then
            log "package $p is neither downloadable nor installed"
            exit 1
        fi
        dpkg -L "$p" | while read -r f; do
            if [ -f "$f" ] || [ -L "$f" ]; then cp -a --parents "$f" "$dest/sysroot"; fi
        done
    done
    source_note="copied from this machine's installed packages (dpkg -L)"
fi
rm -f "$dest/apt.log"
rm -rf "$dest/sysroot/usr/share/doc" "$dest/sysroot/usr/share/man" "$dest/sysroot/usr/share/lintian"
# links to libraries we did not take (libpcre2-16.so, ...) would only confuse
find "$dest/sysroot" -xtype l -delete

sr=$dest/sysroot
libdir=$sr/usr/lib/x86_64-linux-gnu
for need in usr/include/sodium.h usr/include/xxhash.h usr/include/pcre2.h usr/include/cmocka.h usr/include/cjson/cJSON.h \
            usr/bin/pkgconf; do
    [ -e "$sr/$need" ] || { log "missing $need in the sysroot"; exit 1; }
done
for pc in libsodium libxxhash libpcre2-8 cmocka libcjson; do
    [ -f "$libdir/pkgconfig/$pc.pc" ] || { log "missing $pc.pc"; exit 1; }
done
# the carried pkgconf must answer with the carried files alone
if ! LD_LIBRARY_PATH=$libdir PKG_CONFIG_LIBDIR=$libdir/pkgconfig PKG_CONFIG_SYSROOT_DIR=$sr \
    "$sr/usr/bin/pkgconf" --cflags --libs libsodium libxxhash libpcre2-8 cmocka libcjson >/dev/null; then
    log "the carried pkgconf cannot resolve the carried .pc files"
    exit 1
fi

# ---- the gguf wheel (pure Python: any Python 3 on any platform) ---------------
rm -rf "$dest/wheels"
mkdir -p "$dest/wheels"
gguf_version=$(python3 -c 'import importlib.metadata as m; print(m.version("gguf"))' 2>/dev/null || true)
spec=gguf${gguf_version:+==$gguf_version}
if python3 -m pip download -q --no-deps --only-binary=:all: -d "$dest/wheels" "$spec" \
    >"$dest/pip.log" 2>&1; then
    log "gguf wheel: $(ls "$dest/wheels")"
    rm -f "$dest/pip.log"
else
    log "pip download $spec failed (see $dest/pip.log); the GPU machine then needs gguf, or --tiny"
fi

# ---- the tiny models, pre-generated ----------------------------------------------
rm -rf "$dest/tiny"
if [ "$tiny" = 1 ]; then
    mkdir -p "$dest/tiny"
    python3 "$root/tests/data/gen_tiny_models.py" "$dest/tiny" >/dev/null
    log "tiny models: $(ls "$dest/tiny" | wc -l) files"
fi

# ---- the real model in parts (outside DEST: each part travels on its own) -------------
parts=$root/.carry-model
rm -rf "$parts"
if [ "$model_parts" = 1 ]; then
    src=$root/models/SmolLM2-135M-Instruct.Q4_1.gguf
    "$root/scripts/fetch-model.sh" # the file, SHA-256 checked
    mkdir -p "$parts"
    mib=48 # with .carry (7 MB) and the tree (4 MB) a part's call stays well under 64 MiB
    size=$(wc -c <"$src") # the file's, also through a symbolic link
    n=$(((size + mib * 1048576 - 1) / (mib * 1048576)))
    for k in $(seq 1 "$n"); do
        dd if="$src" of="$parts/part-$k-of-$n" bs=1M skip=$(((k - 1) * mib)) count=$mib status=none
    done
    for k in $(seq 1 "$n"); do cat "$parts/part-$k-of-$n"; done | cmp -s - "$src" ||
        { log "the parts do not join into the model"; rm -rf "$parts"; exit 1; }
    log "model parts: $(ls "$parts" | tr '\n' ' ')in $parts"
fi

# ---- manifest ----------------------------------------------------------------------
{
    echo "opg GPU carry, made $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(uname -m)"
    echo "source of the packages: $source_note"
    echo "built against: $(. /etc/os-release && echo "$PRETTY_NAME"), $(ldd --version | head -1)"
    echo "(the carried .so files may need a glibc at least this new on the GPU machine)"
    echo
    echo "packages:"
    if ls "$dest"/debs/*.deb >/dev/null 2>&1; then
        for d in "$dest"/debs/*.deb; do
            echo "  $(dpkg-deb -f "$d" Package) $(dpkg-deb -f "$d" Version)"
        done
    else
        for p in "${pkgs[@]}"; do echo "  $p $(dpkg-query -W -f '${Version}' "$p")"; done
    fi
    echo
    echo "wheels: $(ls "$dest/wheels" 2>/dev/null | tr '\n' ' ')"
    echo "tiny models: $([ -d "$dest/tiny" ] && ls "$dest/tiny" | wc -l || echo 0) files"
    echo "model parts: $([ -d "$parts" ] && ls "$parts" | tr '\n' ' ' || echo none)"
    echo
    du -sh "$dest"/* 2>/dev/null | sed 's/^/  /'
} >"$dest/MANIFEST"
cat "$dest/MANIFEST"
grep -qx '/.carry/' "$root/.gitignore" 2>/dev/null || log "note: add /.carry/ to .gitignore"
log "done: $dest ($(du -sh "$dest" | cut -f1)); pass it to the GPU machine with the working tree"
