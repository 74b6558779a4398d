/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "backend/ivshmem-server.h"
#include "backend/ivshmem-table.h"

struct fixture {
        char dir[64];
        char path[128];
};

static int setup(void **state) {
        struct fixture *f = calloc(1, sizeof(*f));

        assert_non_null(f);
        snprintf(f->dir, sizeof(f->dir), "/tmp/test-ivshmem-table-XXXXXX");
        assert_non_null(mkdtemp(f->dir));
        snprintf(f->path, sizeof(f->path), "%s/region-1.peers", f->dir);
        *state = f;
        return 0;
}

static int teardown(void **state) {
        struct fixture *f = *state;
        char tmp[160];

        (void) unlink(f->path);
        snprintf(tmp, sizeof(tmp), "%s.tmp", f->path);
        (void) unlink(tmp);
        assert_int_equal(rmdir(f->dir), 0); /* nothing else was left behind */
        free(f);
        return 0;
}

static void write_file(const char *path, const char *text) {
        FILE *f = fopen(path, "we");

        assert_non_null(f);
        fputs(text, f);
        assert_int_equal(fclose(f), 0);
}

static void test_roundtrip(void **state) {
        struct fixture *f = *state;
        struct ivshmem_table_peer peers[] = { { .id = 0, .domain = "hw0" }, { .id = 7, .domain = "vm-1.a:b+c_d" } };
        struct ivshmem_table t = { .next_id = 9, .peers = peers, .n = 2 }, back = { .next_id = 12345 };
        struct stat st;

        assert_int_equal(ivshmem_table_save(f->path, &t), 0);
        assert_int_equal(stat(f->path, &st), 0);
        assert_int_equal(st.st_mode & 0777, 0600);
        assert_int_equal(ivshmem_table_load(f->path, &back), 0);
        assert_int_equal(back.next_id, 9);
        assert_int_equal(back.n, 2);
        assert_int_equal(back.peers[1].id, 7);
        assert_string_equal(back.peers[1].domain, "vm-1.a:b+c_d");
        free(back.peers);

        /* Saved again (fewer peers): the new table replaces the old one whole. */
        t.n = 0;
        t.next_id = IVSHMEM_ID_LIMIT;
        assert_int_equal(ivshmem_table_save(f->path, &t), 0);
        assert_int_equal(ivshmem_table_load(f->path, &back), 0);
        assert_int_equal(back.next_id, IVSHMEM_ID_LIMIT);
        assert_int_equal(back.n, 0);
        free(back.peers);
}

static void test_missing_is_empty(void **state) {
        struct fixture *f = *state;
        struct ivshmem_table back = { .next_id = 5, .n = 3 };

        assert_int_equal(ivshmem_table_load(f->path, &back), 0);
        assert_int_equal(back.next_id, 0);
        assert_int_equal(back.n, 0);
        assert_null(back.peers);
}

static void test_save_refuses_bad_tables(void **state) {
        struct fixture *f = *state;
        struct ivshmem_table_peer peers[] = { { .id = 3, .domain = "a" }, { .id = 3, .domain = "b" } };
        struct ivshmem_table t = { .next_id = 4, .peers = peers, .n = 2 };

        assert_int_equal(ivshmem_table_save(f->path, &t), -EINVAL); /* ids not ascending */
        t.n = 1;
        t.next_id = 3;
        assert_int_equal(ivshmem_table_save(f->path, &t), -EINVAL); /* id not below next */
        t.next_id = IVSHMEM_ID_LIMIT + 1;
        assert_int_equal(ivshmem_table_save(f->path, &t), -EINVAL);
        t.next_id = 4;
        strcpy(peers[0].domain, "bad/name");
        assert_int_equal(ivshmem_table_save(f->path, &t), -EINVAL);
        assert_int_equal(access(f->path, F_OK), -1); /* nothing written */
}

static void test_load_refuses_bad_files(void **state) {
        static const char *bad[] = {
                "",
                "brokerd-ivshmem-peers 2\nnext 0\n",
                "brokerd-ivshmem-peers 1\n",
                "brokerd-ivshmem-peers 1\nnext 65537\n",
                "brokerd-ivshmem-peers 1\nnext -1\n",
                "brokerd-ivshmem-peers 1\nnext 2 \n",
                "brokerd-ivshmem-peers 1\nnext 2\npeer 2 a\n",          /* id not below next */
                "brokerd-ivshmem-peers 1\nnext 9\npeer 3 a\npeer 3 b\n", /* not ascending */
                "brokerd-ivshmem-peers 1\nnext 9\npeer 1 a\npeer 0 b\n",
                "brokerd-ivshmem-peers 1\nnext 9\npeer 1 a b\n",
                "brokerd-ivshmem-peers 1\nnext 9\npeer 1 \xff\xfe\n",     /* not UTF-8, not a name */
                "brokerd-ivshmem-peers 1\nnext 9\npeer 1 a",              /* unterminated */
                "brokerd-ivshmem-peers 1\nnext 9\npeer x a\n",
                "brokerd-ivshmem-peers 1\nnext 9\npeer 1\n",
                "brokerd-ivshmem-peers 1\nnext 9\nsomething 1 a\n",
                "brokerd-ivshmem-peers 1\nnext 70000\npeer 65536 a\n",
        };
        struct fixture *f = *state;

        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                struct ivshmem_table back = { .next_id = 42 };

                write_file(f->path, bad[i]);
                assert_int_equal(ivshmem_table_load(f->path, &back), -EBADMSG);
                assert_int_equal(back.next_id, 42); /* untouched */
                assert_null(back.peers);
        }
}

static void test_load_limits(void **state) {
        struct fixture *f = *state;
        static char text[64 * 1024];
        struct ivshmem_table back = {};
        char longname[NAME_MAX_LEN + 2], *p = text;

        p += sprintf(p, "brokerd-ivshmem-peers 1\nnext 1000\n");
        for (unsigned i = 0; i < IVSHMEM_TABLE_MAX_PEERS; i++)
                p += sprintf(p, "peer %u vm%u\n", i, i);
        write_file(f->path, text);
        assert_int_equal(ivshmem_table_load(f->path, &back), 0);
        assert_int_equal(back.n, IVSHMEM_TABLE_MAX_PEERS);
        free(back.peers);
        /* One more than a server admits. */
        sprintf(p, "peer 999 extra\n");
        write_file(f->path, text);
        back = (struct ivshmem_table) {};
        assert_int_equal(ivshmem_table_load(f->path, &back), -EBADMSG);
        /* A domain name one longer than a name may be. */
        memset(longname, 'a', sizeof(longname) - 1);
        longname[sizeof(longname) - 1] = 0;
        sprintf(text, "brokerd-ivshmem-peers 1\nnext 3\npeer 1 %s\n", longname);
        write_file(f->path, text);
        assert_int_equal(ivshmem_table_load(f->path, &back), -EBADMSG);
        longname[NAME_MAX_LEN] = 0;
        sprintf(text, "brokerd-ivshmem-peers 1\nnext 3\npeer 1 %s\n", longname);
        write_file(f->path, text);
        assert_int_equal(ivshmem_table_load(f->path, &back), 0);
        assert_string_equal(back.peers[0].domain, longname);
        free(back.peers);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_roundtrip, setup, teardown),
                cmocka_unit_test_setup_teardown(test_missing_is_empty, setup, teardown),
                cmocka_unit_test_setup_teardown(test_save_refuses_bad_tables, setup, teardown),
                cmocka_unit_test_setup_teardown(test_load_refuses_bad_files, setup, teardown),
                cmocka_unit_test_setup_teardown(test_load_limits, setup, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
