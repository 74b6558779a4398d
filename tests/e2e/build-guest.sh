#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# Builds the disk-less guest of the libvirt end-to-end test into a cache directory:
#   vmlinuz     Debian's cloud kernel (its ACPI PCI hotplug takes ivshmem-plain on machine pc)
#   initrd.gz   busybox-static, tests/e2e/guest/init as PID 1, and shmtool
# Installs qemu-system-x86, libvirt-daemon-system and busybox-static if they are missing.
# Usage: build-guest.sh [DIR]   (default /e2e-guest; the kernel is kept between runs)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
OUT=${1:-/e2e-guest}
CC=${CC:-cc}

need=()
for p in qemu-system-x86 libvirt-daemon-system libvirt-clients busybox-static; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

mkdir -p "$OUT"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# libvirt-qemu opens the kernel and initramfs itself.
chmod 755 "$OUT"
if [ ! -s "$OUT/vmlinuz" ]; then
        tmp=$work/kernel
        mkdir "$tmp"
        # The metapackage only depends on the versioned image that holds the kernel.
        pkg=$(apt-cache depends linux-image-cloud-amd64 | awk '/Depends: linux-image-/ {print $2; exit}')
        [ -n "$pkg" ] || { apt-get update -qq; pkg=$(apt-cache depends linux-image-cloud-amd64 | awk '/Depends: linux-image-/ {print $2; exit}'); }
        # (apt warns that _apt cannot write here and downloads as root: harmless)
        (cd "$tmp" && apt-get download -qq "$pkg" 2>/dev/null)
        dpkg-deb -x "$tmp"/"$pkg"_*.deb "$tmp/x"
        cp "$tmp"/x/boot/vmlinuz-* "$OUT/vmlinuz.new"
        mv "$OUT/vmlinuz.new" "$OUT/vmlinuz"
fi

if ldd /bin/busybox >/dev/null 2>&1; then
        echo "build-guest.sh: /bin/busybox is dynamically linked; busybox-static is needed" >&2
        exit 1
fi
root=$work/root
mkdir -p "$root"/{bin,proc,sys,dev,tmp}
cp /bin/busybox "$root/bin/busybox"
ln -s busybox "$root/bin/sh"
$CC -static -O2 -Wall -Wextra -o "$root/bin/shmtool" "$HERE/guest/shmtool.c"
install -m 755 "$HERE/guest/init" "$root/init"
(cd "$root" && find . | /bin/busybox cpio -o -H newc -R 0:0 2>/dev/null | gzip -1 > "$OUT/initrd.gz.new")
mv "$OUT/initrd.gz.new" "$OUT/initrd.gz"
chmod 644 "$OUT/vmlinuz" "$OUT/initrd.gz"
echo "guest in $OUT: vmlinuz $(stat -c %s "$OUT/vmlinuz") bytes, initrd.gz $(stat -c %s "$OUT/initrd.gz") bytes"
