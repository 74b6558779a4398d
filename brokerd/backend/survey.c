/* SPDX-License-Identifier: Apache-2.0 */
#include "backend/survey.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "util/macro.h"

/* Surveys are small (domains on one host) and built once per reconcile: linear lookups do. */

int survey_add_running(struct backend_survey *s, const char *domain) {
        _cleanup_(xfreep) char *copy = NULL;
        char **p;

        if (s->n_running >= SURVEY_MAX_ENTRIES)
                return -E2BIG;
        copy = strdup(domain);
        if (!copy)
                return -ENOMEM;
        p = reallocarray(s->running, s->n_running + 1, sizeof(*p));
        if (!p)
                return -ENOMEM;
        s->running = p;
        s->running[s->n_running++] = TAKE_PTR(copy);
        return 0;
}

int survey_add_mapping(struct backend_survey *s, uint64_t region, const char *pool, const char *domain) {
        _cleanup_(xfreep) char *copy = NULL, *pool_copy = NULL;
        struct survey_mapping *p;

        if (survey_has_mapping(s, region, pool, domain))
                return 0;
        if (s->n_mappings >= SURVEY_MAX_ENTRIES)
                return -E2BIG;
        copy = strdup(domain);
        pool_copy = strdup(pool);
        if (!copy || !pool_copy)
                return -ENOMEM;
        p = reallocarray(s->mappings, s->n_mappings + 1, sizeof(*p));
        if (!p)
                return -ENOMEM;
        s->mappings = p;
        s->mappings[s->n_mappings++] = (struct survey_mapping) {
                .region = region, .pool = TAKE_PTR(pool_copy), .domain = TAKE_PTR(copy),
        };
        return 0;
}

bool survey_is_running(const struct backend_survey *s, const char *domain) {
        for (size_t i = 0; i < s->n_running; i++)
                if (strcmp(s->running[i], domain) == 0)
                        return true;
        return false;
}

bool survey_has_mapping(const struct backend_survey *s, uint64_t region, const char *pool, const char *domain) {
        for (size_t i = 0; i < s->n_mappings; i++)
                if (s->mappings[i].region == region && strcmp(s->mappings[i].pool, pool) == 0 &&
                    strcmp(s->mappings[i].domain, domain) == 0)
                        return true;
        return false;
}

void survey_done(struct backend_survey *s) {
        for (size_t i = 0; i < s->n_running; i++)
                free(s->running[i]);
        for (size_t i = 0; i < s->n_mappings; i++) {
                free(s->mappings[i].pool);
                free(s->mappings[i].domain);
        }
        free(s->running);
        free(s->mappings);
        *s = (struct backend_survey) {};
}
