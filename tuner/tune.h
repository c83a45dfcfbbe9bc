/*
 * tune.h: the tuning job behind `fatune --gpu N`.
 */
#ifndef FAT_TUNE_H
#define FAT_TUNE_H

#define TUNE_MAX_GPUS 64

typedef struct tune_opts {
    int gpus[TUNE_MAX_GPUS];
    int ngpus;
    const char *shapes;     /* NULL: the default suite */
    const char *db;
    const char *only;       /* one family, or NULL */
    double budget_s;        /* 0: none; else stop starting trials after this long */
    int random;             /* strategy: 0 exhaustive, 1 random order (sampling under a budget) */
    int quick;              /* effort: at most 12 variants per family and problem, shorter timing */
    int json;               /* one JSON object per problem on stdout */
    int quiet;              /* no progress, only failures and the summary */
    double trial_timeout_s; /* a trial still running after this is killed (status timeout) */
} tune_opts;

/* Runs the job; returns the process exit code (0 ok, 1 failure, 2 bad input). */
int tune_main(const tune_opts *o);

#endif
