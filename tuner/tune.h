/*
 * tune.h: the tuning job behind `fatune --gpu N`.
 */
#ifndef FAT_TUNE_H
#define FAT_TUNE_H

typedef struct tune_opts {
    int gpu;
    const char *shapes;     /* NULL: the default suite */
    const char *db;
    const char *only;       /* one family, or NULL */
} tune_opts;

/* Runs the job; returns the process exit code (0 ok, 1 failure, 2 bad input). */
int tune_main(const tune_opts *o);

#endif
