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

/* What the same action is called on host processes: accepted as input, never printed. */
static const char *const escalation_aliases[] = {
        [ESCALATION_REPORT] = "report",
        [ESCALATION_PAUSE] = "stop",
        [ESCALATION_DESTROY] = "kill",
};
_Static_assert(ELEMENTSOF(escalation_aliases) == _ESCALATION_MAX, "an alias for every escalation");

static int lookup(const char *const *table, int n, const char *s) {
        for (int i = 0; s && i < n; i++)
                if (table[i] && strcmp(table[i], s) == 0)
                        return i;
        return -EINVAL;
}

/* The name##_to_string() and name##_from_string() that model.h declares, over one name table. */
#define DEFINE_STRING_TABLE_LOOKUP(name, type, table, max)                                  \
        const char *name##_to_string(type v) {                                              \
                return (unsigned) v < (max) && table[v] ? table[v] : "invalid";             \
        }                                                                                   \
        int name##_from_string(const char *s, type *ret) {                                  \
                int i = lookup(table, (max), s);                                            \
                if (i < 0)                                                                  \
                        return i;                                                           \
                *ret = (type) i;                                                            \
                return 0;                                                                   \
        }

DEFINE_STRING_TABLE_LOOKUP(access, enum access_mode, access_mode_names, _ACCESS_MODE_MAX)
DEFINE_STRING_TABLE_LOOKUP(region_state, enum region_state, region_states, _REGION_STATE_MAX)
DEFINE_STRING_TABLE_LOOKUP(peer_state, enum peer_state, peer_states, _PEER_STATE_MAX)

const char *escalation_to_string(enum unplug_escalation v) {
        return (unsigned) v < _ESCALATION_MAX ? escalations[v] : "invalid";
}

int escalation_from_string(const char *s, enum unplug_escalation *ret) {
        int i = lookup(escalations, _ESCALATION_MAX, s);

        if (i < 0)
                i = lookup(escalation_aliases, _ESCALATION_MAX, s);
        if (i < 0)
                return i;
        *ret = (enum unplug_escalation) i;
        return 0;
}
