/* SPDX-License-Identifier: Apache-2.0 */
#pragma once
/*
 * The host probe behind `brokerctl platform probe`: a platform description of the running
 * machine (schemas/platform.schema.json), read from sysfs and /proc/iomem under sysfs_root
 * ("/" for the host, a fake tree in tests).
 *
 * What is known is described; what is not is left out and said on report, one
 * "probe: ..." line each, never guessed:
 * - memory: the memory blocks of /sys/devices/system/memory, merged per NUMA node into
 *   contiguous banks; when they cannot be read, the "System RAM" ranges of /proc/iomem
 *   (real addresses need root), but only on a host with one NUMA node, since iomem does
 *   not say which node a range is on;
 * - reserved: the parts of those banks that /proc/iomem does not call System RAM
 *   (firmware, ROM) and the IOMMU "direct" regions (memory a device DMAs to on the
 *   firmware's behalf, so no pool may hold it);
 * - pools: none; which memory brokerd may hand out is the administrator's decision;
 * - devices: every PCI function but bridges (class 0x06), named by its PCI address,
 *   owner "host" (the administrator assigns the hardware domain), the DMA mask the kernel
 *   reports, and the reserved regions of its IOMMU group (of every type, clipped to what
 *   the mask reaches) as reserved windows. A device whose mask or IOMMU holes are
 *   unknown is left out.
 * Huge page sizes, node MemTotal and the like have no place in the format and are
 * reported only.
 *
 * Before returning, the description is loaded with platform_load_json(): *ret always
 * loads without errors (warnings remain: with no pools, no device can reach one).
 * Returns 0 with *ret set, -ENODATA when no RAM could be read, -EINVAL when what the
 * host showed does not make a valid description (the loader's errors are reported),
 * -ENOMEM. report may be NULL. *ret is untouched on failure.
 */
#include <stdio.h>

struct json_object;

int probe_platform(const char *sysfs_root, struct json_object **ret, FILE *report);
