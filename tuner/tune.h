/*
 * tune.h: the tuning job behind `fatune --gpu N`.
 */
#ifndef FAT_TUNE_H
#define FAT_TUNE_H

#include <stdio.h>

#include "db.h"

#define TUNE_MAX_GPUS 64

/* How a problem's candidates are chosen (--strategy):
 *   guided      problems cheapest first; a problem of a kernel specialisation with no cheaper
 *               problem in the database whose search was complete tries every valid variant (it
 *               screens the space); the others try the built-in default, the 8 fastest of the
 *               nearest screened problem, the 4 fastest of each of the two nearest cheaper tuned
 *               ones and every variant no problem of the kind has tried; should none of that
 *               verify, the rest. Quick effort samples instead (12 variants per family).
 *   exhaustive  every valid variant of every problem, in order
 *   random      every valid variant, shuffled (with --budget: a random sample) */
enum { TUNE_GUIDED = 0, TUNE_EXHAUSTIVE = 1, TUNE_RANDOM = 2 };

typedef struct tune_opts {
    int gpus[TUNE_MAX_GPUS];
    int ngpus;
    const char *shapes;     /* NULL: the default suite */
    const char *db;
    const char *only;       /* one family, or NULL */
    double budget_s;        /* 0: none; else stop starting trials after this long */
    int strategy;           /* TUNE_GUIDED (the default), TUNE_EXHAUSTIVE or TUNE_RANDOM */
    int quick;              /* effort: at most 12 variants per family and problem, shorter timing */
    int json;               /* one JSON object per problem on stdout */
    int quiet;              /* no progress, only failures and the summary */
    double trial_timeout_s; /* a trial still running after this is killed (status timeout) */
    int shard, nshards;     /* --shard K/N: this machine's share of the suite (tune_machine_share);
                               nshards 0: the whole suite */
} tune_opts;

/* --shard K/N: machine `shard`'s share of problems probs[0..n) (in place; *n becomes its count),
 * the same on every machine for the same suite and nshards. Each kernel kind (dtype, head_dim,
 * causal, features, and decoding or not: what the guided search learns within) stays whole on one
 * machine unless its estimated cost is over 1.25 times a machine's fair share, in which case its problems
 * are shared out one by one; then the longest items first, each to the least loaded machine (ties
 * to the lowest index). Cost, in estimated seconds of tuning: SHARD_PROBLEM_S per problem (its
 * compiles, inputs and verification) plus its FLOPs over SHARD_FLOPS (its timed runs). Writes
 * the kinds kept whole and in all to *whole and *kinds, the share of the estimated cost to *share
 * (0..1). 0, or -1 out of memory. */
int tune_machine_share(fat_problem *probs, int *n, int shard, int nshards, int decoding_rows, int *whole, int *kinds,
                       double *share);

/* Runs the job; returns the process exit code (0 ok, 1 failure, 2 bad input). */
int tune_main(const tune_opts *o);

/* The checks of bad input that need no GPU, for the CLI to run before any GPU work: the shapes
 * file reads and every family the run uses loads and enumerates its space for every problem (a
 * template with a Lua error: "fatune: template NAME: FILE:LINE: message", 2); the database opens
 * for writing as a fatune database of a known version, or can be created (read-only file or
 * directory, not a fatune database, newer version: "fatune: DB: why", 1). Prints the message on
 * stderr and returns the exit code, 0 when all is well. Creates and changes nothing. */
int tune_preflight(const tune_opts *o);

/* Whether database d (named path in messages) may take the trials of GPU dev. Rows are kept per
 * device row, whose key is (name, cc): rows of other models are left alone and only noted. A row
 * with this GPU's name and cc but another SM count, L2 size or shared memory limit is another
 * model under the same name, whose measurements must not be mixed with these: 1, with the reason
 * in msg (n bytes). Notes (other models in the file, another driver or NVRTC than the stored
 * row's) go to notes, unless it is NULL. 0 when the run may go on. */
int tune_check_device(db *d, const char *path, const db_device *dev, FILE *notes, char *msg, size_t n);

#endif
