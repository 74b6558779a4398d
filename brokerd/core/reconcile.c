/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The database against what the backend really has: mappings repaired, revoked, recorded gone
 * or detached. Also what the backend reports on its own (its callbacks): a removal done, a
 * domain gone, its hypervisor back.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/broker-internal.h"
#include "util/crashpoint.h"
#include "util/log.h"

/*
 * A mapping the database holds for an entitled holder (the owner of a live region, an
 * attached peer) is not there: map it again; what cannot be is revoked.
 */
static int mapping_repair(struct broker *b, struct region *r, holder_t *h, const char *why, bool *ret_repaired) {
        struct backend_region br = backend_region_of(r);
        struct backend_mapping map = { .fd = -1 };
        struct store_audit a;
        char reason[256];
        int q;

        q = r->pool ? backend_map(b->backend, &br, h->domain, h->access, &map) : -ENOENT;
        if (q >= 0) {
                if (map.fd >= 0)
                        close(map.fd); /* an fd backend's holder keeps its own fd */
                snprintf(reason, sizeof(reason), "%s; mapped again", why);
                a = audit_row("broker", r, h->domain, "repair", NULL, NULL, reason, broker_now(b));
                (void) audit_only(b, &a);
                log_region(LOG_WARNING, r->id, h->domain, "broker", "%s", reason);
                *ret_repaired = true;
                return 0;
        }
        snprintf(reason, sizeof(reason), "%s and could not be restored: %s", why, strerror(-q));
        log_region(LOG_ERR, r->id, h->domain, "broker", "%s", reason);
        *ret_repaired = false;
        if (holder_is_owner(r, h)) {
                q = mapping_record_gone(b, r, h);
                if (q < 0)
                        return q;
                return region_live(r) ? region_start_revoke(b, r, "broker", 0, true, reason) : region_finish(b, r, "broker");
        }
        q = peer_revoke_now(b, r, (size_t) (h - r->peers), "broker", reason, false);
        if (q < 0)
                return q;
        return region_settle(b, r, "broker", reason);
}

/* A removal the backend confirmed after the fact (event, survey). */
static int mapping_gone(struct broker *b, struct region *r, holder_t *h) {
        int q = mapping_record_gone(b, r, h);

        if (q >= 0)
                crashpoint("unmap-confirmed");
        return q;
}

/* Does the database expect domain to hold a mapping of region id (from that pool)? */
static bool mapping_known(struct broker *b, uint64_t id, const char *pool, const char *domain) {
        struct region *r = hashmap_get(b->regions, &id);
        holder_t *h;

        if (!r || !r->pool || strcmp(r->pool->name, pool) != 0)
                return false;
        h = region_holder(r, domain);
        return h && h->mapped;
}

/* The holder's domain is not running: as if its stop event had come. */
static int reconcile_not_running(struct broker *b, struct region *r, holder_t *h, struct broker_reconcile_result *res) {
        bool entitled = holder_entitled(r, h);
        char why[160];
        int q;

        if (!entitled && !h->mapped)
                return 0;
        snprintf(why, sizeof(why), "domain %s is not running", h->domain);
        if (h->mapped) {
                q = mapping_gone(b, r, h);
                if (q < 0)
                        return q;
                res->completed += !entitled;
        }
        if (!entitled)
                return region_finish(b, r, "broker");
        res->revoked++;
        if (holder_is_owner(r, h))
                return region_start_revoke(b, r, "broker", 0, true, why);
        q = peer_revoke_now(b, r, (size_t) (h - r->peers), "broker", why, false);
        return q < 0 ? q : region_settle(b, r, "broker", why);
}

