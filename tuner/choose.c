/*
 * choose.c: the winner among measured variants. See choose.h.
 */
#include "choose.h"

#include <stdlib.h>
#include <string.h>

/* Whether a wins a tie with b: the preferred one, else the first by family, then parameter text. */
static int before(const choose_in *a, const choose_in *b) {
    if (a->preferred != b->preferred) return a->preferred;
    int c = strcmp(a->family, b->family);
    return c < 0 || (c == 0 && strcmp(a->params, b->params) < 0);
}

/* Whether v[i] is behind v[f] for good: slower by more than the band (widened by either one's
 * noise) and, with rounds, slower in every round. */
static int behind(const choose_in *v, const double *rounds, int nrounds, double band, int f, int i) {
    double tol = band;
    if (!rounds) {
        if (v[f].noise > tol) tol = v[f].noise;
        if (v[i].noise > tol) tol = v[i].noise;
    }
    if (v[i].median_ms <= (1 + tol) * v[f].median_ms) return 0;
    for (int r = 0; rounds && r < nrounds; r++)
        if (!(rounds[f * nrounds + r] < rounds[i * nrounds + r])) return 0;
    return 1;
}

/* The fastest, or the winner of its tie; rounds may be NULL. */
static int choose(const choose_in *v, const double *rounds, int n, int nrounds, double band, int *second) {
    int fastest = -1, best, next = -1;
    for (int i = 0; i < n; i++)
        if (v[i].median_ms > 0 && (fastest < 0 || v[i].median_ms < v[fastest].median_ms)) fastest = i;
    if (second) *second = -1;
    if (fastest < 0) return -1;
    best = fastest;
    for (int i = 0; i < n; i++)
        if (i != fastest && v[i].median_ms > 0 && !behind(v, rounds, nrounds, band, fastest, i) &&
            before(&v[i], &v[best])) best = i;
    for (int i = 0; i < n; i++)
        if (i != best && v[i].median_ms > 0 && (next < 0 || v[i].median_ms < v[next].median_ms)) next = i;
    if (second) *second = next;
    return best;
}

/* See choose.h. */
int choose_winner(const choose_in *v, int n, double band, int *second) {
    return choose(v, NULL, n, 0, band, second);
}

/* See choose.h. */
int choose_paired(const choose_in *v, const double *rounds, int n, int nrounds, double band, int *second) {
    return choose(v, rounds, n, nrounds, band, second);
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* See choose.h. */
double choose_median(double *x, int n, double *spread) {
    qsort(x, (size_t)n, sizeof *x, cmp_double);
    double m = n % 2 ? x[n / 2] : 0.5 * (x[n / 2 - 1] + x[n / 2]);
    if (spread) *spread = m > 0 ? (x[n - 1] - x[0]) / m : 0;
    return m;
}
