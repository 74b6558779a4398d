/* SPDX-License-Identifier: Apache-2.0 */
#include "model.h"

#include <errno.h>
#include <string.h>

#include "macro.h"

const char *const access_mode_names[] = {
        [ACCESS_RO] = "ro",
        [ACCESS_RW] = "rw",
};
_Static_assert(ELEMENTSOF(access_mode_names) == _ACCESS_MODE_MAX, "a name for every access mode");

static const char *const region_states[] = {
        [REGION_OFFERED] = "offered",
        [REGION_ACTIVE] = "active",
        [REGION_REVOKING] = "revoking",
        [REGION_RECLAIMED] = "reclaimed",
};

_Static_assert(ELEMENTSOF(region_states) == _REGION_STATE_MAX, "a name for every region state");

static const char *const peer_states[] = {
        [PEER_GRANTED] = "granted",
        [PEER_ATTACHED] = "attached",
        [PEER_RELEASED] = "released",
        [PEER_REVOKED] = "revoked",
};

_Static_assert(ELEMENTSOF(peer_states) == _PEER_STATE_MAX, "a name for every peer state");

static const char *const escalations[] = {
        [ESCALATION_REPORT] = "report",
        [ESCALATION_PAUSE] = "pause",
        [ESCALATION_DESTROY] = "destroy",
};
_Static_assert(ELEMENTSOF(escalations) == _ESCALATION_MAX, "a name for every escalation");

static int lookup(const char *const *table, int n, const char *s) {
        for (int i = 0; s && i < n; i++)
                if (table[i] && strcmp(table[i], s) == 0)
                        return i;
        return -EINVAL;
}

const char *access_to_string(enum access_mode a) {
        return (unsigned) a < _ACCESS_MODE_MAX && access_mode_names[a] ? access_mode_names[a] : "invalid";
}

int access_from_string(const char *s, enum access_mode *ret) {
        int i = lookup(access_mode_names, _ACCESS_MODE_MAX, s);
        if (i < 0)
                return i;
        *ret = (enum access_mode) i;
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