/* One mapping the database records for a holder of r, against the survey. */
static int reconcile_mapping(struct broker *b, const struct backend_survey *s, struct region *r, holder_t *h,
                             struct broker_reconcile_result *res) {
        bool entitled = holder_entitled(r, h);
        char why[160];
        bool repaired;
        int q;

        if (!survey_is_running(s, h->domain))
                return reconcile_not_running(b, r, h, res);
        if (!h->mapped)
                return 0; /* found-but-unknown ones are detached by the caller */
        if (r->pool && survey_has_mapping(s, r->id, r->pool->name, h->domain)) {
                if (entitled) {
                        res->checked++;
                        return 0;
                }
                /* Still there though it should go: (re)request its removal. */
                return holder_is_owner(r, h) ? region_finish(b, r, "broker") : holder_unmap(b, r, h);
        }
        if (!entitled) {
                /* The removal completed while nobody was watching. */
                q = mapping_gone(b, r, h);
                if (q < 0)
                        return q;
                res->completed++;
                return region_finish(b, r, "broker");
        }
        snprintf(why, sizeof(why), "the mapping of region %" PRIu64 " into %s was lost", r->id, h->domain);
        q = mapping_repair(b, r, h, why, &repaired);
        if (repaired)
                res->repaired++;
        else
                res->revoked++;
        return q;
}

/* Devices of ours that the database does not know: nobody may keep them. */
static int reconcile_unknown(struct broker *b, const struct survey_mapping *m, struct broker_reconcile_result *res) {
        struct region *r = hashmap_get(b->regions, &m->region);
        struct backend_region br = r && r->pool && strcmp(r->pool->name, m->pool) == 0
                                           ? backend_region_of(r)
                                           : (struct backend_region) { .id = m->region };
        struct store_audit a;
        char why[160];
        int q;

        if (mapping_known(b, m->region, m->pool, m->domain))
                return 0;
        /* Another brokerd's (other pools, other database): not ours to judge. */
        if (!platform_find_pool(b->platform, m->pool))
                return 0;
        q = backend_unmap(b->backend, &br, &(struct backend_holder) { .domain = m->domain, .pidfd = -1 });
        if (q == -EINPROGRESS)
                q = 0;
        snprintf(why, sizeof(why), "a mapping of region %" PRIu64 " in %s that the database does not hold%s%s", m->region,
                 m->domain, q < 0 ? ": detach failed: " : ": detached", q < 0 ? strerror(-q) : "");
        log_region(r ? LOG_WARNING : LOG_ERR, m->region, m->domain, "broker", "%s", why);
        a = audit_row("broker", NULL, m->domain, "detach-unknown", NULL, NULL, why, broker_now(b));
        a.region = m->region;
        (void) audit_only(b, &a);
        if (q >= 0)
                res->detached++;
        return q;
}

/* Every holder of every region against the survey; by id, since reconciling may reclaim one. */
static int reconcile_regions(struct broker *b, const struct backend_survey *s, struct broker_reconcile_result *res) {
        _cleanup_(xfreep) uint64_t *ids = NULL;
        size_t n = 0;
        int q, first_error = 0;

        q = regions_collect_ids(b, &ids, &n);
        if (q < 0)
                return q;
        for (size_t k = 0; k < n; k++) {
                struct region *r = hashmap_get(b->regions, &ids[k]);
                for (size_t j = 0; r && j <= r->n_peers; j++) {
                        q = reconcile_mapping(b, s, r, region_holder_at(r, j), res);
                        if (q < 0)
                                first_error = first_error ?: q;
                        r = hashmap_get(b->regions, &ids[k]);
                }
        }
        return first_error;
}

static int reconcile_survey(struct broker *b, struct broker_reconcile_result *ret) {
        struct broker_reconcile_result res = {};
        struct backend_survey s = {};
        int q, first_error = 0;

        if (!backend_can_survey(b->backend)) {
                if (ret)
                        *ret = res;
                return 0;
        }
        q = backend_survey(b->backend, &s);
        if (q < 0) {
                log_error("reconcile: the %s backend could not say what it has: %s", backend_name(b->backend),
                          strerror(-q));
                return q;
        }
        for (size_t k = 0; k < s.n_mappings; k++) {
                q = reconcile_unknown(b, &s.mappings[k], &res);
                if (q < 0)
                        first_error = first_error ?: q;
        }
        q = reconcile_regions(b, &s, &res);
        if (q < 0)
                first_error = first_error ?: q;
        survey_done(&s);

        log_info("reconciled with the %s backend: %u as expected, %u repaired, %u revoked, %u removals completed, "
                 "%u unknown detached", backend_name(b->backend), res.checked, res.repaired, res.revoked, res.completed,
                 res.detached);
        if (ret)
                *ret = res;
        return first_error;
}

