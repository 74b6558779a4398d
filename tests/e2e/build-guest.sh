#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# Builds the disk-less guest of the end-to-end tests into a cache directory:
#   vmlinuz          Debian's cloud kernel (its ACPI PCI hotplug takes ivshmem-plain on machine pc)
#   vmlinuz.package  "PACKAGE VERSION" of that kernel: the headers below must match it exactly
#   initrd.gz        busybox-static, tests/e2e/guest/init as PID 1, shmtool, chantool, guestbench,
#                    /lib/modules/ivshmem_doorbell.ko (examples/guest-doorbells, docs/guest-doorbells.md)
#                    and virtio_net with what it needs (/lib/modules/net, loaded in net.order)
#   kernel-headers/  the kernel's linux-headers, -common and linux-kbuild, extracted (cache)
#   net-modules/     virtio_net, virtio_pci and their dependencies from the kernel's package (cache)
# Installs qemu-system-x86, libvirt-daemon-system, busybox-static and the build tools if missing.
# Usage: build-guest.sh [DIR]   (default /e2e-guest; the kernel and headers are kept between runs)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
SRC=$(cd "$HERE/../.." && pwd)
DOORBELLS=$SRC/examples/guest-doorbells
OUT=${1:-/e2e-guest}
CC=${CC:-cc}

