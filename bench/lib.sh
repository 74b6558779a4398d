# shellcheck shell=sh disable=SC2034,SC2154 # sets and reads the sourcing script's variables
# What the bench/run-*.sh scripts share; they source it (. "$root/bench/lib.sh") after setting
# $root and $name (the script's name, which starts every message). POSIX sh, set -eu.

# With --json among the arguments, stdout is the benchmark's JSON and banners go to stderr:
# sets $json (true/false) and $banner (the banners' fd).
bench_parse_json() {
        json=false
        for a in "$@"; do
                [ "$a" = --json ] && json=true
        done
        if $json; then banner=2; else banner=1; fi
}

# Exits unless run as root; $1 says why root is needed.
bench_require_root() {
        if [ "$(id -u)" -ne 0 ]; then
                echo "$name: run as root: $1" >&2
                exit 1
        fi
}

# Sets up build directory $1 in release mode if it does not exist yet and builds the targets
# that follow; the build's output goes to stderr.
bench_build() {
        b=$1
        shift
        if [ ! -d "$b" ]; then
                meson setup "$b" "$root" --buildtype=release >&2
        fi
        ninja -C "$b" "$@" >&2
}

# Kills process $1 if it is set and reaps it, ignoring any failure (cleanup paths).
bench_kill_quiet() {
        if [ -n "$1" ]; then
                kill "$1" 2>/dev/null || true
                wait "$1" 2>/dev/null || true
        fi
}

# The trap of a script that starts one brokerd ($pid) with its files in $dir.
# shellcheck disable=SC2317 # called by the trap
bench_cleanup() {
        bench_kill_quiet "$pid"
        if [ -n "$dir" ]; then
                rm -rf "$dir"
        fi
        pid=
        dir=
}

# Prints $2 to stderr, then the last lines of log $1, and exits 1.
bench_fail_log() {
        echo "$name: $2" >&2
        tail -n 20 "$1" >&2
        exit 1
}

# Waits up to $2 * 50ms for brokerd ($1) to create every socket after $4 ($3 is its log):
# exits with the log if it dies or takes longer.
bench_wait_sockets() {
        w_pid=$1
        w_tries=$2
        w_log=$3
        shift 3
        i=0
        for s in "$@"; do
                while [ ! -S "$s" ]; do
                        i=$((i + 1))
                        if [ "$i" -gt "$w_tries" ] || ! kill -0 "$w_pid" 2>/dev/null; then
                                echo "$name: brokerd did not start:" >&2
                                cat "$w_log" >&2
                                exit 1
                        fi
                        sleep 0.05
                done
        done
}

# Stops brokerd, whose pid is in the variable named $1 (emptied once it is reaped), with
# SIGTERM, and exits with its log ($2) unless it exits 0.
bench_stop_daemon() {
        eval "s_pid=\$$1"
        kill "$s_pid"
        s_status=0
        wait "$s_pid" || s_status=$?
        eval "$1="
        if [ "$s_status" -ne 0 ]; then
                bench_fail_log "$2" "brokerd exited with status $s_status:"
        fi
}

# The machine line that heads every report.
bench_machine() {
        echo "machine: $(nproc) CPUs ($(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)), Linux $(uname -r)"
}

# The filesystem directory $1 is on (/dev/shm may be mounted more than once; the last mount is
# the one in use), or nothing if findmnt cannot tell.
bench_fstype() {
        findmnt -n -o FSTYPE -T "$1" 2>/dev/null | tail -n 1
}
