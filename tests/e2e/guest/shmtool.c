/* SPDX-License-Identifier: Apache-2.0 */
/*
 * shmtool: runs inside the e2e guests. Finds the ivshmem-plain PCI device (1af4:1110) and
 * works on its BAR2, which is the shared region, through sysfs' resource2.
 *   shmtool find               print the device's sysfs directory (exit 1 if there is none)
 *   shmtool fill SEED          write a pattern derived from SEED over the whole BAR
 *   shmtool verify SEED        check that pattern: "VERIFY OK <bytes>" or "VERIFY BAD ..."
 *   shmtool put OFF STRING     write STRING (with its NUL) at OFF
 *   shmtool get OFF            print the string at OFF
 * Build: cc -static -O2 -o shmtool shmtool.c
 */
#include <dirent.h>
#include <stdbool.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static int read_line(const char *path, char *buf, size_t n) {
        FILE *f = fopen(path, "re");

        if (!f)
                return -1;
        if (!fgets(buf, (int) n, f)) {
                fclose(f);
                return -1;
        }
        fclose(f);
        buf[strcspn(buf, "\n")] = 0;
        return 0;
}

static int find_device(char *dir, size_t n) {
        DIR *d = opendir("/sys/bus/pci/devices");
        struct dirent *e;
        int found = -1;

        if (!d)
                return -1;
        while (found < 0 && (e = readdir(d))) {
                char p[512], vendor[32], device[32];

                if (e->d_name[0] == '.')
                        continue;
                snprintf(p, sizeof(p), "/sys/bus/pci/devices/%s/vendor", e->d_name);
                if (read_line(p, vendor, sizeof(vendor)) < 0)
                        continue;
                snprintf(p, sizeof(p), "/sys/bus/pci/devices/%s/device", e->d_name);
                if (read_line(p, device, sizeof(device)) < 0)
                        continue;
                if (strcmp(vendor, "0x1af4") == 0 && strcmp(device, "0x1110") == 0) {
                        snprintf(dir, n, "/sys/bus/pci/devices/%s", e->d_name);
                        found = 0;
                }
        }
        closedir(d);
        return found;
}

/* The BAR, mapped shared; the device is enabled first so its memory decodes. */
static volatile uint8_t *map_bar(size_t *len) {
        char dir[300], p[400];
        struct stat st;
        void *m;
        int fd;

        if (find_device(dir, sizeof(dir)) < 0) {
                fprintf(stderr, "no ivshmem device\n");
                exit(2);
        }
        snprintf(p, sizeof(p), "%s/enable", dir);
        fd = open(p, O_WRONLY | O_CLOEXEC);
        if (fd >= 0) {
                (void) !write(fd, "1", 1);
                close(fd);
        }
        snprintf(p, sizeof(p), "%s/resource2", dir);
        fd = open(p, O_RDWR | O_SYNC | O_CLOEXEC);
        if (fd < 0 || fstat(fd, &st) < 0 || st.st_size <= 0) {
                perror(p);
                exit(2);
        }
        *len = (size_t) st.st_size;
        m = mmap(NULL, *len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (m == MAP_FAILED) {
                perror("mmap");
                exit(2);
        }
        close(fd);
        return m;
}

/* splitmix64: every word of the region differs, and depends on the seed. */
static uint64_t pattern(uint64_t seed, uint64_t i) {
        uint64_t z = seed + (i + 1) * 0x9e3779b97f4a7c15ULL;

        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        return z ^ (z >> 31);
}

int main(int argc, char **argv) {
        volatile uint64_t *w;
        volatile uint8_t *m;
        size_t len;

        if (argc == 2 && strcmp(argv[1], "find") == 0) {
                char dir[300];

                if (find_device(dir, sizeof(dir)) < 0)
                        return 1;
                puts(dir);
                return 0;
        }
        if (argc == 3 && (strcmp(argv[1], "fill") == 0 || strcmp(argv[1], "verify") == 0)) {
                uint64_t seed = strtoull(argv[2], NULL, 0), bad = 0, first = 0;
                bool fill = strcmp(argv[1], "fill") == 0;

                m = map_bar(&len);
                w = (volatile uint64_t *) m;
                for (uint64_t i = 0; i < len / 8; i++) {
                        if (fill)
                                w[i] = pattern(seed, i);
                        else if (w[i] != pattern(seed, i) && bad++ == 0)
                                first = i * 8;
                }
                if (fill) {
                        printf("FILL OK %zu\n", len);
                        return 0;
                }
                if (bad) {
                        printf("VERIFY BAD %" PRIu64 " words, first at %" PRIu64 "\n", bad, first);
                        return 1;
                }
                printf("VERIFY OK %zu\n", len);
                return 0;
        }
        if (argc == 4 && strcmp(argv[1], "put") == 0) {
                size_t off = strtoull(argv[2], NULL, 0), n = strlen(argv[3]);

                m = map_bar(&len);
                if (off > len || n + 1 > len - off)
                        return 2;
                for (size_t i = 0; i <= n; i++)
                        m[off + i] = (uint8_t) argv[3][i];
                return 0;
        }
        if (argc == 3 && strcmp(argv[1], "get") == 0) {
                size_t off = strtoull(argv[2], NULL, 0);

                m = map_bar(&len);
                if (off >= len)
                        return 2;
                for (size_t i = off; i < len && m[i]; i++)
                        putchar(m[i]);
                putchar('\n');
                return 0;
        }
        fprintf(stderr, "usage: shmtool find | fill SEED | verify SEED | put OFF STRING | get OFF\n");
        return 2;
}
