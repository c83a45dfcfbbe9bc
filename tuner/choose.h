/*
 * choose.h: how the tuner names a winner among measured variants. Pure functions of the
 * measurements, so the rule is tested on the CPU (tests/test_choose.c).
 */
#ifndef FATUNE_CHOOSE_H
#define FATUNE_CHOOSE_H

/* A tie whatever was measured: how far the gap between two configs moves between two runs of the
 * same suite. H200, 2026-11-30: one config's median moves by 0.3% (median) to 1.3-1.5% (p95); with
 * a 1% band two tunes disagreed on a fifth of the problems; with 2%, two runs of the next session
 * disagreed on 5 of 34, every time the same two configs (stages 1 and 2 of one tile at bf16 d128
 * causal), 2.1-3.0% apart in every round of one run and within 2% in the other. */
#define CHOOSE_TIE_BAND 0.03

/* One measured variant. */
typedef struct choose_in {
    const char *family, *params;
    double median_ms;       /* > 0 for a variant that may win; others are skipped */
    double noise;           /* relative spread of its measurements ((max - min) / median), 0: unknown */
    int preferred;          /* 1: the built-in default, which wins any tie it is part of */
} choose_in;

/* The winner of v[0..n-1]: the fastest, unless others are within the noise of it, that is within
 * max(band, the noise of either) of its median; then the preferred one among those (the built-in
 * default: a tuned row never differs from what an untuned call runs by less than the noise), else
 * the first by family and parameter text, so that two tunes agree. Returns its index, -1 when no variant may win. *second (may be
 * NULL) receives the fastest of the rest, -1 when there is none. */
int choose_winner(const choose_in *v, int n, double band, int *second);

/* The winner among finalists timed again in rounds, interleaved (A B C, A B C, ...), so that round
 * r of every finalist ran under the same clock and temperature: rounds[i * nrounds + r] is
 * finalist i's time in round r, v[i].median_ms the median of its rounds (<= 0: dropped out). The
 * fastest by median wins over another only when it is faster by more than band and faster in every
 * round; the others are a tie with it, won by the preferred one, else the first by family and
 * parameter text.
 * A pairwise comparison round by round sees through drift that a spread over rounds mistakes for
 * noise, so a steady 2% lead wins every time and a 0.5% wobble never does. Returns the index, -1
 * when none may win; *second (may be NULL) the fastest of the rest by median, -1 when none. */
int choose_paired(const choose_in *v, const double *rounds, int n, int nrounds, double band, int *second);

/* The median of x[0..n-1] (n > 0; x is reordered) and, in *spread, (max - min) / median. */
double choose_median(double *x, int n, double *spread);

#endif
