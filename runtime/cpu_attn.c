/*
 * cpu_attn.c: attention on the host, in the three loop orders the templates teach.
 *
 * It is the reference every GPU test compares against and the baseline `fatune` shows beside the
 * kernels, so it is written to be read: one function per loop order, each step named as in the
 * FlashAttention papers. The orders share their arithmetic (scores, the online-softmax update, the
 * final normalisation) and differ in what they keep between steps and in which loop is outside:
 *
 *   naive     per query row: the whole score row S = scale * q Kᵀ, its max, exp, sum, then P V.
 *   flash_v1  KV blocks outer, Q blocks inner; O, m, l of every row of the head live across the
 *             outer loop (in HBM on a GPU) and are read, rescaled and written back for each KV block.
 *   flash_v2  Q blocks outer, KV blocks inner; O, m, l of the block stay local (registers on a
 *             GPU), 1/l is applied once at the end, KV blocks no row of the block can see are skipped.
 *
 * Numbers: every element is converted to float on load into rows padded with zeros to a multiple of
 * 8, so the inner loops have no tail and the compiler can keep them in vector registers; scores,
 * softmax and the output accumulate in float; the output is rounded once to the input dtype. The
 * keys a query row sees always form one interval (causal and window both bound j around the
 * bottom-right diagonal), so masking is done by loop bounds and masked scores are never computed.
 *
 * A KV cache call (cache_seqlens, block_table, k_new: fatune.h) is read the same way once
 * cache_prepare has checked the lengths and the block table on the host, appended k_new and v_new
 * into the cache and, for a paged cache, gathered each sequence's keys and values into contiguous
 * rows: the reference the paged kernels are tested against is attention on the gathered cache.
 *
 * Threads take work items (batch, head, query block; for flash_v1 (batch, head)) from an atomic
 * counter. A row's arithmetic depends only on the tile sizes, never on the thread that runs it, so
 * any thread count gives bitwise identical results.
 */
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fatune.h"
#include "half.h"
#include "status.h"

#define ROW_ALIGN     8     /* floats: converted rows are padded to a multiple of this */
#define NAIVE_ROWS    64    /* query rows per work item of the naive order */
#define DEFAULT_BLOCK 64
#define MAX_BLOCK     4096
#define MAX_THREADS   1024  /* more never helps on one host; each thread has its own scratch */

/* One (sequence, query head) pair resolved to host pointers: what every loop order works on. */
struct head {
    const char *q, *k, *v;          /* row 0 of this sequence and head (k, v: its KV head) */
    char *o;
    int64_t q_rs, k_rs, v_rs, o_rs; /* row (sequence) strides in bytes */
    float *lse;                     /* lse of row 0, or NULL */
    int64_t sq, sk;                 /* this sequence's lengths */
};

/* What one call shares between its threads. Read-only once they start, except next. */
struct job {
    const fat_attn_args *a;
    fat_cpu_algo algo;
    float scale, softcap;
    size_t d, dp;                   /* head_dim, and head_dim padded to ROW_ALIGN */
    size_t esize;                   /* bytes per input element */
    int64_t bm, bn;                 /* query rows per block, keys per block */
    int64_t item_rows;              /* query rows per work item */
    int64_t qblocks;                /* work items per (batch, head) */
    int64_t nitems;
    _Atomic int64_t next;           /* the next unclaimed work item */
    /* a KV cache call (cache_seqlens, block_table, k_new): keys per sequence, and a paged cache's
     * keys gathered into contiguous rows [rows of sequence b from koff[b]][heads_kv][head_dim] */
    const int64_t *sk_of;           /* NULL: seqlen_k (or cu_seqlens) */
    const char *gk, *gv;            /* NULL: k and v as given */
    const int64_t *koff;
};

/* One thread's scratch, carved from one allocation made before any thread starts, so that running
 * out of memory is reported before any work is done. */
struct scratch {
    float *q;                       /* converted Q rows */
    float *k, *v;                   /* converted K and V rows */
    float *s;                       /* scores (then probabilities) of one row */
    float *acc;                     /* unnormalised output rows */
    float *m, *l;                   /* running max and running sum of exp, per row */
};

struct worker {
    struct job *job;
    struct scratch sc;
    float *mem;
    pthread_t tid;
    int started;
};

/* ---- arithmetic shared by the three orders ---- */

/*
 * x · y over n floats, n a multiple of 8. Eight partial sums in a fixed order: the compiler keeps
 * them in vector registers without being allowed to reassociate, and the result is the same
 * whichever thread or tile computes it.
 */
