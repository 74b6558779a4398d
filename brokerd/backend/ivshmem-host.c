/* SPDX-License-Identifier: Apache-2.0 */
#include "backend/ivshmem-host.h"

#include <errno.h>
#include <stdbool.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <systemd/sd-event.h>
#include <unistd.h>

#include "util/log.h"

struct host_post {
        ivshmem_host_report_fn fn;
        void *userdata;
        size_t size;
        unsigned char msg[]; /* size bytes */
};

struct ivshmem_host {
        pthread_t thread;
        bool thread_started;
        pthread_mutex_t lock;
        pthread_cond_t cond;
        int call_efd, post_efd;

        /* Under lock: the one call in flight (the loop thread is the only caller). */
        ivshmem_host_fn call_fn;
        void *call_userdata;
        bool call_pending, call_done;
        int call_result;

        /* Under lock: reports for the loop thread. */
        struct host_post **posts;
        size_t n_posts, n_allocated;

        /* Host thread only, once it runs. */
        sd_event *event;
        int start_result;
        bool started;

        /* Loop thread only. */
        sd_event_source *post_source;
};

static int stop_loop(sd_event *e, void *userdata) {
        (void) userdata;
        return sd_event_exit(e, 0);
}

static int on_call(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        struct ivshmem_host *h = userdata;
        ivshmem_host_fn fn;
        uint64_t v;
        void *ud;
        int r;

        (void) s, (void) revents;
        (void) !read(fd, &v, sizeof(v));
        pthread_mutex_lock(&h->lock);
        if (!h->call_pending) {
                pthread_mutex_unlock(&h->lock);
                return 0;
        }
        fn = h->call_fn;
        ud = h->call_userdata;
        h->call_pending = false;
        pthread_mutex_unlock(&h->lock);

        r = fn(h->event, ud);

        pthread_mutex_lock(&h->lock);
        h->call_result = r;
        h->call_done = true;
        pthread_cond_broadcast(&h->cond);
        pthread_mutex_unlock(&h->lock);
        return 0;
}

static void *host_thread(void *p) {
        struct ivshmem_host *h = p;
        sd_event_source *src = NULL;
        int r;

        r = sd_event_new(&h->event);
        if (r >= 0)
                r = sd_event_add_io(h->event, &src, h->call_efd, EPOLLIN, on_call, h);
        pthread_mutex_lock(&h->lock);
        h->start_result = r;
        h->started = true;
        pthread_cond_broadcast(&h->cond);
        pthread_mutex_unlock(&h->lock);
        if (r >= 0) {
                r = sd_event_loop(h->event);
                if (r < 0)
                        log_error("ivshmem: the servers' event loop failed: %s", strerror(-r));
        }
        sd_event_source_disable_unref(src);
        h->event = sd_event_unref(h->event);
        return NULL;
}

static int on_post(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        struct ivshmem_host *h = userdata;
        struct host_post **batch;
        size_t n;
        uint64_t v;

        (void) s, (void) revents;
        (void) !read(fd, &v, sizeof(v));
        pthread_mutex_lock(&h->lock);
        batch = h->posts;
        n = h->n_posts;
        h->posts = NULL;
        h->n_posts = h->n_allocated = 0;
        pthread_mutex_unlock(&h->lock);

        for (size_t i = 0; i < n; i++) {
                batch[i]->fn(batch[i]->userdata, batch[i]->msg);
                free(batch[i]);
        }
        free(batch);
        return 0;
}

