#!/bin/sh
# Builds brokerd in release mode and prints the placement benchmark's figures.
# BUILD_DIR overrides the build directory (default: build-bench in the repository root).
set -eu

root=$(cd "$(dirname "$0")/.." && pwd)
name=run-placement-bench
# shellcheck source=bench/lib.sh source-path=SCRIPTDIR/..
. "$root/bench/lib.sh"
build=${BUILD_DIR:-"$root/build-bench"}

bench_build "$build" bench/placement-bench
exec "$build/bench/placement-bench"