static float dot(const float *x, const float *y, size_t n)
{
    float part[8] = { 0 };

    for (size_t i = 0; i < n; i += 8)
        for (int j = 0; j < 8; j++)
            part[j] += x[i + j] * y[i + j];
    return ((part[0] + part[4]) + (part[1] + part[5])) + ((part[2] + part[6]) + (part[3] + part[7]));
}

/* y += alpha * x over n floats, n a multiple of 8; restrict lets it vectorise without a check. */
static void axpy(float *restrict y, float alpha, const float *restrict x, size_t n)
{
    for (size_t i = 0; i < n; i += 8)
        for (int j = 0; j < 8; j++)
            y[i + j] += alpha * x[i + j];
}

/* y *= alpha over n floats, n a multiple of 8. */
static void scale_row(float *y, float alpha, size_t n)
{
    for (size_t i = 0; i < n; i += 8)
        for (int j = 0; j < 8; j++)
            y[i + j] *= alpha;
}

/* One attention score: scale * q·k, then the soft cap softcap * tanh(s / softcap) when it is on. */
static float score(const struct job *w, const float *q, const float *k)
{
    float s = dot(q, k, w->dp) * w->scale;

    if (w->softcap > 0.0f)
        s = w->softcap * tanhf(s / w->softcap);
    return s;
}

/*
 * The keys query row i sees, as the interval [*lo, *hi] (empty when *lo > *hi). Masks are aligned
 * bottom-right: query i sits on the diagonal key i + sk - sq; causal allows keys up to it, the
 * window from window_left before it to window_right after it. Both bounds grow with i, which the
 * block skipping relies on.
 */
static void visible(const fat_attn_args *a, const struct head *hd, int64_t i, int64_t *lo, int64_t *hi)
{
    int64_t diag = i + hd->sk - hd->sq;

    *lo = 0;
    *hi = hd->sk - 1;
    if (a->causal && diag < *hi)
        *hi = diag;
    if (a->window_right >= 0 && diag + a->window_right < *hi)
        *hi = diag + a->window_right;
    if (a->window_left >= 0 && diag - a->window_left > *lo)
        *lo = diag - a->window_left;
}

/* Converts rows [r0, r0 + n) of a strided tensor to float rows of dp floats, zero padded. */
static void load_rows(const struct job *w, const char *base, int64_t row_stride, int64_t r0,
                      int64_t n, float *dst)
{
    for (int64_t r = 0; r < n; r++) {
        float *row = dst + (size_t)r * w->dp;

        half_decode(w->a->dtype, base + (r0 + r) * row_stride, row, w->d);
        for (size_t c = w->d; c < w->dp; c++)
            row[c] = 0.0f;
    }
}

static void init_rows(const struct job *w, int64_t n, float *acc, float *m, float *l)
{
    memset(acc, 0, (size_t)n * w->dp * sizeof *acc);
    for (int64_t r = 0; r < n; r++) {
        m[r] = -INFINITY;
        l[r] = 0.0f;
    }
}

/*
 * The last step of every order for query row i: O = acc / l rounded to the input dtype and
 * lse = m + log(l). A row that saw no key has l = 0 (any visible key adds exp(0) = 1 for the
 * maximum) and gets zeros and lse = -inf instead of 0/0. acc is overwritten.
 */
static void finish_row(const struct job *w, const struct head *hd, int64_t i, float *acc, float m, float l)
{
    if (l > 0.0f) {
        scale_row(acc, 1.0f / l, w->dp);
        if (hd->lse)
            hd->lse[i] = m + logf(l);
    } else {
        memset(acc, 0, w->d * sizeof *acc);
        if (hd->lse)
            hd->lse[i] = -INFINITY;
    }
    half_encode(w->a->dtype, acc, hd->o + i * hd->o_rs, w->d);
}

/*
 * Online softmax: one query row q against n >= 1 visible keys of a converted tile (k, v point at
 * the first of them). *m, *l and acc are the row's running max, running sum of exp and
 * unnormalised output. s is scratch for n scores.
 */
