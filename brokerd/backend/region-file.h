/* SPDX-License-Identifier: Apache-2.0 */
#pragma once
/*
 * File handling shared by the backends whose regions live in files.
 * region_file_open() opens an existing region file read-write without following links and
 * without hanging on a planted FIFO: a symlink, directory or device is -EBADFD.
 * region_file_punch_out() zeroes the whole file so every mapping of it reads zeros from then
 * on (hole punching, or writing zeros where the file system cannot punch).
 */
#include <stdint.h>

int region_file_open(const char *path, int *ret);
int region_file_punch_out(int fd, uint64_t size);
