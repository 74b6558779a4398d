/* SPDX-License-Identifier: Apache-2.0 */
#include "util/crashpoint.h"

#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/num.h"

static bool loaded;
static char target[64];
static uint64_t remaining = 1;

static void load(void) {
        const char *v = getenv("BROKERD_CRASHPOINT");
        const char *colon;
        size_t n;

        loaded = true;
        if (!v || !*v)
                return;
        colon = strchr(v, ':');
        n = colon ? (size_t) (colon - v) : strlen(v);
        if (n == 0 || n >= sizeof(target))
                return;
        if (colon && (num_parse_u64(colon + 1, &remaining) < 0 || remaining == 0))
                return;
        memcpy(target, v, n);
        target[n] = 0;
}

void crashpoint(const char *name) {
        if (!loaded)
                load();
        if (!target[0] || strcmp(name, target) != 0)
                return;
        if (--remaining > 0)
                return;
        /* As abrupt as a power cut for the process: no atexit, no flush, no cleanup. */
        (void) kill(getpid(), SIGKILL);
        _exit(137);
}