static void online_update(const struct job *w, const float *q, const float *k, const float *v,
                          int64_t n, float *s, float *m, float *l, float *acc)
{
    size_t dp = w->dp;
    float tile_max = -INFINITY, m_new, alpha, sum = 0.0f;

    /* 1. scores of this tile, and their max */
    for (int64_t t = 0; t < n; t++) {
        s[t] = score(w, q, k + (size_t)t * dp);
        if (s[t] > tile_max)
            tile_max = s[t];
    }
    /* 2. the new running max; alpha = exp(m_old - m_new) moves what was summed against the old
     *    max onto the new one (0 on the row's first tile: exp(-inf)) */
    m_new = *m > tile_max ? *m : tile_max;
    alpha = expf(*m - m_new);
    /* 3. P = exp(S - m_new) and its row sum */
    for (int64_t t = 0; t < n; t++) {
        s[t] = expf(s[t] - m_new);
        sum += s[t];
    }
    /* 4. rescale the old sum and accumulator, then add this tile: acc = alpha * acc + P V */
    *l = *l * alpha + sum;
    if (alpha != 1.0f)
        scale_row(acc, alpha, dp);
    for (int64_t t = 0; t < n; t++)
        axpy(acc, s[t], v + (size_t)t * dp, dp);
    *m = m_new;
}

/* Narrows the keys [lo, hi] of a row to the tile [j0, j1); 0 when nothing of it is left. */
static int clip(int64_t j0, int64_t j1, int64_t *lo, int64_t *hi)
{
    if (*lo < j0)
        *lo = j0;
    if (*hi > j1 - 1)
        *hi = j1 - 1;
    return *lo <= *hi;
}

/* ---- the three loop orders ---- */

/*
 * Naive: query rows [i0, i1) of one head, one row at a time, the score row materialised in full.
 * K and V of the head are converted once per work item.
 */
static void naive_rows(const struct job *w, struct scratch *sc, const struct head *hd, int64_t i0, int64_t i1)
{
    size_t dp = w->dp;
    int64_t lo, hi;

    load_rows(w, hd->k, hd->k_rs, 0, hd->sk, sc->k);
    load_rows(w, hd->v, hd->v_rs, 0, hd->sk, sc->v);
    for (int64_t i = i0; i < i1; i++) {
        float m = -INFINITY, l = 0.0f;

        memset(sc->acc, 0, dp * sizeof *sc->acc);
        visible(w->a, hd, i, &lo, &hi);
        if (lo <= hi) {
            load_rows(w, hd->q, hd->q_rs, i, 1, sc->q);
            /* 1. the score row S[j] = scale * q·k_j (soft-capped) for every visible key */
            for (int64_t j = lo; j <= hi; j++)
                sc->s[j] = score(w, sc->q, sc->k + (size_t)j * dp);
            /* 2. its max, so that no exp below can overflow */
            for (int64_t j = lo; j <= hi; j++)
                if (sc->s[j] > m)
                    m = sc->s[j];
            /* 3. P = exp(S - m) and l = sum P */
            for (int64_t j = lo; j <= hi; j++) {
                sc->s[j] = expf(sc->s[j] - m);
                l += sc->s[j];
            }
            /* 4. O = P V, normalised by 1/l in finish_row */
            for (int64_t j = lo; j <= hi; j++)
                axpy(sc->acc, sc->s[j], sc->v + (size_t)j * dp, dp);
        }
        finish_row(w, hd, i, sc->acc, m, l);
    }
}

/*
 * FlashAttention-1 order for one whole head: each K/V block is read once (outer loop) and met by
 * every Q block that sees it (inner loop). The price is that Q and the state O, m, l of every row
 * must be fetched and stored again for each K/V block; here O is an fp32 scratch array of the
 * whole head, normalised and converted only after the last block.
 */