int ivshmem_host_new(sd_event *caller_loop, struct ivshmem_host **ret) {
        struct ivshmem_host *h;
        int r;

        if (!caller_loop || !ret)
                return -EINVAL;
        h = calloc(1, sizeof(*h));
        if (!h)
                return -ENOMEM;
        h->call_efd = h->post_efd = -EBADF;
        pthread_mutex_init(&h->lock, NULL);
        pthread_cond_init(&h->cond, NULL);
        h->call_efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        h->post_efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (h->call_efd < 0 || h->post_efd < 0) {
                r = negative_errno();
                goto fail;
        }
        r = sd_event_add_io(caller_loop, &h->post_source, h->post_efd, EPOLLIN, on_post, h);
        if (r < 0)
                goto fail;
        r = -pthread_create(&h->thread, NULL, host_thread, h);
        if (r < 0)
                goto fail;
        h->thread_started = true;
        pthread_mutex_lock(&h->lock);
        while (!h->started)
                pthread_cond_wait(&h->cond, &h->lock);
        r = h->start_result;
        pthread_mutex_unlock(&h->lock);
        if (r < 0)
                goto fail;
        *ret = h;
        return 0;
fail:
        ivshmem_host_free(h);
        return r;
}

void ivshmem_host_free(struct ivshmem_host *h) {
        if (!h)
                return;
        if (h->thread_started) {
                if (h->start_result >= 0)
                        (void) ivshmem_host_call(h, stop_loop, NULL);
                pthread_join(h->thread, NULL);
        }
        sd_event_source_disable_unref(h->post_source);
        for (size_t i = 0; i < h->n_posts; i++)
                free(h->posts[i]);
        free(h->posts);
        if (h->call_efd >= 0)
                close(h->call_efd);
        if (h->post_efd >= 0)
                close(h->post_efd);
        pthread_cond_destroy(&h->cond);
        pthread_mutex_destroy(&h->lock);
        free(h);
}

int ivshmem_host_call(struct ivshmem_host *h, ivshmem_host_fn fn, void *userdata) {
        uint64_t one = 1;
        int r;

        if (!h || !fn)
                return -EINVAL;
        pthread_mutex_lock(&h->lock);
        h->call_fn = fn;
        h->call_userdata = userdata;
        h->call_pending = true;
        h->call_done = false;
        pthread_mutex_unlock(&h->lock);
        if (write(h->call_efd, &one, sizeof(one)) < 0) {
                r = negative_errno();
                pthread_mutex_lock(&h->lock);
                h->call_pending = false;
                pthread_mutex_unlock(&h->lock);
                return r;
        }
        pthread_mutex_lock(&h->lock);
        while (!h->call_done)
                pthread_cond_wait(&h->cond, &h->lock);
        r = h->call_result;
        pthread_mutex_unlock(&h->lock);
        return r;
}

int ivshmem_host_post(struct ivshmem_host *h, ivshmem_host_report_fn fn, void *userdata, const void *msg,
                      size_t size) {
        struct host_post *p;
        uint64_t one = 1;

        if (!h || !fn || (size > 0 && !msg))
                return -EINVAL;
        if (size > IVSHMEM_HOST_MAX_MSG)
                return -E2BIG;
        p = malloc(sizeof(*p) + size);
        if (!p)
                return -ENOMEM;
        *p = (struct host_post) { .fn = fn, .userdata = userdata, .size = size };
        if (size > 0)
                memcpy(p->msg, msg, size);
        pthread_mutex_lock(&h->lock);
        if (h->n_posts >= IVSHMEM_HOST_MAX_POSTS) {
                pthread_mutex_unlock(&h->lock);
                free(p);
                log_error("ivshmem: dropping a report: %u are waiting for the loop thread", IVSHMEM_HOST_MAX_POSTS);
                return -ENOBUFS;
        }
        if (h->n_posts == h->n_allocated) {
                size_t n = h->n_allocated ? h->n_allocated * 2 : 16;
                struct host_post **q = reallocarray(h->posts, n, sizeof(*q));

                if (!q) {
                        pthread_mutex_unlock(&h->lock);
                        free(p);
                        return -ENOMEM;
                }
                h->posts = q;
                h->n_allocated = n;
        }
        h->posts[h->n_posts++] = p;
        pthread_mutex_unlock(&h->lock);
        (void) !write(h->post_efd, &one, sizeof(one));
        return 0;
}