need=()
for p in qemu-system-x86 libvirt-daemon-system libvirt-clients busybox-static make gcc gcc-12 libc6-dev linux-libc-dev; do
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
# The package and version of the cached kernel; without a record the kernel is downloaded again,
# so that the module is always built against the headers of the kernel that boots.
download_kernel() { # PACKAGE VERSION: the image and its headers into $work/debs
        local pkg=$1 ver=$2 krel=${1#linux-image-} abi ser
        abi=${krel%-cloud-amd64}
        ser=$(echo "$abi" | cut -d. -f1,2)
        mkdir -p "$work/debs"
        # (apt warns that _apt cannot write here and downloads as root: harmless)
        (cd "$work/debs" && apt-get download -qq "$pkg=$ver" "linux-headers-$krel=$ver" \
                "linux-headers-$abi-common=$ver" "linux-kbuild-$ser=$ver" 2>/dev/null)
}
record=$(cat "$OUT/vmlinuz.package" 2>/dev/null || true)
if [ -s "$OUT/vmlinuz" ] && [ -n "$record" ] && [ -f "$OUT/kernel-headers/${record// /_}.done" ]; then
        read -r kpkg kver <<<"$record"
else
        kpkg="" kver=""
        [ -s "$OUT/vmlinuz" ] && [ -n "$record" ] && { read -r kpkg kver <<<"$record"; download_kernel "$kpkg" "$kver" || kpkg=""; }
        if [ -z "$kpkg" ]; then
                # The metapackage only depends on the versioned image that holds the kernel.
                kpkg=$(apt-cache depends linux-image-cloud-amd64 2>/dev/null | awk '/Depends: linux-image-/ {print $2; exit}')
                [ -n "$kpkg" ] || { apt-get update -qq; kpkg=$(apt-cache depends linux-image-cloud-amd64 | awk '/Depends: linux-image-/ {print $2; exit}'); }
                kver=$(apt-cache policy "$kpkg" | awk '/Candidate:/ {print $2}')
                rm -rf "$work/debs"
                download_kernel "$kpkg" "$kver"
        fi
        rm -rf "$OUT/kernel-headers" "$work/x"
        mkdir -p "$OUT/kernel-headers"
        for d in "$work"/debs/linux-headers-*.deb "$work"/debs/linux-kbuild-*.deb; do
                dpkg-deb -x "$d" "$OUT/kernel-headers"
        done
        # The flavour's Makefile includes the -common one by absolute path (/usr/src/...).
        # shellcheck disable=SC2016 # make expands it, not the shell
        sed -i 's|^include /usr/src/|include $(dir $(lastword $(MAKEFILE_LIST)))../|' \
                "$OUT/kernel-headers/usr/src/linux-headers-${kpkg#linux-image-}/Makefile"
        dpkg-deb -x "$work"/debs/"$kpkg"_*.deb "$work/x"
        cp "$work"/x/boot/vmlinuz-* "$OUT/vmlinuz.new"
        mv "$OUT/vmlinuz.new" "$OUT/vmlinuz"
        echo "$kpkg $kver" > "$OUT/vmlinuz.package"
        touch "$OUT/kernel-headers/${kpkg}_$kver.done"
fi

# The doorbell driver, against exactly that kernel (Debian builds it with gcc-12).
mod=$work/mod
mkdir -p "$mod"
cp "$DOORBELLS"/{ivshmem_doorbell.c,ivshmem_doorbell.h,Kbuild,Makefile,chantool.c} "$mod/"
make -s -C "$mod" KDIR="$OUT/kernel-headers/usr/src/linux-headers-${kpkg#linux-image-}" KERNEL_CC=gcc-12 module >"$work/kbuild.log" 2>&1 \
        || { cat "$work/kbuild.log" >&2; echo "build-guest.sh: ivshmem_doorbell.ko did not build" >&2; exit 1; }
if grep -q 'warning:' "$work/kbuild.log"; then
        cat "$work/kbuild.log" >&2
        echo "build-guest.sh: ivshmem_doorbell.ko built with warnings" >&2
        exit 1
fi

# virtio_net for the guests' network link (bench/run-guest-data-plane-bench.sh): the cloud kernel
# builds it, virtio_pci and their dependencies as modules. Taken from the image package, in the
# order modules.dep gives (dependencies first), and kept with the kernel.
net=$OUT/net-modules
if [ ! -f "$net/${kpkg}_$kver.done" ]; then
        krel=${kpkg#linux-image-}
        ls "$work"/debs/"$kpkg"_*.deb >/dev/null 2>&1 || { mkdir -p "$work/debs"; (cd "$work/debs" && apt-get download -qq "$kpkg=$kver" 2>/dev/null); }
        rm -rf "$net" "$work/x"
        dpkg-deb -x "$work"/debs/"$kpkg"_*.deb "$work/x"
        mkdir -p "$net"
        kdir=$work/x/lib/modules/$krel/kernel
        # Dependencies first: each module's .modinfo names them (depends=a,b; no depmod here).
        add_module() { # NAME
                local ko dep
                grep -qx "$1.ko" "$net/net.order" 2>/dev/null && return 0
                ko=$(find "$kdir" -name "$1.ko" | head -n 1)
                [ -n "$ko" ] || { echo "build-guest.sh: no $1.ko in $kpkg" >&2; exit 1; }
                for dep in $(tr '\0' '\n' <"$ko" | sed -n 's/^depends=//p' | tr ',' ' '); do
                        add_module "$dep"
                done
                cp "$ko" "$net/"
                echo "$1.ko" >> "$net/net.order"
        }
        add_module virtio_pci
        add_module virtio_net
        touch "$net/${kpkg}_$kver.done"
fi

if ldd /bin/busybox >/dev/null 2>&1; then
        echo "build-guest.sh: /bin/busybox is dynamically linked; busybox-static is needed" >&2
        exit 1
fi
root=$work/root
mkdir -p "$root"/{bin,proc,sys,dev,tmp,lib/modules}
cp /bin/busybox "$root/bin/busybox"
ln -s busybox "$root/bin/sh"
$CC -static -O2 -Wall -Wextra -o "$root/bin/shmtool" "$HERE/guest/shmtool.c"
# chantool: libbrokerd-channel's own sources, unchanged, linked statically (it needs only libc).
make -s -C "$mod" CC="$CC" CHANNEL="$SRC/channel" chantool
install -m 755 "$mod/chantool" "$root/bin/chantool"
# guestbench: data-plane-bench's cases (bench/data-plane-cases.c, data-plane-transport.c) in a guest.
$CC -static -O2 -Wall -Wextra -Wno-missing-field-initializers -Werror -std=gnu11 -D_GNU_SOURCE \
        -I "$SRC/channel" -I "$SRC/client" -I "$SRC/bench" -I "$DOORBELLS" -o "$root/bin/guestbench" \
        "$HERE/guest/guestbench.c" "$SRC/bench/bench-io.c" "$SRC/bench/data-plane-cases.c" \
        "$SRC/bench/data-plane-transport.c" "$SRC"/channel/*.c
install -m 644 "$mod/ivshmem_doorbell.ko" "$root/lib/modules/"
mkdir -p "$root/lib/modules/net"
install -m 644 "$net"/*.ko "$net/net.order" "$root/lib/modules/net/"
install -m 755 "$HERE/guest/init" "$root/init"
(cd "$root" && find . | /bin/busybox cpio -o -H newc -R 0:0 2>/dev/null | gzip -1 > "$OUT/initrd.gz.new")
mv "$OUT/initrd.gz.new" "$OUT/initrd.gz"
chmod 644 "$OUT/vmlinuz" "$OUT/initrd.gz"
echo "guest in $OUT: $kpkg $kver, vmlinuz $(stat -c %s "$OUT/vmlinuz") bytes, initrd.gz $(stat -c %s "$OUT/initrd.gz") bytes"