static void flash_v1_head(const struct job *w, struct scratch *sc, const struct head *hd)
{
    size_t dp = w->dp;
    int64_t lo, hi, first_lo, last_hi;

    init_rows(w, hd->sq, sc->acc, sc->m, sc->l);
    /* outer loop: K/V blocks */
    for (int64_t j0 = 0; j0 < hd->sk; j0 += w->bn) {
        int64_t j1 = j0 + w->bn < hd->sk ? j0 + w->bn : hd->sk;

        load_rows(w, hd->k, hd->k_rs, j0, j1 - j0, sc->k);
        load_rows(w, hd->v, hd->v_rs, j0, j1 - j0, sc->v);
        /* inner loop: Q blocks; one whose rows all miss this K/V block is skipped */
        for (int64_t i0 = 0; i0 < hd->sq; i0 += w->bm) {
            int64_t i1 = i0 + w->bm < hd->sq ? i0 + w->bm : hd->sq;

            visible(w->a, hd, i0, &first_lo, &hi);
            visible(w->a, hd, i1 - 1, &lo, &last_hi);
            if (first_lo >= j1 || last_hi < j0)
                continue;
            load_rows(w, hd->q, hd->q_rs, i0, i1 - i0, sc->q);
            for (int64_t i = i0; i < i1; i++) {
                visible(w->a, hd, i, &lo, &hi);
                if (!clip(j0, j1, &lo, &hi))
                    continue;
                online_update(w, sc->q + (size_t)(i - i0) * dp, sc->k + (size_t)(lo - j0) * dp,
                              sc->v + (size_t)(lo - j0) * dp, hi - lo + 1, sc->s,
                              &sc->m[i], &sc->l[i], sc->acc + (size_t)i * dp);
            }
        }
    }
    /* after the last K/V block: O = acc / l, lse = m + log l */
    for (int64_t i = 0; i < hd->sq; i++)
        finish_row(w, hd, i, sc->acc + (size_t)i * dp, sc->m[i], sc->l[i]);
}

/*
 * FlashAttention-2 order for query rows [i0, i1) of one head: the Q block is loaded once and
 * stays, K/V blocks stream past it, O, m and l stay local to the block and O is divided by l once.
 */
static void flash_v2_block(const struct job *w, struct scratch *sc, const struct head *hd, int64_t i0, int64_t i1)
{
    size_t dp = w->dp;
    int64_t rows = i1 - i0, lo, hi, first_lo, last_hi;

    load_rows(w, hd->q, hd->q_rs, i0, rows, sc->q);
    init_rows(w, rows, sc->acc, sc->m, sc->l);
    /* the keys any row of the block sees: from the first row's lo to the last row's hi, since
     * both grow with the row. K/V blocks outside are skipped: under causal, every block right of
     * the diagonal; under a window, everything outside the band. */
    visible(w->a, hd, i0, &first_lo, &hi);
    visible(w->a, hd, i1 - 1, &lo, &last_hi);
    for (int64_t j0 = first_lo / w->bn * w->bn; j0 <= last_hi; j0 += w->bn) {
        int64_t j1 = j0 + w->bn < hd->sk ? j0 + w->bn : hd->sk;

        /* each K/V block is converted to float once for all rows of the Q block */
        load_rows(w, hd->k, hd->k_rs, j0, j1 - j0, sc->k);
        load_rows(w, hd->v, hd->v_rs, j0, j1 - j0, sc->v);
        for (int64_t r = 0; r < rows; r++) {
            visible(w->a, hd, i0 + r, &lo, &hi);
            if (!clip(j0, j1, &lo, &hi))
                continue;
            online_update(w, sc->q + (size_t)r * dp, sc->k + (size_t)(lo - j0) * dp,
                          sc->v + (size_t)(lo - j0) * dp, hi - lo + 1, sc->s,
                          &sc->m[r], &sc->l[r], sc->acc + (size_t)r * dp);
        }
    }
    /* once per row, after the KV loop: O = acc / l, lse = m + log l */
    for (int64_t r = 0; r < rows; r++)
        finish_row(w, hd, i0 + r, sc->acc + (size_t)r * dp, sc->m[r], sc->l[r]);
}

/* ---- work items and threads ---- */

/* Points hd at sequence b, query head h: varlen sequences start at cu_seqlens rows and ignore the
 * batch stride; query head h reads KV head h / (heads_q / heads_kv). */
