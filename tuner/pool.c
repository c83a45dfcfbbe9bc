/*
 * pool.c: compiles many variants at once. NVRTC programs are independent, so threads simply take
 * the next job from a shared counter; nothing else is shared.
 */
#include "pool.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct work {
    pool_job *jobs;
    int n;
    atomic_int next, done;
};

static void *worker(void *arg) {
    struct work *w = arg;
    for (;;) {
        int i = atomic_fetch_add(&w->next, 1);
        if (i >= w->n) return NULL;
        pool_job *j = &w->jobs[i];
        j->st = rtc_compile(j->source, j->name, j->arch, j->ptx, &j->res);
        if (j->st != FAT_OK) snprintf(j->err, sizeof j->err, "%s", fat_last_error());
        atomic_fetch_add(&w->done, 1);
    }
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Says how far the compilation is while the workers run: on a terminal one line that updates four
 * times a second, in a log a line every 10 s (and none for a run shorter than that). */
static void watch(struct work *w, FILE *to, const char *what) {
    int tty = isatty(fileno(to));
    double t0 = now_s(), last = t0;
    while (atomic_load(&w->done) < w->n) {
        struct timespec nap = { 0, 250000000 };
        nanosleep(&nap, NULL);
        double t = now_s();
        if (!tty && t - last < 10) continue;
        last = t;
        fprintf(to, "%s%s: %d of %d kernels compiled, %.0f s%s", tty ? "\r\033[K" : "", what, atomic_load(&w->done), w->n,
                t - t0, tty ? "" : "\n");
        fflush(to);
    }
    if (tty) fprintf(to, "\r\033[K");
}

void pool_compile_report(pool_job *jobs, int n, int threads, FILE *progress, const char *what) {
    struct work w = { jobs, n, 0, 0 };
    if (n <= 0) return;
    if (threads <= 0) threads = (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (threads < 1) threads = 1;
    if (threads > n) threads = n;
    if (threads > 64) threads = 64;
    pthread_t tid[64];
    int started = 0;
    for (int i = progress ? 0 : 1; i < threads; i++) {
        if (pthread_create(&tid[started], NULL, worker, &w) != 0) break;
        started++;
    }
    if (progress && started) watch(&w, progress, what);
    else worker(&w);                /* the calling thread works too */
    for (int i = 0; i < started; i++) pthread_join(tid[i], NULL);
}

void pool_compile(pool_job *jobs, int n, int threads) {
    pool_compile_report(jobs, n, threads, NULL, NULL);
}
