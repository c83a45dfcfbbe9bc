/*
 * pool.h: the NVRTC compile pool: a bounded set of threads compiling variants to cubin.
 */
#ifndef FAT_POOL_H
#define FAT_POOL_H

#include <stdio.h>

#include "rtc.h"

typedef struct pool_job {
    const char *source;     /* borrowed for the duration of pool_compile */
    const char *name;       /* file name NVRTC shows in its log */
    const char *arch;
    int ptx;
    fat_status st;          /* FAT_OK, FAT_ERR_NVRTC (compile error: see res.log), ... */
    char err[256];          /* the thread's error message when st != FAT_OK */
    rtc_result res;
} pool_job;

/* Compiles every job with up to `threads` threads (0: one per core); returns when all are done.
 * Never fails as a whole: each job carries its own status. */
void pool_compile(pool_job *jobs, int n, int threads);

/* The same, saying how far it is on progress (a terminal: one updating line; a log: a line every
 * 10 s), each line starting with what. progress NULL: silent, as pool_compile. */
void pool_compile_report(pool_job *jobs, int n, int threads, FILE *progress, const char *what);

#endif