static void resolve_head(const struct job *w, int64_t b, int64_t h, struct head *hd)
{
    const fat_attn_args *a = w->a;
    int64_t hk = h / (a->heads_q / a->heads_kv);
    int64_t bq = b, bk = b, q0 = 0, k0 = 0;
    int64_t es = (int64_t)w->esize;

    hd->sq = a->seqlen_q;
    hd->sk = a->seqlen_k;
    if (a->cu_seqlens_q) {
        bq = bk = 0;
        q0 = a->cu_seqlens_q[b];
        k0 = a->cu_seqlens_k[b];
        hd->sq = a->cu_seqlens_q[b + 1] - q0;
        hd->sk = a->cu_seqlens_k[b + 1] - k0;
    }
    hd->q = (const char *)a->q + (bq * a->q_stride[0] + q0 * a->q_stride[1] + h * a->q_stride[2]) * es;
    hd->k = (const char *)a->k + (bk * a->k_stride[0] + k0 * a->k_stride[1] + hk * a->k_stride[2]) * es;
    hd->v = (const char *)a->v + (bk * a->v_stride[0] + k0 * a->v_stride[1] + hk * a->v_stride[2]) * es;
    hd->o = (char *)a->o + (bq * a->o_stride[0] + q0 * a->o_stride[1] + h * a->o_stride[2]) * es;
    hd->q_rs = a->q_stride[1] * es;
    hd->k_rs = a->k_stride[1] * es;
    hd->v_rs = a->v_stride[1] * es;
    hd->o_rs = a->o_stride[1] * es;
    if (w->sk_of)
        hd->sk = w->sk_of[b];
    if (w->gk) {
        int64_t row = (int64_t)a->heads_kv * a->head_dim * es;
        hd->k = w->gk + w->koff[b] * row + hk * a->head_dim * es;
        hd->v = w->gv + w->koff[b] * row + hk * a->head_dim * es;
        hd->k_rs = hd->v_rs = row;
    }
    hd->lse = NULL;
    if (a->lse && a->cu_seqlens_q)
        hd->lse = a->lse + h * (int64_t)a->cu_seqlens_q[a->batch] + q0;
    else if (a->lse)
        hd->lse = a->lse + (b * a->heads_q + h) * (int64_t)a->seqlen_q;
}

/* Work item -> (batch, head, query block), batch outermost so that the query heads of one KV
 * head run close together in time and share its K/V in cache. */
static void run_item(const struct job *w, struct scratch *sc, int64_t item)
{
    int64_t qb = item % w->qblocks, bh = item / w->qblocks;
    int64_t i0 = qb * w->item_rows, i1;
    struct head hd;

    resolve_head(w, bh / w->a->heads_q, bh % w->a->heads_q, &hd);
    if (i0 >= hd.sq)
        return;
    i1 = i0 + w->item_rows < hd.sq ? i0 + w->item_rows : hd.sq;
    switch (w->algo) {
    case FAT_CPU_NAIVE:
        naive_rows(w, sc, &hd, i0, i1);
        break;
    case FAT_CPU_FLASH_V1:
        flash_v1_head(w, sc, &hd);
        break;
    case FAT_CPU_FLASH_V2:
        flash_v2_block(w, sc, &hd, i0, i1);
        break;
    }
}

static void *work(void *arg)
{
    struct worker *wk = arg;
    struct job *w = wk->job;

    /* relaxed: the counter only hands out distinct items; the output is published by the join */
    for (;;) {
        int64_t item = atomic_fetch_add_explicit(&w->next, 1, memory_order_relaxed);

        if (item >= w->nitems)
            break;
        run_item(w, &wk->sc, item);
    }
    return NULL;
}

/* ---- setup ---- */

static fat_status check_opts(const fat_cpu_opts *o)
{
    if (o->algo != FAT_CPU_NAIVE && o->algo != FAT_CPU_FLASH_V1 && o->algo != FAT_CPU_FLASH_V2) {
        fat_set_error("algo: %d is not a CPU algorithm (naive, flash_v1, flash_v2)", (int)o->algo);
        return FAT_ERR_INVALID;
    }
    if (o->block_m < 0 || o->block_m > MAX_BLOCK) {
        fat_set_error("block_m: %d is not in 0..%d", o->block_m, MAX_BLOCK);
        return FAT_ERR_INVALID;
    }
    if (o->block_n < 0 || o->block_n > MAX_BLOCK) {
        fat_set_error("block_n: %d is not in 0..%d", o->block_n, MAX_BLOCK);
        return FAT_ERR_INVALID;
    }
    if (o->threads < 0) {
        fat_set_error("threads: %d is negative (0 uses every core)", o->threads);
        return FAT_ERR_INVALID;
    }
    return FAT_OK;
}

/* The offsets of one cu_seqlens array: starting at 0, never decreasing, no sequence longer than
 * the maximum (the scratch is sized by it). */
static fat_status check_cu(const char *name, const int32_t *cu, int batch, int max_len)
{
    if (cu[0] != 0) {
        fat_set_error("%s: starts at %d, must start at 0", name, (int)cu[0]);
        return FAT_ERR_INVALID;
    }
    for (int b = 0; b < batch; b++) {
        int64_t len = (int64_t)cu[b + 1] - cu[b];

        if (len < 0 || len > max_len) {
            fat_set_error("%s: sequence %d has length %" PRId64 ", not in 0..%d", name, b, len, max_len);
            return FAT_ERR_INVALID;
        }
    }
    return FAT_OK;
}

