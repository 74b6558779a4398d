/* SPDX-License-Identifier: Apache-2.0 */
/*
 * fuzz-policy: the policy loader, entered the way the daemon, SIGHUP/admin.reload and
 * brokerctl enter it (policy_load_file(): size limit, strict JSON, names, uids and user
 * names, numbers, every check with its JSON path), then what consumes an accepted policy:
 * the check against the platform (docs/examples/platform.json, embedded) and the queries
 * the broker asks. Besides the sanitizers, it checks the loader's contract (policy.h): an
 * accepted policy allows what its own rules say (every agent acts for its domains, every
 * rule's sharer may share with each of its peers, and with all of them at once when the
 * rule is multi_peer) and its diagnostics hold no error; a refused one leaves *ret alone
 * and says why. Nothing is kept between inputs but the memfd and the platform.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "core/broker.h"
#include "fuzz.h"
#include "platform/platform.h"
#include "policy/policy.h"
#include "util/diag.h"

static struct fuzz_file input;
static struct platform *platform;
static FILE *devnull;

static void cleanup(void) {
        platform_free(platform);
        platform = NULL;
        if (devnull)
                fclose(devnull);
        devnull = NULL;
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
        struct diag_list diags = DIAG_LIST_INIT;

        (void) argc, (void) argv;
        fuzz_assert(fuzz_file_open(&input, "fuzz-policy") == 0);
        devnull = fopen("/dev/null", "we");
        fuzz_assert(devnull);
        if (platform_load_string(fuzz_example_platform, &platform, &diags) < 0)
                diag_list_print(&diags, "embedded platform", stderr);
        diag_list_clear(&diags);
        fuzz_assert(platform);
        atexit(cleanup);
        return 0;
}

static void check_policy(const struct policy *p) {
        struct diag_list diags = DIAG_LIST_INIT;
        uint64_t max_bytes, max_regions;
        int r;

        for (size_t i = 0; i < p->n_agents; i++)
                for (size_t j = 0; j < p->agents[i].n_domains; j++)
                        fuzz_assert(policy_agent_may_act(p, p->agents[i].uid, p->agents[i].domains[j]));

        for (size_t i = 0; i < p->n_shares; i++) {
                const struct policy_share *s = &p->shares[i];
                struct policy_peer_request peers[BROKER_MAX_PEERS];
                struct broker_error err = {};

                for (size_t j = 0; j < s->n_peers; j++) {
                        const struct policy_peer_request one = { .domain = s->peers[j], .access = s->access };

                        r = policy_check_share(p, s->sharer, s->device, &one, 1, 1, &err);
                        fuzz_assert(r == 0);
                        if (j < ELEMENTSOF(peers))
                                peers[j] = one;
                }
                if (s->multi_peer && s->n_peers > 1 && s->n_peers <= ELEMENTSOF(peers)) {
                        r = policy_check_share(p, s->sharer, s->device, peers, s->n_peers, 1, &err);
                        fuzz_assert(r == 0);
                }
                /* Above the rule's bound the answer is still an answer, not a crash. */
                (void) policy_check_share(p, s->sharer, s->device, peers, s->n_peers < 2 ? s->n_peers : 2,
                                          UINT64_MAX, &err);
        }

        for (size_t i = 0; i < p->n_quotas; i++) {
                policy_quota_for(p, p->quotas[i].domain, &max_bytes, &max_regions);
                fuzz_assert(max_bytes == p->quotas[i].max_bytes && max_regions == p->quotas[i].max_regions);
        }
        policy_quota_for(p, "hw0", &max_bytes, &max_regions);

        r = policy_check_platform(p, platform, &diags);
        fuzz_assert(r == 0 || r == -EINVAL || r == -ENOMEM);
        fuzz_assert(r == 0 || r == -ENOMEM || diag_count(&diags, DIAG_ERROR) > 0);
        diag_list_print(&diags, "policy.json", devnull);
        diag_list_clear(&diags);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        struct policy *const sentinel = (struct policy *) &input;
        struct policy *p = sentinel;
        struct diag_list diags = DIAG_LIST_INIT;
        int r;

        if (size > POLICY_MAX_FILE_SIZE + 1)
                return 0;
        fuzz_assert(fuzz_file_set(&input, data, size) == 0);

        r = policy_load_file(input.path, &p, &diags);
        if (fuzz_check_load(r, p, sentinel, &diags, "policy.json", devnull)) {
                check_policy(p);
                policy_free(p);
        }
        return 0;
}
