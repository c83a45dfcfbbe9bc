/*
 * dispatch.h: choosing a tuned configuration for a problem, as a pure function of the device's
 * tuned rows, so that the lookup order is testable without a GPU. Private to fatune.
 */
#ifndef FAT_DISPATCH_H
#define FAT_DISPATCH_H

#include "fatune.h"

/* One tuned row of this device: the problem, its best family and parameters. */
typedef struct dispatch_row {
    fat_problem prob;
    char family[32];
    char params[160];
    double median_ms;
} dispatch_row;

/* The decoding regime: at most `rows` query rows per KV head ((heads_q / heads_kv) x seqlen_q: a
 * decoding step, speculative decoding), rows being what the build's decoding family declares
 * (gen_decoding_rows: decode's 16, its one mma row tile; 0 when no family serves decoding). There
 * the decode family's split-KV kernel is the one that wins (docs/decode.md), and what was tuned
 * for prefill says nothing about it, nor the other way round: lookups, and the tuner's guided
 * search, never cross from one regime to the other. */
static inline int dispatch_decoding(const fat_problem *p, int rows) {
    return p->heads_kv > 0 && (long long)(p->heads_q / p->heads_kv) * p->seqlen_q <= rows;
}

/* Picks the row for problem p: exact, else the nearest row of the same kind (dtype, head_dim,
 * causal, features, decoding regime of decoding_rows) whose seqlens fall in the same powers of two
 * (bucket), else the nearest of the same kind in log space (nearest), else the configuration that
 * wins most often among rows of the same dtype, head_dim and regime (device, *row is one of them).
 * A decoding step takes only rows of its own batch x heads_kv, and never the device level
 * (decode's default adapts to the shape).
 * Rows for which usable(row) is false are skipped (usable may be NULL). Returns the level and sets
 * *row, or FAT_LEVEL_DEFAULT with *row = -1 when no row applies. */
fat_level dispatch_choose(const dispatch_row *rows, int n, const fat_problem *p, int decoding_rows,
                          int (*usable)(const dispatch_row *r, void *ud), void *ud, int *row);

/* The problem an attention call is: sizes, dtype and the feature bits its arguments switch on. */
void dispatch_problem(const fat_attn_args *a, fat_problem *p);

#endif
