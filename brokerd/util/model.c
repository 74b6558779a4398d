/* SPDX-License-Identifier: Apache-2.0 */
#include "model.h"

#include <errno.h>
#include <string.h>

static const char *const region_states[_REGION_STATE_MAX] = {
        [REGION_OFFERED] = "offered",
        [REGION_ACTIVE] = "active",
        [REGION_REVOKING] = "revoking",
        [REGION_RECLAIMED] = "reclaimed",
};

static const char *const peer_states[_PEER_STATE_MAX] = {
        [PEER_GRANTED] = "granted",
        [PEER_ATTACHED] = "attached",
        [PEER_RELEASED] = "released",
        [PEER_REVOKED] = "revoked",
};

static const char *const escalations[_ESCALATION_MAX] = {
        [ESCALATION_REPORT] = "report",
        [ESCALATION_PAUSE] = "pause",
        [ESCALATION_DESTROY] = "destroy",
};

static int lookup(const char *const *table, int n, const char *s) {
        for (int i = 0; s && i < n; i++)
                if (strcmp(table[i], s) == 0)
                        return i;
        return -EINVAL;
}

const char *access_to_string(enum access_mode a) {
        return a == ACCESS_RW ? "rw" : a == ACCESS_RO ? "ro" : "invalid";
}

int access_from_string(const char *s, enum access_mode *ret) {
        if (s && strcmp(s, "ro") == 0)
                *ret = ACCESS_RO;
        else if (s && strcmp(s, "rw") == 0)
                *ret = ACCESS_RW;
        else
                return -EINVAL;
        return 0;
}

const char *region_state_to_string(enum region_state s) {
        return (unsigned) s < _REGION_STATE_MAX ? region_states[s] : "invalid";
}

int region_state_from_string(const char *s, enum region_state *ret) {
        int i = lookup(region_states, _REGION_STATE_MAX, s);
        if (i < 0)
                return i;
        *ret = (enum region_state) i;
        return 0;
}

const char *peer_state_to_string(enum peer_state s) {
        return (unsigned) s < _PEER_STATE_MAX ? peer_states[s] : "invalid";
}

int peer_state_from_string(const char *s, enum peer_state *ret) {
        int i = lookup(peer_states, _PEER_STATE_MAX, s);
        if (i < 0)
                return i;
        *ret = (enum peer_state) i;
        return 0;
}

const char *escalation_to_string(enum unplug_escalation e) {
        return (unsigned) e < _ESCALATION_MAX ? escalations[e] : "invalid";
}

int escalation_from_string(const char *s, enum unplug_escalation *ret) {
        int i = lookup(escalations, _ESCALATION_MAX, s);
        if (i < 0)
                return i;
        *ret = (enum unplug_escalation) i;
        return 0;
}
