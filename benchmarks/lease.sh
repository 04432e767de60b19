#!/usr/bin/env bash
# One long training on a lent GPU, across the several commands of one lease. A command there runs at most
# 10 minutes, but a process started in a new session (setsid) runs on while the machine is held; the
# machine goes back after 30 s without a command, so the calls after the first only wait and report:
#
#   bash benchmarks/lease.sh start NAME -- COMMAND [ARGS...]   start COMMAND detached; returns at once
#   bash benchmarks/lease.sh wait NAME SECONDS                 hold the call until NAME ends or SECONDS
#                                                              pass; print the tail of its log and its state
#   bash benchmarks/lease.sh collect NAME DEST                 DEST/NAME.tgz: every file under benchmarks/
#                                                              written since the start (rows, figures,
#                                                              RESULTS.md) and the log; DEST/NAME.log
#
# e.g. a 24-minute MADE row in a 30-minute lease (three calls: start + wait 540, wait 540, wait + collect):
#   bash benchmarks/lease.sh start made -- python3 -m benchmarks.autoregressive_mlp \
#       --models made-2x8000-oa-gpu --max-minutes 22 --no-checkpoint --device cuda --quiet
#   bash benchmarks/lease.sh wait made 540
#   bash benchmarks/lease.sh wait made 480 && bash benchmarks/lease.sh collect made "$OUT"
# Then, here: tar xzf made.tgz (from the repository root). State lives in $LEASE_DIR (default /tmp/lease).
set -u
dir=${LEASE_DIR:-/tmp/lease}
usage="usage: lease.sh start NAME -- COMMAND... | wait NAME SECONDS | collect NAME DEST"
[ $# -ge 2 ] || { echo "$usage" >&2; exit 2; }
verb=$1
name=$2
[[ "$name" =~ ^[A-Za-z0-9._-]+$ ]] || { echo "lease.sh: NAME must be letters, digits, '.', '_' or '-'" >&2; exit 2; }
mkdir -p "$dir"
log="$dir/$name.log" pidf="$dir/$name.pid" rcf="$dir/$name.rc" stamp="$dir/$name.start"

running() { [ -f "$pidf" ] && kill -0 "$(cat "$pidf")" 2>/dev/null && [ ! -f "$rcf" ]; }

state() {
    if [ -f "$rcf" ]; then
        echo "lease.sh: $name finished, exit status $(cat "$rcf")"
    elif running; then
        echo "lease.sh: $name running for $(( $(date +%s) - $(stat -c %Y "$stamp") )) s"
    else
        echo "lease.sh: $name is not running and left no exit status (killed?)"
    fi
}

case "$verb" in
start)
    [ "${3:-}" = "--" ] && [ $# -ge 4 ] || { echo "$usage" >&2; exit 2; }
    shift 3
    if running; then
        echo "lease.sh: $name is already running (pid $(cat "$pidf"))" >&2
        exit 1
    fi
    rm -f "$rcf" "$log"
    touch "$stamp"
    # A new session, its own process group, no terminal: the command survives the call that started it.
    PYTHONUNBUFFERED=1 setsid bash -c '"$@" > "$0" 2>&1; echo $? > "$0.rc.tmp"; mv "$0.rc.tmp" "${0%.log}.rc"' \
        "$log" "$@" < /dev/null > /dev/null 2>&1 &
    echo $! > "$pidf"
    sleep 2
    state
    ;;
wait)
    [[ "${3:-}" =~ ^[0-9]+$ ]] || { echo "$usage" >&2; exit 2; }
    seconds=$3
    [ -f "$stamp" ] || { echo "lease.sh: nothing named $name was started" >&2; exit 1; }
    end=$(( $(date +%s) + seconds ))
    while running && [ "$(date +%s)" -lt "$end" ]; do
        left=$(( end - $(date +%s) ))
        sleep $(( left < 1 ? left : 1 ))
    done
    tail -n 25 "$log" 2>/dev/null
    state
    ;;
collect)
    [ -n "${3:-}" ] || { echo "$usage" >&2; exit 2; }
    dest=$3
    [ -f "$stamp" ] || { echo "lease.sh: nothing named $name was started" >&2; exit 1; }
    mkdir -p "$dest"
    cp "$log" "$dest/$name.log" 2>/dev/null
    mapfile -t files < <(find benchmarks -type f -newer "$stamp" ! -name '*.pyc' | sort)
    tar czf "$dest/$name.tgz" "${files[@]}" 2>/dev/null || tar czf "$dest/$name.tgz" --files-from /dev/null
    echo "lease.sh: $dest/$name.tgz holds ${#files[@]} files: ${files[*]}"
    state
    ;;
*)
    echo "$usage" >&2
    exit 2
    ;;
esac
