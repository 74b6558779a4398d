/* SPDX-License-Identifier: Apache-2.0 */
#pragma once
/*
 * Platform documents for the unit tests of the platform loader and of the DMA spans,
 * written with single quotes (q() turns them into double quotes) so that they stay readable.
 * Include after cmocka.h.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "platform/platform.h"
#include "util/diag.h"
#include "util/macro.h"

#define KiB (UINT64_C(1) << 10)
#define MiB (UINT64_C(1) << 20)
#define GiB (UINT64_C(1) << 30)

/*
 * No test value needs a single quote.
 *
 * The base document: two 4GiB banks on nodes 0 and 1, one pool "a" on node 0 and one
 * 64-bit device that reaches it. Cases vary one piece of it.
 */
#define MEMORY                                                                  \
        "'memory':[{'name':'bank0','base':'0x0','size':'4GiB','numa_node':0},"  \
        "{'name':'bank1','base':'0x100000000','size':'4GiB','numa_node':1}]"
#define POOL_A "{'name':'a','base':'0x40000000','size':'64MiB','numa_node':0,'granule':'2MiB','backing':{'kind':'memfd'}}"
#define DEV_64 "{'name':'d0','owner':'hw0','dma_mask_bits':64}"
#define DOC(reserved, pools, devices) \
        "{" MEMORY ",'reserved':[" reserved "],'pools':[" pools "],'devices':[" devices "]}"
/* A pool on node 0 with the given base, size, granule and backing object. */
#define POOL(name, base, size, granule, backing)                                                     \
        "{'name':'" name "','base':'" base "','size':'" size "','numa_node':0,'granule':'" granule \
        "','backing':" backing "}"
#define MEMFD "{'kind':'memfd'}"
/* A 64MiB pool with 2MiB granule, name, base and numa_node given as JSON text. */
#define POOL_JSON(name, base, node)                                                   \
        "{'name':" name ",'base':" base ",'size':'64MiB','numa_node':" node ",'granule':'2MiB'," \
        "'backing':{'kind':'memfd'}}"
/* A 64-bit device with the given extra members (each with a leading comma). */
#define DEV(extra) "{'name':'d0','owner':'hw0','dma_mask_bits':64" extra "}"
#define DEV32(extra) "{'name':'d','owner':'hw0','dma_mask_bits':32" extra "}"

static inline char *q(const char *s) {
        char *d = strdup(s);

        assert_non_null(d);
        for (char *c = d; *c; c++)
                if (*c == '\'')
                        *c = '"';
        return d;
}

static inline int load(const char *text, struct platform **ret, struct diag_list *diags) {
        _cleanup_(xfreep) char *json = q(text);
        return platform_load_string(json, ret, diags);
}
