# cli_common.sh: sourced by the command-line tests that start real daemons
# (cli_verify.sh, cli_jobs.sh): a scratch directory $dir, the daemons' pids
# in pids (killed, and $dir removed, on exit), fail (prints the daemons'
# last log lines, exits 1) and free_port (a free TCP port on 127.0.0.1).
dir=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
    wait 2>/dev/null
    rm -rf "$dir"
}
trap cleanup EXIT
fail() {
    echo "FAIL: $*" >&2
    for f in "$dir"/*.log; do [ -f "$f" ] && { echo "--- $f"; tail -5 "$f"; } >&2; done
    exit 1
}
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
