/* SPDX-License-Identifier: Apache-2.0 */
#pragma once
/*
 * What a backend really has, as opposed to what the database says: the domains that are
 * running and every (region id, pool, domain) mapping of brokerd's found in them. The pool
 * tells this brokerd's devices from another instance's (region ids are per database). Backends fill
 * one in their survey op; the core reconciles its records against it.
 * A survey is bounded (SURVEY_MAX_ENTRIES of each), so a host with absurd numbers of
 * domains or devices gets -E2BIG instead of unbounded memory.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SURVEY_MAX_ENTRIES 65536

struct survey_mapping {
        uint64_t region;
        char *pool;
        char *domain;
};

struct backend_survey {
        char **running;
        size_t n_running;
        struct survey_mapping *mappings;
        size_t n_mappings;
};

int survey_add_running(struct backend_survey *s, const char *domain);
int survey_add_mapping(struct backend_survey *s, uint64_t region, const char *pool, const char *domain);
bool survey_is_running(const struct backend_survey *s, const char *domain);
bool survey_has_mapping(const struct backend_survey *s, uint64_t region, const char *pool, const char *domain);
void survey_done(struct backend_survey *s);
