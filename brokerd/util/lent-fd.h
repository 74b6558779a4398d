/* SPDX-License-Identifier: Apache-2.0 */
#pragma once
/*
 * Lent fds (rpc_reply_lend_fd()): a message that is not out yet may hold its lender's own fd
 * number rather than a dup of it. A lender closes an fd it may have lent only with
 * lent_fd_close(), which first has every borrower that still holds that number take a dup of
 * its own. So a lent fd costs a dup only when its lender lets go of it before the message
 * leaves (a region taken down, or doorbells cut, in the same turn of the loop), not every time
 * a message waits. Event-loop thread only.
 */
struct lent_fd_borrower {
        struct lent_fd_borrower *next;
        /* fd is about to be closed by its lender: replace it wherever it is still held. */
        void (*keep)(struct lent_fd_borrower *b, int fd);
};

void lent_fd_borrower_add(struct lent_fd_borrower *b);
void lent_fd_borrower_remove(struct lent_fd_borrower *b);
/* Closes fd (a lender's own, perhaps lent) once the borrowers have kept their copies. */
void lent_fd_close(int fd);
