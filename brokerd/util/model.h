/* SPDX-License-Identifier: Apache-2.0 */
#pragma once
/*
 * The vocabulary of grants, shared by policy, store, backends and the core.
 * Region: offered -> active -> revoking -> reclaimed (offered -> revoking directly when
 * revoked before anyone attached). Peer: granted -> attached -> released, or -> revoked
 * when forced (or when the region goes away before the peer attached).
 * The string forms are what sqlite, JSON and logs carry; they never change.
 */
#include <stdbool.h>

enum access_mode {
        ACCESS_RO = 1,
        ACCESS_RW = 2, /* rw implies ro */
        _ACCESS_MODE_MAX,
};

enum region_state {
        REGION_OFFERED,
        REGION_ACTIVE,
        REGION_REVOKING,
        REGION_RECLAIMED,
        _REGION_STATE_MAX,
};

enum peer_state {
        PEER_GRANTED,
        PEER_ATTACHED,
        PEER_RELEASED,
        PEER_REVOKED,
        _PEER_STATE_MAX,
};

/*
 * What the broker does when a guest keeps a mapping it was asked to remove past the revoke
 * deadline (plus a grace period). In every case the range stays quarantined until the
 * removal is confirmed; pause and destroy also stop the guest from using it.
 */
enum unplug_escalation {
        ESCALATION_REPORT,  /* keep quarantined, audit and notify admins */
        ESCALATION_PAUSE,   /* also pause the domain; on host processes SIGSTOP ("stop") */
        ESCALATION_DESTROY, /* also destroy the domain (completing the removal); SIGKILL ("kill") */
        _ESCALATION_MAX,
};

/* "ro" and "rw", indexed by enum access_mode (0 is no mode: NULL). */
extern const char *const access_mode_names[_ACCESS_MODE_MAX];

const char *access_to_string(enum access_mode a);
int access_from_string(const char *s, enum access_mode *ret);
const char *region_state_to_string(enum region_state s);
int region_state_from_string(const char *s, enum region_state *ret);
const char *peer_state_to_string(enum peer_state s);
int peer_state_from_string(const char *s, enum peer_state *ret);
const char *escalation_to_string(enum unplug_escalation e);
/* Also takes the host-process spellings: "stop" for pause, "kill" for destroy. */
int escalation_from_string(const char *s, enum unplug_escalation *ret);
