/* SPDX-License-Identifier: Apache-2.0 */
#pragma once
/*
 * Processes by pidfd, never by pid number (which the kernel reuses). A pidfd becomes readable
 * when its process exits. Every call returns 0 / 1 as documented, or -errno; none blocks longer
 * than the timeout it is given.
 */
#include <stdbool.h>
#include <sys/types.h>

/* SO_PEERPIDFD (Linux >= 6.5); Debian 12's headers predate it. */
#ifndef SO_PEERPIDFD
#define SO_PEERPIDFD 77
#endif

/*
 * A pidfd (O_CLOEXEC, never below 3) for the process at the other end of the connected unix
 * socket sock: SO_PEERPIDFD where the kernel has it, else pidfd_open() of the SO_PEERCRED pid
 * fallback_pid. The fallback has a small race: had that process exited and its pid been reused
 * between connect() and now, the pidfd names the newcomer. SO_PEERPIDFD has no such race.
 */
int pidfd_of_peer(int sock, pid_t fallback_pid, int *ret);
/*
 * A new pidfd for pidfd's process, on an open file description of its own (a dup shares one;
 * systemd's fd store keeps only one fd per open file description). -ESRCH once it exited.
 * pid: pidfd's own pid in our namespace when the caller knows it for sure (SO_PEERCRED's pid
 * of the socket SO_PEERPIDFD gave pidfd for: saves reading fdinfo), else 0. Either way pidfd
 * must still be running after the open, so that the pid was not reused in between.
 */
int pidfd_reopen(int pidfd, pid_t pid, int *ret);
/* The pid behind pidfd now (from fdinfo), or -ESRCH once it exited. */
int pidfd_pid(int pidfd, pid_t *ret);
/* 1 when the process has exited, 0 while it runs (or is stopped). */
int pidfd_exited(int pidfd);
/* 1 when the process is stopped (SIGSTOP, or traced), 0 while it runs; -ESRCH once it exited. */
int pidfd_stopped(int pidfd);
int pidfd_signal(int pidfd, int sig);
/*
 * 1 when the process still reaches the file (dev, ino): one of its fds or mappings is it; 0 when
 * none is; -ESRCH once it exited. Reads /proc/<pid>/fd and /proc/<pid>/maps, so the caller needs
 * ptrace-read access to it (same uid, or root): -EACCES otherwise. An fd the process passed on to
 * another process, or that is in flight in a socket, is not seen.
 */
int pidfd_reaches_file(int pidfd, dev_t dev, ino_t ino);
/*
 * Waits at most timeout_ms for the process to be stopped (stopped = true) or to exit: 1 once it
 * is, 0 on timeout. An exited process counts as stopped.
 */
int pidfd_wait(int pidfd, bool stopped, int timeout_ms);
