#!/bin/sh
# The meson test guestbench-tcp: guestbench's two sides over TCP on 127.0.0.1 (B listens, A
# connects), every case with data-plane-bench's counts divided by 1000; both must exit 0 and report
# every case (A with its round trips). Bad arguments must be refused with status 2.
# Usage: guestbench-tcp.sh GUESTBENCH
set -eu
bin=$1
dir=$(mktemp -d)
b_pid=
# shellcheck disable=SC2317 # called by the trap
cleanup() {
        if [ -n "$b_pid" ]; then
                kill "$b_pid" 2>/dev/null || true
                wait "$b_pid" 2>/dev/null || true
        fi
        rm -rf "$dir"
}
trap cleanup EXIT

for bad in "" "c tcp" "a nosuch" "a tcp --divide 0" "a tcp --cases pp-2" "a copy --peer 70000"; do
        status=0
        # shellcheck disable=SC2086 # split on purpose
        "$bin" $bad >/dev/null 2>&1 || status=$?
        [ "$status" -eq 2 ] || { echo "guestbench $bad: status $status, not 2" >&2; exit 1; }
done

port=$((20000 + $$ % 20000))
"$bin" b tcp --port "$port" --divide 1000 >"$dir/b.out" 2>&1 &
b_pid=$!
i=0
until grep -q '^READY' "$dir/b.out"; do
        i=$((i + 1))
        [ "$i" -lt 100 ] || { cat "$dir/b.out" >&2; echo "side B never listened" >&2; exit 1; }
        sleep 0.1
done
"$bin" a tcp --peer-ip 127.0.0.1 --port "$port" --divide 1000 >"$dir/a.out" 2>&1 || { cat "$dir/a.out" >&2; exit 1; }
wait "$b_pid" || { cat "$dir/b.out" >&2; exit 1; }
b_pid=
for side in a b; do
        n=$(grep -c '^CASE ' "$dir/$side.out")
        [ "$n" -eq 8 ] || { cat "$dir/$side.out" >&2; echo "side $side reported $n cases, not 8" >&2; exit 1; }
done
pp=$(grep -c '^CASE side=A key=pp-.* p50_ns=[0-9]' "$dir/a.out")
[ "$pp" -eq 5 ] || { cat "$dir/a.out" >&2; echo "A reported $pp ping-pong round trips, not 5" >&2; exit 1; }
echo "guestbench: both sides ran every case over TCP"
