/*
 * dispatch.c: the lookup order exact -> bucket -> nearest -> device -> default.
 */
#include "dispatch.h"

#include <math.h>
#include <string.h>

static int same_kind(const fat_problem *a, const fat_problem *b, int rows) {
    return a->dtype == b->dtype && a->head_dim == b->head_dim && a->causal == b->causal &&
           a->features == b->features && dispatch_decoding(a, rows) == dispatch_decoding(b, rows);
}

static int same_problem(const fat_problem *a, const fat_problem *b, int rows) {
    return same_kind(a, b, rows) && a->batch == b->batch && a->heads_q == b->heads_q &&
           a->heads_kv == b->heads_kv && a->seqlen_q == b->seqlen_q && a->seqlen_k == b->seqlen_k;
}

static int log2i(int x) {
    int r = 0;
    while (x > 1) { x >>= 1; r++; }
    return r;
}

/* Distance in log space: sequence lengths weigh most, the amount of parallel work (batch x heads)
 * half, and the GQA group a quarter. */
static double distance(const fat_problem *a, const fat_problem *b) {
    double d = fabs(log((double)a->seqlen_q / b->seqlen_q)) + fabs(log((double)a->seqlen_k / b->seqlen_k));
    d += 0.5 * fabs(log((double)a->batch * a->heads_q / ((double)b->batch * b->heads_q)));
    d += 0.25 * fabs(log((double)(a->heads_q / a->heads_kv) / (double)(b->heads_q / b->heads_kv)));
    return d;
}

/* Whether a decoding row's configuration fits a decoding step: the same batch x heads_kv. A
 * decoding step's grid is batch x heads_kv CTAs times the split count its configuration fixes (in
 * clusters of that size), so a row tuned for another batch starves or floods the SMs. On the H200
 * (2026-12-04) a database tuned on bench/decode.lua and decode-small.lua gave 2 x 64k keys the
 * 16-sequence row (16 CTAs: 1.22 TB/s against the default's 3.89, call 63), and within a factor of
 * 2 still 0.80-0.89x the default (2 x 64k from 1 sequence's row: 8-CTA clusters, 3.10 TB/s;
 * 8 x 16k from 16 sequences': 3.50 against 3.95; call 64). */
static int decoding_neighbour(const fat_problem *a, const fat_problem *b) {
    return (long long)a->batch * a->heads_kv == (long long)b->batch * b->heads_kv;
}

/* The lookup order, one pass for exact, bucket and nearest, one for the device level. See
 * dispatch.h. */
fat_level dispatch_choose(const dispatch_row *rows, int n, const fat_problem *p, int decoding_rows,
                          int (*usable)(const dispatch_row *r, void *ud), void *ud, int *row) {
    int bucket = -1, nearest = -1;
    double db = 0, dn = 0;
    for (int i = 0; i < n; i++) {
        const dispatch_row *r = &rows[i];
        if (!same_kind(&r->prob, p, decoding_rows) || (usable && !usable(r, ud))) continue;
        if (same_problem(&r->prob, p, decoding_rows)) { *row = i; return FAT_LEVEL_EXACT; }
        if (dispatch_decoding(p, decoding_rows) && !decoding_neighbour(&r->prob, p)) continue;
        double d = distance(&r->prob, p);
        if (log2i(r->prob.seqlen_q) == log2i(p->seqlen_q) && log2i(r->prob.seqlen_k) == log2i(p->seqlen_k) &&
            (bucket < 0 || d < db)) { bucket = i; db = d; }
        if (nearest < 0 || d < dn) { nearest = i; dn = d; }
    }
    if (bucket >= 0) { *row = bucket; return FAT_LEVEL_BUCKET; }
    if (nearest >= 0) { *row = nearest; return FAT_LEVEL_NEAREST; }
    /* The configuration that won most often at this dtype, head_dim and regime; ties to the earlier
     * row. Not for a decoding step: decode's default adapts its splits, tiles and L2 policy to the
     * batch, the page size and the bytes read, which another problem's winner does not (16-key
     * pages given the contiguous cache's most frequent winner: 0.31-0.82x the default, call 63). */
    const int dec = dispatch_decoding(p, decoding_rows);
    if (dec) { *row = -1; return FAT_LEVEL_DEFAULT; }
    int best = -1, best_count = 0;
    for (int i = 0; i < n; i++) {
        const dispatch_row *r = &rows[i];
        if (r->prob.dtype != p->dtype || r->prob.head_dim != p->head_dim ||
            dispatch_decoding(&r->prob, decoding_rows) != dec || (usable && !usable(r, ud)))
            continue;
        int count = 0;
        for (int j = 0; j < n; j++)
            count += rows[j].prob.dtype == p->dtype && rows[j].prob.head_dim == p->head_dim &&
                     dispatch_decoding(&rows[j].prob, decoding_rows) == dec &&
                     strcmp(rows[j].family, r->family) == 0 && strcmp(rows[j].params, r->params) == 0;
        if (count > best_count) { best = i; best_count = count; }
    }
    *row = best;
    return best >= 0 ? FAT_LEVEL_DEVICE : FAT_LEVEL_DEFAULT;
}

/* A call's problem: its sizes and the feature bits its arguments switch on. See dispatch.h. */
void dispatch_problem(const fat_attn_args *a, fat_problem *p) {
    memset(p, 0, sizeof *p);
    p->dtype = a->dtype;
    p->head_dim = a->head_dim;
    p->causal = a->causal != 0;
    if (a->window_left >= 0 || (a->window_right >= 0 && !a->causal)) p->features |= FAT_FEAT_WINDOW;
    if (a->softcap > 0) p->features |= FAT_FEAT_SOFTCAP;
    if (a->cu_seqlens_q) p->features |= FAT_FEAT_VARLEN;
    if (a->block_table) p->features |= FAT_FEAT_PAGED | ((unsigned)a->page_size << FAT_FEAT_PAGE_SHIFT);
    if (a->cache_seqlens) p->features |= FAT_FEAT_CACHE;
    if (a->k_new) p->features |= FAT_FEAT_APPEND;
    p->batch = a->batch;
    p->heads_q = a->heads_q;
    p->heads_kv = a->heads_kv;
    p->seqlen_q = a->seqlen_q;
    p->seqlen_k = a->seqlen_k;
}
