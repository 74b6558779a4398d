#!/usr/bin/env bash
# Fuzz brokerd for a given time (docs/fuzzing.md).
#
#   tests/fuzz/run-fuzz.sh [--merge] [--keep] [--jobs N] [--campaign DIR] TARGET|all SECONDS [-- LIBFUZZER_ARGS...]
#
# Builds the libFuzzer targets with clang (CC=clang-14 meson setup $BUILD -Dfuzzing=true, once;
# $BUILD defaults to build-fuzz), then runs fuzz-TARGET (rpc, platform, policy, channel; all runs each
# in turn, SECONDS each) from a copy of tests/fuzz/corpus/TARGET with its dictionary, and
# prints how many inputs it executed and how fast. --jobs N runs N fuzzers side by side on
# one shared working corpus (the machine's other users permitting). --merge adds to
# tests/fuzz/corpus/TARGET the fewest inputs that reach every edge it does not reach yet
# (libFuzzer -merge=1 -use_counters=0: edges, not hit counts, so the replay suite stays fast
# under valgrind). --keep leaves the working corpus (every input that found something) behind.
# --campaign DIR keeps the working corpus in DIR/TARGET across runs (a later run goes on from
# where the last one stopped, even in another session) and appends each run to DIR/TARGET/runs.log
# (time, commit, seconds, executions, findings); the totals over the log are printed.
# Crashes, leaks, timeouts and sanitizer reports are written to $FINDINGS/TARGET
# (default /tmp/fuzz-findings/TARGET) with the log; the script then exits 1.
set -euo pipefail

src=$(cd "$(dirname "$0")/../.." && pwd)
build=${BUILD:-$src/build-fuzz}
findings=${FINDINGS:-/tmp/fuzz-findings}
cc=${CC:-clang-14}
merge=0
keep=0
jobs=1
campaign=

usage() {
        sed -n '2,/^set /p' "$0" | sed -e '/^set /d' -e 's/^# \{0,1\}//' >&2
        exit 2
}

while [ $# -gt 0 ]; do
        case $1 in
        --merge) merge=1; shift ;;
        --keep) keep=1; shift ;;
        --jobs) jobs=${2:?}; shift 2 ;;
        --jobs=*) jobs=${1#--jobs=}; shift ;;
        --campaign) campaign=${2:?}; shift 2 ;;
        --campaign=*) campaign=${1#--campaign=}; shift ;;
        -h|--help) usage ;;
        *) break ;;
        esac
done
[ $# -ge 2 ] || usage
target=$1 seconds=$2
shift 2
[ "${1:-}" = -- ] && shift
case $seconds in ''|*[!0-9]*) usage ;; esac
case $jobs in ''|*[!0-9]*|0) usage ;; esac
case $target in
all) targets=(platform policy rpc channel) ;;
rpc|platform|policy|channel) targets=("$target") ;;
*) echo "unknown target $target (rpc, platform, policy, channel or all)" >&2; exit 2 ;;
esac

if [ ! -f "$build/build.ninja" ]; then
        CC=$cc meson setup "$build" "$src" -Dfuzzing=true >/dev/null
elif ! meson introspect "$build" --buildoptions | grep -q '"name": "fuzzing", "value": true'; then
        meson configure "$build" -Dfuzzing=true >/dev/null
fi
ninja -C "$build" "${targets[@]/#/tests/fuzz/fuzz-}" >/dev/null

# Long enough for the length limits of every target (rpc's messages are capped at 8 KiB).
max_len=16384
status=0

for t in "${targets[@]}"; do
        exe=$build/tests/fuzz/fuzz-$t
        if [ -n "$campaign" ]; then
                work=$campaign/$t
                mkdir -p "$work/corpus"
        else
                work=$(mktemp -d "${TMPDIR:-/tmp}/brokerd-fuzz-$t.XXXXXX")
        fi
        out=$findings/$t
        mkdir -p "$work/corpus" "$out"
        known=$(ls "$out" | grep -cE '^(crash|leak|timeout|oom|slow-unit)-' || true)
        # A campaign's corpus also gets what was stored since its last run (cp -n: nothing replaced).
        cp -n "$src/tests/fuzz/corpus/$t/." "$work/corpus/" -R

        # UBSan is built not to recover (-fno-sanitize-recover), so any report is a crash; LSan
        # checks every input that allocated more than it freed.
        export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}
        export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
        args=(-max_total_time="$seconds" -max_len="$max_len" -timeout=10 -rss_limit_mb=2560
              -print_final_stats=1 -dict="$src/tests/fuzz/$t.dict" -artifact_prefix="$out/" "$@")

        echo "fuzz-$t: $seconds s, $jobs job(s), corpus $work/corpus, findings $out/"
        pids=()
        for ((j = 0; j < jobs; j++)); do
                "$exe" "${args[@]}" "$work/corpus" >"$work/job$j.log" 2>&1 &
                pids+=($!)
        done
        failed=0
        for p in "${pids[@]}"; do
                wait "$p" || failed=1
        done

        execs=0 rate=0
        for ((j = 0; j < jobs; j++)); do
                n=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/job$j.log" | tail -1)
                r=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$work/job$j.log" | tail -1)
                execs=$((execs + ${n:-0}))
                rate=$((rate + ${r:-0}))
                grep -h '^fuzz-rpc: ' "$work/job$j.log" || true
        done
        echo "fuzz-$t: $execs executions ($rate exec/s), corpus $(ls "$work/corpus" | wc -l) inputs"

        found=$(( $(ls "$out" | grep -cE '^(crash|leak|timeout|oom|slow-unit)-' || true) - known ))
        [ "$failed" = 1 ] && [ "$found" = 0 ] && found=1
        if [ -n "$campaign" ]; then
                rev=$(git -C "$src" rev-parse --short HEAD 2>/dev/null || echo unknown)
                git -C "$src" diff --quiet HEAD -- brokerd policy 'tests/fuzz/*.[ch]' 2>/dev/null || rev=$rev+dirty
                printf '%s %s %s %ss %s execs %s exec/s %s jobs findings %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
                        "$rev" "$t" "$seconds" "$execs" "$rate" "$jobs" "$found" >>"$work/runs.log"
                awk -v t="$t" '{ n++; e += $5; f += $12 } END { printf "fuzz-%s: campaign %d runs, %d executions, %d findings\n", t, n, e, f }' \
                        "$work/runs.log"
        fi

        if [ "$found" != 0 ]; then
                for ((j = 0; j < jobs; j++)); do
                        cp "$work/job$j.log" "$out/fuzz-$t-job$j.log"
                done
                echo "fuzz-$t: FINDINGS in $out/ (logs fuzz-$t-job*.log there)" >&2
                status=1
        fi
        if [ "$merge" = 1 ]; then
                before=$(ls "$src/tests/fuzz/corpus/$t" | wc -l)
                "$exe" -merge=1 -use_counters=0 -max_len="$max_len" "$src/tests/fuzz/corpus/$t" "$work/corpus" \
                        >"$work/merge.log" 2>&1
                echo "fuzz-$t: merged $(($(ls "$src/tests/fuzz/corpus/$t" | wc -l) - before)) new inputs into tests/fuzz/corpus/$t"
        fi
        if [ "$keep" = 1 ] || [ -n "$campaign" ]; then
                echo "fuzz-$t: working corpus and logs kept in $work"
        else
                rm -rf "$work"
        fi
done
exit $status
