#!/usr/bin/env bash
# brokerd end to end, told in words: the real daemon on temp sockets and a temp database,
# the example platform and policy, the host-process (memfd) backend; a HW-domain agent and
# a peer agent built on libbrokerd-client; brokerctl as the admin; then the data path, two
# agents that talk over libbrokerd-channel in a region, woken by its doorbells.
set -euo pipefail
BUILD=${BUILD:-build}
here=$(cd "$(dirname "$0")/.." && pwd)
brokerd=$BUILD/brokerd/daemon/brokerd brokerctl=$BUILD/client/brokerctl agent=$BUILD/examples/brokerd-agent
channel_agent=$BUILD/examples/channel-agent
for b in "$brokerd" "$brokerctl" "$agent" "$channel_agent"; do
        [ -x "$b" ] || { echo "demo: $b is not built (meson setup $BUILD && meson compile -C $BUILD)" >&2; exit 1; }
done

dir=$(mktemp -d /tmp/brokerd-demo.XXXXXX)
pids=()
cleanup() {
        for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
        wait 2>/dev/null || true
        rm -rf "$dir"
}
trap cleanup EXIT

step=0
say() { step=$((step + 1)); printf '\n[%d] %s\n' "$step" "$*"; }
ctl() { "$brokerctl" --socket "$dir/admin.sock" "$@"; }

say "Starting brokerd: platform $here/docs/examples/platform.json, policy $here/docs/examples/policy.json,"
echo "    database $dir/brokerd.db, sockets $dir/agent.sock (agents) and $dir/admin.sock (admin)"
"$brokerd" --platform "$here/docs/examples/platform.json" --policy "$here/docs/examples/policy.json" \
        --db "$dir/brokerd.db" --agent-socket "$dir/agent.sock" --admin-socket "$dir/admin.sock" \
        --log-target stderr 2> "$dir/brokerd.log" &
pids+=($!)
for _ in $(seq 100); do [ -S "$dir/admin.sock" ] && break; sleep 0.05; done
ctl status | sed 's/^/    /'

# Waits until FILE has a line matching PATTERN and prints that line.
wait_line() {
        for _ in $(seq 200); do
                if grep -q -- "$2" "$1" 2>/dev/null; then grep -m1 -- "$2" "$1"; return 0; fi
                sleep 0.05
        done
        echo "demo: no '$2' from $1" >&2; cat "$1" >&2; exit 1
}

say "hw0's agent (it drives the NIC nic0) shares 4MiB with vm1, read-write, and writes a packet into it"
"$agent" --socket "$dir/agent.sock" share --owner hw0 --device nic0 --size 4MiB --peer vm1:rw \
        --label "rx ring" --write "hello from hw0's NIC, packet #1" --hold > "$dir/owner.out" 2>&1 &
pids+=($!)
line=$(wait_line "$dir/owner.out" "region=")
echo "    $line"
region=$(sed -n 's/.*region=\([0-9]*\).*/\1/p' <<<"$line")
token=$(sed -n 's/.*token\.vm1=\([0-9a-f]*\).*/\1/p' <<<"$line")
echo "    (hw0 hands vm1's agent the one-time token $token)"

say "vm1's agent redeems the token: the broker passes it the region as an fd; it reads what hw0 wrote"
"$agent" --socket "$dir/agent.sock" attach --domain vm1 --token "$token" --read 64 \
        --hold --release-on-recall > "$dir/peer.out" 2>&1 &
peer=$!
pids+=($peer)
echo "    $(wait_line "$dir/peer.out" "attached")"
echo "    $(wait_line "$dir/peer.out" "read:")"

say "The admin looks: brokerctl list"
ctl list | sed 's/^/    /'

say "The admin revokes region $region with a 5s deadline; vm1 is recalled, releases, and the region is reclaimed"
ctl revoke "$region" --deadline 5s | sed 's/^/    /'
echo "    vm1: $(wait_line "$dir/peer.out" "recall")"
echo "    vm1: $(wait_line "$dir/peer.out" "released")"
wait "$peer" || { echo "demo: the peer agent failed" >&2; cat "$dir/peer.out" >&2; exit 1; }
for _ in $(seq 100); do ctl show "$region" >/dev/null 2>&1 || break; sleep 0.05; done
if ctl show "$region" >/dev/null 2>&1; then echo "demo: region $region was not reclaimed" >&2; exit 1; fi
echo "    brokerctl show $region: $(ctl show "$region" 2>&1 || true)"

say "The data path: hw0 shares a new region with doorbells; vm1 attaches; they talk over libbrokerd-channel"
"$channel_agent" --socket "$dir/agent.sock" owner --owner hw0 --device nic0 --size 4MiB --peer vm1 \
        > "$dir/channel-owner.out" 2>&1 &
owner=$!
pids+=($owner)
line=$(wait_line "$dir/channel-owner.out" "region=")
echo "    hw0: $line"
region=$(sed -n 's/.*region=\([0-9]*\).*/\1/p' <<<"$line")
token=$(sed -n 's/.*token\.vm1=\([0-9a-f]*\).*/\1/p' <<<"$line")
"$channel_agent" --socket "$dir/agent.sock" peer --domain vm1 --token "$token" --rounds 2 \
        > "$dir/channel-peer.out" 2>&1 || { echo "demo: the channel peer failed" >&2; cat "$dir/channel-peer.out" >&2; exit 1; }
wait "$owner" || { echo "demo: the channel owner failed" >&2; cat "$dir/channel-owner.out" >&2; exit 1; }
sed 's/^/    vm1: /' "$dir/channel-peer.out"
grep -v '^region=' "$dir/channel-owner.out" | sed 's/^/    hw0: /'

say "The audit trail"
ctl audit | sed 's/^/    /'
echo
echo "Done: shared, attached, read through shared memory, revoked, released, reclaimed;"
echo "then a channel over a region: messages both ways, copy and zero-copy, woken by doorbells."
