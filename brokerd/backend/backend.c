/* SPDX-License-Identifier: Apache-2.0 */
#include "backend/backend.h"

#include <errno.h>

void backend_set_callbacks(struct backend *b, const struct backend_callbacks *cb) {
        b->callbacks = cb ? *cb : (struct backend_callbacks) {};
}

const char *backend_name(const struct backend *b) {
        return b->ops->name;
}

int backend_attach_event(struct backend *b, sd_event *e) {
        return b->ops->attach_event ? b->ops->attach_event(b, e) : 0;
}

int backend_check(struct backend *b, const struct backend_region *r, char *why, size_t why_len) {
        return b->ops->check ? b->ops->check(b, r, why, why_len) : 0;
}

int backend_create(struct backend *b, const struct backend_region *r) {
        return b->ops->create(b, r);
}

int backend_restore(struct backend *b, const struct backend_region *r) {
        return b->ops->restore ? b->ops->restore(b, r) : -EOPNOTSUPP;
}

int backend_map(struct backend *b, const struct backend_region *r, const char *domain, enum access_mode access,
                struct backend_mapping *ret) {
        return b->ops->map(b, r, domain, access, ret);
}

int backend_unmap(struct backend *b, const struct backend_region *r, const struct backend_holder *h) {
        return b->ops->unmap(b, r, h);
}

bool backend_can_survey(const struct backend *b) {
        return b->ops->survey != NULL;
}

bool backend_hands_fds(const struct backend *b) {
        return b->ops->hands_fds;
}

bool backend_guest_doorbells(const struct backend *b) {
        return b->ops->guest_doorbells;
}

bool backend_slow_maps(const struct backend *b) {
        return b->ops->slow_maps;
}

int backend_survey(struct backend *b, struct backend_survey *ret) {
        return b->ops->survey ? b->ops->survey(b, ret) : -EOPNOTSUPP;
}

int backend_escalate(struct backend *b, const struct backend_region *r, const struct backend_holder *h,
                     enum unplug_escalation action) {
        if (action == ESCALATION_REPORT)
                return 0;
        return b->ops->escalate ? b->ops->escalate(b, r, h, action) : -EOPNOTSUPP;
}

int backend_scrub(struct backend *b, const struct backend_region *r) {
        return b->ops->scrub(b, r);
}

int backend_destroy(struct backend *b, const struct backend_region *r) {
        return b->ops->destroy(b, r);
}

void backend_free(struct backend *b) {
        if (b)
                b->ops->free(b);
}

void backend_unmap_done(struct backend *b, uint64_t region_id, const char *domain, int result) {
        if (b->callbacks.unmap_done)
                b->callbacks.unmap_done(b->callbacks.userdata, region_id, domain, result);
}

void backend_domain_gone(struct backend *b, const char *domain) {
        if (b->callbacks.domain_gone)
                b->callbacks.domain_gone(b->callbacks.userdata, domain);
}

void backend_reconnected(struct backend *b) {
        if (b->callbacks.reconnected)
                b->callbacks.reconnected(b->callbacks.userdata);
}

void backend_refused(struct backend *b, uint64_t region_id, const char *who, const char *why) {
        if (b->callbacks.refused)
                b->callbacks.refused(b->callbacks.userdata, region_id, who, why);
}

int backend_doorbell_id(struct backend *b, const struct backend_region *r, const char *domain, uint32_t *ret) {
        if (!b->ops->doorbell_id)
                return -EOPNOTSUPP;
        return b->ops->doorbell_id(b, r, domain, ret);
}
