/*
 * pool.c: compiles many variants at once. NVRTC programs are independent, so threads simply take
 * the next job from a shared counter; nothing else is shared.
 */
#include "pool.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

struct work {
    pool_job *jobs;
    int n;
    atomic_int next;
};

static void *worker(void *arg) {
    struct work *w = arg;
    for (;;) {
        int i = atomic_fetch_add(&w->next, 1);
        if (i >= w->n) return NULL;
        pool_job *j = &w->jobs[i];
        j->st = rtc_compile(j->source, j->name, j->arch, j->ptx, &j->res);
        if (j->st != FAT_OK) snprintf(j->err, sizeof j->err, "%s", fat_last_error());
    }
}

void pool_compile(pool_job *jobs, int n, int threads) {
    struct work w = { jobs, n, 0 };
    if (threads <= 0) threads = (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (threads < 1) threads = 1;
    if (threads > n) threads = n;
    if (threads > 64) threads = 64;
    pthread_t tid[64];
    int started = 0;
    for (int i = 1; i < threads; i++) {
        if (pthread_create(&tid[started], NULL, worker, &w) != 0) break;
        started++;
    }
    worker(&w);                     /* the calling thread works too */
    for (int i = 0; i < started; i++) pthread_join(tid[i], NULL);
}