/* How one thread's scratch is divided, per loop order (in rows of dp floats, or floats). */
struct scratch_shape {
    size_t q_rows, kv_rows, acc_rows;   /* rows of dp floats */
    size_t s_len;                       /* floats of scores; m and l have acc_rows floats each */
};

static void shape_scratch(const struct job *w, struct scratch_shape *sh)
{
    const fat_attn_args *a = w->a;

    sh->q_rows = (size_t)w->bm;
    sh->kv_rows = (size_t)w->bn;
    sh->acc_rows = (size_t)w->bm;
    sh->s_len = (size_t)w->bn;
    if (w->algo == FAT_CPU_NAIVE) {
        sh->q_rows = 1;
        sh->kv_rows = (size_t)a->seqlen_k;  /* all of K and V of one head */
        sh->acc_rows = 1;
        sh->s_len = (size_t)a->seqlen_k;    /* one full score row */
    } else if (w->algo == FAT_CPU_FLASH_V1) {
        sh->acc_rows = (size_t)a->seqlen_q; /* O, m, l of the whole head */
    }
}

/* *acc += x * y; -1 (and *acc undefined) when that overflows size_t. */
static int add_product(size_t *acc, size_t x, size_t y)
{
    if (y != 0 && x > SIZE_MAX / y)
        return -1;
    if (x * y > SIZE_MAX - *acc)
        return -1;
    *acc += x * y;
    return 0;
}

/* The bytes of scratch each thread needs; -1 when they cannot even be counted in a size_t. */
static int scratch_bytes(const struct job *w, size_t *bytes)
{
    struct scratch_shape sh;
    size_t floats = 0;

    shape_scratch(w, &sh);
    if (add_product(&floats, sh.q_rows, w->dp) ||
        add_product(&floats, sh.kv_rows, w->dp) ||      /* K */
        add_product(&floats, sh.kv_rows, w->dp) ||      /* V */
        add_product(&floats, sh.acc_rows, w->dp) ||
        add_product(&floats, sh.acc_rows, 2) ||
        add_product(&floats, sh.s_len, 1))
        return -1;
    *bytes = 0;
    return add_product(bytes, floats, sizeof(float));
}

static void carve(const struct job *w, float *mem, struct scratch *sc)
{
    struct scratch_shape sh;

    shape_scratch(w, &sh);
    sc->q = mem;
    sc->k = sc->q + sh.q_rows * w->dp;
    sc->v = sc->k + sh.kv_rows * w->dp;
    sc->acc = sc->v + sh.kv_rows * w->dp;
    sc->s = sc->acc + sh.acc_rows * w->dp;
    sc->m = sc->s + sh.s_len;
    sc->l = sc->m + sh.acc_rows;
}

static int pick_threads(const fat_cpu_opts *o, int64_t nitems)
{
    int64_t n = o->threads;

    if (n == 0) {
        long cores = sysconf(_SC_NPROCESSORS_ONLN);
        n = cores > 0 ? cores : 1;
    }
    if (n > MAX_THREADS)
        n = MAX_THREADS;
    if (n > nitems)
        n = nitems;
    return (int)n;
}

/* Fills *w for one call. FAT_ERR_INVALID when the work items cannot be counted in int64. */
static fat_status setup_job(const fat_attn_args *a, const fat_cpu_opts *o, struct job *w)
{
    w->a = a;
    w->algo = o->algo;
    w->scale = a->scale != 0.0f ? a->scale : 1.0f / sqrtf((float)a->head_dim);
    w->softcap = a->softcap;
    w->d = (size_t)a->head_dim;
    w->dp = (w->d + ROW_ALIGN - 1) / ROW_ALIGN * ROW_ALIGN;
    w->esize = a->dtype == FAT_FP32 ? 4 : 2;
    w->bm = o->block_m ? o->block_m : DEFAULT_BLOCK;
    w->bn = o->block_n ? o->block_n : DEFAULT_BLOCK;
    /* query rows per work item: a Q block; naive takes fixed slices of rows; flash_v1 walks a
     * whole head in one item, because its outer loop runs over K/V */
    switch (w->algo) {
    case FAT_CPU_NAIVE:
        w->bm = NAIVE_ROWS;
        w->item_rows = NAIVE_ROWS;
        break;
    case FAT_CPU_FLASH_V1:
        w->item_rows = a->seqlen_q;
        break;
    case FAT_CPU_FLASH_V2:
        w->item_rows = w->bm;
        break;
    }
    w->qblocks = (a->seqlen_q + w->item_rows - 1) / w->item_rows;
    if ((int64_t)a->batch * a->heads_q > INT64_MAX / w->qblocks) {
        fat_set_error("batch, heads_q, seqlen_q: %d * %d * %d rows are more than one call can count",
                      a->batch, a->heads_q, a->seqlen_q);
        return FAT_ERR_INVALID;
    }
    w->nitems = (int64_t)a->batch * a->heads_q * w->qblocks;
    atomic_init(&w->next, 0);
    return FAT_OK;
}

