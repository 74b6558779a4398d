/* SPDX-License-Identifier: Apache-2.0 */
#include "util/lent-fd.h"

#include <unistd.h>

static struct lent_fd_borrower *borrowers;

void lent_fd_borrower_add(struct lent_fd_borrower *b) {
        b->next = borrowers;
        borrowers = b;
}

void lent_fd_borrower_remove(struct lent_fd_borrower *b) {
        for (struct lent_fd_borrower **p = &borrowers; *p; p = &(*p)->next)
                if (*p == b) {
                        *p = b->next;
                        b->next = NULL;
                        return;
                }
}

void lent_fd_close(int fd) {
        if (fd < 0)
                return;
        for (struct lent_fd_borrower *b = borrowers; b; b = b->next)
                b->keep(b, fd);
        close(fd);
}
