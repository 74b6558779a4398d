/* SPDX-License-Identifier: Apache-2.0 */
#pragma once
/*
 * Reading brokerd's devices out of a libvirt domain's live XML, without libvirt: the
 * <shmem> devices whose <alias name='ua-brokerd-<id>'/> marks them as brokerd's. Only
 * aliases inside a <shmem> element count, so the same text elsewhere (a description,
 * another device's alias) is never taken for a mapping. Pure string work: unit-tested.
 */
#include <stdbool.h>
#include <stdint.h>

#define LIBVIRT_ALIAS_PREFIX "ua-brokerd-"

#define LIBVIRT_SHMEM_NAME_MAX 256

/*
 * Calls fn for every region id of a brokerd shmem device in xml, with the device's name
 * attribute (the file under /dev/shm; "" when it has none or it is too long): the name says
 * which brokerd's pool it came from. A non-zero return from fn stops the walk and is
 * returned. Returns 0 otherwise.
 */
int libvirt_xml_foreach_region(const char *xml, int (*fn)(void *userdata, uint64_t region, const char *name),
                               void *userdata);
/* Whether xml holds brokerd's device of region id (alias ua-brokerd-<id>). */
bool libvirt_xml_has_region(const char *xml, uint64_t id);
/* Whether xml is a TCG domain's (<domain type='qemu'>). */
bool libvirt_xml_is_tcg(const char *xml);

/* "ua-brokerd-<id>" -> id; -EINVAL for any other alias. */
int libvirt_alias_parse(const char *alias, uint64_t *ret);
/* id -> "ua-brokerd-<id>", the alias of region id's device. */
#define LIBVIRT_ALIAS_MAX 64
void libvirt_alias_format(uint64_t id, char buf[static LIBVIRT_ALIAS_MAX]);