/* ---- a KV cache: lengths, the append, a paged cache gathered ---- */

struct cache {
    int64_t *sk;                    /* [batch] keys each sequence attends to */
    int64_t *koff;                  /* [batch + 1] first gathered row of each sequence (paged) */
    char *gk, *gv;                  /* gathered keys and values (paged) */
};

static void cache_free(struct cache *c)
{
    free(c->sk);
    free(c->koff);
    free(c->gk);
    free(c->gv);
    memset(c, 0, sizeof *c);
}

/* Row j of sequence b, KV head h, in cache base (k or v with its strides): contiguous, or the
 * page the block table gives. */
static char *cache_row(const fat_attn_args *a, const void *base, const int64_t st[3], int64_t b, int64_t j,
                       int64_t h, size_t es)
{
    int64_t outer = b, row = j;

    if (a->block_table) {
        outer = a->block_table[b * a->block_table_stride + j / a->page_size];
        row = j % a->page_size;
    }
    return (char *)(uintptr_t)base + (outer * st[0] + row * st[1] + h * st[2]) * (int64_t)es;
}

/*
 * Reads cache_seqlens and the block table on the host, checks them (nothing is written before
 * they pass: FAT_ERR_INVALID names the entry), allocates what a paged cache is gathered into
 * (FAT_ERR_NOMEM before any write), then appends k_new and v_new into the cache and gathers a paged
 * cache's keys and values into contiguous rows that the loop orders read as they read k and v.
 */
static fat_status cache_prepare(const fat_attn_args *a, size_t es, struct cache *c)
{
    int64_t nb = a->batch, rows = 0, row_bytes = (int64_t)a->heads_kv * a->head_dim * (int64_t)es;
    size_t rb = (size_t)a->head_dim * es;

    memset(c, 0, sizeof *c);
    if (!(c->sk = malloc((size_t)nb * sizeof *c->sk)) || !(c->koff = malloc((size_t)(nb + 1) * sizeof *c->koff))) {
        cache_free(c);
        fat_set_error("fat_attn_cpu: out of memory for the KV cache's %d sequence lengths", a->batch);
        return FAT_ERR_NOMEM;
    }
    for (int64_t b = 0; b < nb; b++) {
        int64_t have = a->cache_seqlens ? a->cache_seqlens[b] : a->seqlen_k;
        int64_t n = have + (a->k_new ? a->seqlen_new : 0);
        if (have < 0 || n > a->seqlen_k) {
            if (have < 0)
                fat_set_error("cache_seqlens[%" PRId64 "]: %" PRId64 " is negative", b, have);
            else
                fat_set_error("cache_seqlens[%" PRId64 "]: %" PRId64 " keys%s do not fit seqlen_k %d (%s)", b, have,
                              a->k_new ? " + seqlen_new" : "", a->seqlen_k,
                              a->block_table ? "the keys a sequence may hold in its pages" : "the cache's rows");
            cache_free(c);
            return FAT_ERR_INVALID;
        }
        c->sk[b] = n;
        c->koff[b] = rows;
        rows += n;
        for (int64_t i = 0; a->block_table && i < (n + a->page_size - 1) / a->page_size; i++) {
            int32_t pg = a->block_table[b * a->block_table_stride + i];
            if (pg < 0 || pg >= a->num_pages) {
                fat_set_error("block_table[%" PRId64 "][%" PRId64 "]: page %d is outside [0, num_pages %d)", b, i, pg,
                              a->num_pages);
                cache_free(c);
                return FAT_ERR_INVALID;
            }
        }
    }
    c->koff[nb] = rows;
    if (a->block_table && rows > 0 &&
        (!(c->gk = malloc((size_t)(rows * row_bytes))) || !(c->gv = malloc((size_t)(rows * row_bytes))))) {
        cache_free(c);
        fat_set_error("fat_attn_cpu: out of memory for the %" PRId64 " keys of the paged cache gathered", rows);
        return FAT_ERR_NOMEM;
    }
    for (int64_t b = 0; a->k_new && b < nb; b++)
        for (int64_t i = 0; i < a->seqlen_new; i++)
            for (int64_t h = 0; h < a->heads_kv; h++) {
                int64_t j = a->cache_seqlens[b] + i;
                const char *kn = (const char *)a->k_new + (b * a->k_new_stride[0] + i * a->k_new_stride[1] +
                                                           h * a->k_new_stride[2]) * (int64_t)es;
                const char *vn = (const char *)a->v_new + (b * a->v_new_stride[0] + i * a->v_new_stride[1] +
                                                           h * a->v_new_stride[2]) * (int64_t)es;
                memcpy(cache_row(a, a->k, a->k_stride, b, j, h, es), kn, rb);
                memcpy(cache_row(a, a->v, a->v_stride, b, j, h, es), vn, rb);
            }
    for (int64_t b = 0; c->gk && b < nb; b++)
        for (int64_t j = 0; j < c->sk[b]; j++)
            for (int64_t h = 0; h < a->heads_kv; h++) {
                int64_t off = (c->koff[b] + j) * row_bytes + h * (int64_t)rb;
                memcpy(c->gk + off, cache_row(a, a->k, a->k_stride, b, j, h, es), rb);
                memcpy(c->gv + off, cache_row(a, a->v, a->v_stride, b, j, h, es), rb);
            }
    return FAT_OK;
}

