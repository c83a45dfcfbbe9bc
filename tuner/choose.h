/*
 * choose.h: how the tuner names a winner among measured variants. Pure functions of the
 * measurements, so the rule is tested on the CPU (tests/test_choose.c).
 */
#ifndef FATUNE_CHOOSE_H
#define FATUNE_CHOOSE_H

/* One measured variant. */
typedef struct choose_in {
    const char *family, *params;
    double median_ms;       /* > 0 for a variant that may win; others are skipped */
    double noise;           /* relative spread of its measurements ((max - min) / median), 0: unknown */
} choose_in;

/* The winner of v[0..n-1]: the fastest, unless others are within the noise of it, that is within
 * max(band, the noise of either) of its median; then the first of those by family and parameter
 * text, so that two tunes agree. Returns its index, -1 when no variant may win. *second (may be
 * NULL) receives the fastest of the rest, -1 when there is none. */
int choose_winner(const choose_in *v, int n, double band, int *second);

/* The median of x[0..n-1] (n > 0; x is reordered) and, in *spread, (max - min) / median. */
double choose_median(double *x, int n, double *spread);

#endif
