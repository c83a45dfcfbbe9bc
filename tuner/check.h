/*
 * check.h: `fatune check`: generate and compile every valid variant a shape list needs.
 */
#ifndef FAT_CHECK_H
#define FAT_CHECK_H

#include <stdio.h>
#include "gen.h"

typedef struct check_opts {
    const char *only;       /* one family, or NULL for all */
    const gen_device *dev;  /* whose limits valid() sees; dev->arch is compiled for */
    int threads;            /* compile threads, 0: one per core */
    int quiet;
} check_opts;

typedef struct check_summary {
    int space, pruned, variants, compiled, failed, spilled;
    int max_spill_bytes;    /* the largest spill (stores + loads) of any variant */
    double seconds;
} check_summary;

/* Enumerates, emits (deduplicated by source) and compiles; prints per-family space/pruning lines,
 * one line per failure with the head of its log, and a summary to `out`. FAT_OK when everything
 * ran (failures are counted in *sum, not returned); FAT_ERR_TEMPLATE when a template raised an
 * error (the message is in the thread's last error). */
fat_status check_run(gen *g, const fat_problem *probs, int nprobs, const check_opts *o, FILE *out,
                     check_summary *sum);

#endif