/*
 * Checks *a (CPU rules), *opts and the cu_seqlens offsets, then runs attention on threads that
 * live only for this call; the caller keeps ownership of every buffer. Returns FAT_OK,
 * FAT_ERR_INVALID (nothing written) or FAT_ERR_NOMEM (nothing written, all scratch freed).
 */
fat_status fat_attn_cpu(const fat_attn_args *a, const fat_cpu_opts *opts)
{
    fat_cpu_opts o = { FAT_CPU_FLASH_V2, 0, 0, 0 };
    struct job job;
    struct worker *wk = NULL;
    struct cache kc = { 0 };
    size_t bytes = 0;
    int nthreads = 0;
    fat_status st;

    if (opts)
        o = *opts;
    if ((st = fat_attn_check(a, 0)) || (st = check_opts(&o)))
        return st;
    if (a->cu_seqlens_q &&
        ((st = check_cu("cu_seqlens_q", a->cu_seqlens_q, a->batch, a->seqlen_q)) ||
         (st = check_cu("cu_seqlens_k", a->cu_seqlens_k, a->batch, a->seqlen_k))))
        return st;
    if ((st = setup_job(a, &o, &job)))
        return st;
    nthreads = pick_threads(&o, job.nitems);
    if (scratch_bytes(&job, &bytes)) {
        fat_set_error("fat_attn_cpu: scratch for head_dim %d and these sequence lengths does not "
                      "fit in memory", a->head_dim);
        return FAT_ERR_NOMEM;
    }
    if ((a->cache_seqlens || a->block_table || a->k_new) && (st = cache_prepare(a, job.esize, &kc)))
        return st;
    job.sk_of = kc.sk;
    job.gk = kc.gk;
    job.gv = kc.gv;
    job.koff = kc.koff;
    wk = calloc((size_t)nthreads, sizeof *wk);
    if (!wk) {
        st = FAT_ERR_NOMEM;
        goto out;
    }
    for (int t = 0; t < nthreads; t++) {
        wk[t].job = &job;
        wk[t].mem = malloc(bytes);
        if (!wk[t].mem) {
            st = FAT_ERR_NOMEM;
            goto out;
        }
        carve(&job, wk[t].mem, &wk[t].sc);
    }
    /* a thread that cannot be created is not an error: the items it would have taken go to the
     * others, and the calling thread always works too */
    for (int t = 1; t < nthreads; t++)
        wk[t].started = pthread_create(&wk[t].tid, NULL, work, &wk[t]) == 0;
    work(&wk[0]);
    for (int t = 1; t < nthreads; t++)
        if (wk[t].started)
            pthread_join(wk[t].tid, NULL);
out:
    if (st == FAT_ERR_NOMEM)
        fat_set_error("fat_attn_cpu: out of memory for %d threads' scratch of %zu bytes each",
                      nthreads, bytes);
    if (wk)
        for (int t = 0; t < nthreads; t++)
            free(wk[t].mem);
    free(wk);
    cache_free(&kc);
    return st;
}
