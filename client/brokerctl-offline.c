/* SPDX-License-Identifier: Apache-2.0 */
/*
 * brokerctl's offline verbs: `check` loads files with the daemon's own loaders, so it reports
 * exactly what the daemon would; `platform probe` describes the host it runs on (probe.h).
 */
#include "brokerctl.h"

#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "platform/platform.h"
#include "policy/policy.h"
#include "probe.h"
#include "util/diag.h"

static int diags_to_json(struct json_object *array, const struct diag_list *l, const char *file) {
        for (size_t i = 0; i < l->n; i++) {
                struct json_object *d = json_object_new_object();

                if (!d || json_object_array_add(array, d) < 0) {
                        json_object_put(d);
                        return -ENOMEM;
                }
                if (add_member(d, "file", json_object_new_string(file)) < 0 ||
                    add_member(d, "severity",
                               json_object_new_string(l->items[i].severity == DIAG_ERROR ? "error" : "warning")) < 0 ||
                    add_member(d, "path", json_object_new_string(l->items[i].path)) < 0 ||
                    add_member(d, "message", json_object_new_string(l->items[i].message)) < 0)
                        return -ENOMEM;
        }
        return 0;
}

/* A load that failed without saying why (the file could not be opened) still gets a line. */
static int diags_note_failure(struct diag_list *l, int r) {
        if (r < 0 && diag_count(l, DIAG_ERROR) == 0)
                return diag_add(l, DIAG_ERROR, "", "%s", strerror(-r));
        return 0;
}

int verb_check(struct bdc *c, const struct args *a) {
        _cleanup_(platform_freep) struct platform *platform = NULL;
        _cleanup_(policy_freep) struct policy *policy = NULL;
        struct diag_list file_diags = DIAG_LIST_INIT, platform_diags = DIAG_LIST_INIT;
        const char *kind = a->pos[0], *file = a->pos[1];
        size_t errors;
        int r;

        (void) c;
        if (strcmp(kind, "platform") == 0) {
                r = platform_load_file(file, &platform, &file_diags);
                if (diags_note_failure(&file_diags, r) < 0)
                        goto oom;
        } else {
                r = policy_load_file(file, &policy, &file_diags);
                if (diags_note_failure(&file_diags, r) < 0)
                        goto oom;
                if (a->platform) {
                        int k = platform_load_file(a->platform, &platform, &platform_diags);

                        if (diags_note_failure(&platform_diags, k) < 0)
                                goto oom;
                        if (policy && platform && policy_check_platform(policy, platform, &file_diags) == -ENOMEM)
                                goto oom;
                }
        }

        errors = diag_count(&file_diags, DIAG_ERROR) + diag_count(&platform_diags, DIAG_ERROR);
        if (a->json) {
                _cleanup_(json_putp) struct json_object *o = json_object_new_object();
                struct json_object *list = json_object_new_array();

                if (!o || add_member(o, "diagnostics", list) < 0 ||
                    add_member(o, "file", json_object_new_string(file)) < 0 ||
                    add_member(o, "ok", json_object_new_boolean(errors == 0)) < 0 ||
                    add_member(o, "errors", json_object_new_uint64(errors)) < 0 ||
                    add_member(o, "warnings", json_object_new_uint64(diag_count(&file_diags, DIAG_WARNING) +
                                                                      diag_count(&platform_diags, DIAG_WARNING))) < 0 ||
                    diags_to_json(list, &platform_diags, a->platform ?: "") < 0 ||
                    diags_to_json(list, &file_diags, file) < 0)
                        goto oom;
                print_json(o);
        } else {
                diag_list_print(&platform_diags, a->platform, stdout);
                diag_list_print(&file_diags, file, stdout);
        }
        diag_list_clear(&file_diags);
        diag_list_clear(&platform_diags);
        return errors > 0 ? -EINVAL : 0;

oom:
        diag_list_clear(&file_diags);
        diag_list_clear(&platform_diags);
        return oom();
}

/* Replaces path only once the whole text is on disk, so a failed write leaves the old file. */
static int write_file_atomic(const char *path, const char *text) {
        _cleanup_(xfreep) char *tmp = NULL;
        _cleanup_(closep) int fd = -EBADF;
        size_t len = strlen(text), done = 0;
        int r;

        if (asprintf(&tmp, "%s.XXXXXX", path) < 0) {
                tmp = NULL;
                return oom();
        }
        fd = mkostemp(tmp, O_CLOEXEC);
        if (fd < 0) {
                r = negative_errno();
                fprintf(stderr, "brokerctl: io_error: %s: %s\n", path, strerror(-r));
                return r;
        }
        if (fchmod(fd, 0644) < 0)
                goto fail;
        while (done < len) {
                ssize_t n = write(fd, text + done, len - done);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        goto fail;
                }
                done += (size_t) n;
        }
        if (write(fd, "\n", 1) != 1 || fsync(fd) < 0 || close(TAKE_FD(fd)) < 0 || rename(tmp, path) < 0)
                goto fail;
        return 0;

fail:
        r = negative_errno();
        fprintf(stderr, "brokerctl: io_error: %s: %s\n", path, strerror(-r));
        unlink(tmp);
        return r;
}

int verb_platform(struct bdc *c, const struct args *a) {
        _cleanup_(json_putp) struct json_object *desc = NULL;
        const char *text;
        int r;

        (void) c;
        r = probe_platform(a->sysfs ?: "/", &desc, stderr);
        if (r == -ENOMEM)
                return oom();
        if (r < 0) {
                fprintf(stderr, "brokerctl: probe_failed: %s; no description written\n",
                        r == -ENODATA ? "no RAM could be read" : "the description would not load");
                return r;
        }
        text = json_object_to_json_string_ext(
                desc, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED | JSON_C_TO_STRING_NOSLASHESCAPE);
        if (!text)
                return oom();
        if (!a->output || strcmp(a->output, "-") == 0) {
                puts(text);
                return 0;
        }
        return write_file_atomic(a->output, text);
}