int broker_reconcile(struct broker *b, struct broker_reconcile_result *ret) {
        bool saved = b->defer_unmaps;
        int q;

        b->defer_unmaps = true;
        q = reconcile_survey(b, ret);
        b->defer_unmaps = saved;
        return q;
}

void broker_on_unmap_done(void *userdata, uint64_t id, const char *domain, int result) {
        struct broker *b = userdata;
        struct region *r = hashmap_get(b->regions, &id);
        holder_t *h = r ? region_holder(r, domain) : NULL;

        if (!h)
                return;
        if (result < 0) {
                /* Still mapped: quarantined, and overdue at the deadline like any ignored removal. */
                h->unplug.failed = true;
                log_region(LOG_ERR, id, domain, NULL, "the removal failed: %s; the range stays quarantined",
                           strerror(-result));
                return;
        }
        if (holder_entitled(r, h)) {
                /* Nobody asked: the guest or someone else removed it. The grant still holds. */
                bool repaired;
                char why[160];

                if (!h->mapped)
                        return;
                snprintf(why, sizeof(why), "the mapping of region %" PRIu64 " into %s went away unrequested", id, domain);
                (void) mapping_repair(b, r, h, why, &repaired);
                return;
        }
        if (mapping_gone(b, r, h) < 0)
                return;
        (void) region_finish(b, r, "broker");
}

/* A domain stopped, crashed or was undefined (the backend saw it): what it held or shared goes. */
void broker_on_domain_gone(void *userdata, const char *domain) {
        struct broker *b = userdata;
        struct broker_error err = {};
        char actor[BROKER_ACTOR_MAX];

        if (!name_is_valid(domain))
                return;
        snprintf(actor, sizeof(actor), "backend:%s", backend_name(b->backend));
        if (domain_gone(b, actor, domain, NULL, &err) < 0)
                log_error("%s domain %s went away, but its regions could not be revoked: %s", backend_name(b->backend),
                          domain, err.message);
        else
                log_info("%s domain %s stopped: whatever it held or shared is revoked", backend_name(b->backend), domain);
}

/* The backend is back from losing its hypervisor: events were lost, so compare with what it has. */
void broker_on_reconnected(void *userdata) {
        struct broker *b = userdata;
        int q = broker_reconcile(b, NULL);

        if (q < 0)
                log_error("reconciling after the %s backend came back: %s", backend_name(b->backend), strerror(-q));
        broker_emit(b, &(struct broker_event) { .type = BROKER_EVENT_RECONCILED, .reason = "the backend reconnected" });
}

/* Someone the backend was not mapping the region for knocked at its doorbells: audited, nothing else. */
void broker_on_refused(void *userdata, uint64_t region_id, const char *who, const char *why) {
        struct broker *b = userdata;
        struct region *r = hashmap_get(b->regions, &region_id);
        char actor[BROKER_ACTOR_MAX], reason[256];
        struct store_audit a;

        snprintf(actor, sizeof(actor), "backend:%s", backend_name(b->backend));
        snprintf(reason, sizeof(reason), "%s: %s", who ?: "unknown", why ?: "refused");
        a = audit_row(actor, r, NULL, "doorbell-refused", NULL, NULL, reason, broker_now(b));
        a.region = region_id;
        if (audit_only(b, &a) < 0)
                log_region(LOG_ERR, region_id, NULL, actor, "cannot audit a refused doorbell connection (%s)", reason);
        log_region(LOG_WARNING, region_id, NULL, actor, "doorbell connection refused: %s", reason);
}

