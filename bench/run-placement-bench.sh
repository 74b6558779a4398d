#!/bin/sh
# Builds brokerd in release mode and prints the placement benchmark's figures.
# BUILD_DIR overrides the build directory (default: build-bench in the repository root).
set -eu

root=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD_DIR:-"$root/build-bench"}

if [ ! -d "$build" ]; then
        meson setup "$build" "$root" --buildtype=release
fi
ninja -C "$build" bench/placement-bench
exec "$build/bench/placement-bench"
