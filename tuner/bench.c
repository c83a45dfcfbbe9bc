/*
 * bench.c: instantiating a problem on the GPU, checking a kernel's output and timing it.
 *
 * Inputs are fresh random values (never zeros: they hide unwritten outputs); the output is poisoned
 * with NaN and fenced with guard bytes, so an element not written or a write out of bounds shows.
 * The SM clock a trial ran at comes from NVML, opened with dlopen like the driver.
 */
#include "bench.h"
#include "half.h"
#include "status.h"

#include <dlfcn.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t splitmix(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Roughly normal values (sum of four uniforms), scaled to unit variance. */
static void fill_random(fat_dtype dt, void *dst, size_t n, uint64_t *seed) {
    float *tmp = malloc(4096 * sizeof *tmp);
    for (size_t i = 0; i < n; i += 4096) {
        size_t m = n - i < 4096 ? n - i : 4096;
        for (size_t j = 0; j < m; j++) {
            double s = 0;
            for (int r = 0; r < 4; r++) s += (double)(splitmix(seed) >> 11) / 9007199254740992.0;
            tmp[j] = (float)((s - 2.0) * 1.7320508);
        }
        half_encode(dt, tmp, (char *)dst + i * 2, m);
    }
    free(tmp);
}

/* n random values at dst on the device: one block of 2^20 made on the host, then doubled in place
 * on the device (copies of what is already there) until n are written. */
static fat_status fill_repeated(fat_dtype dt, CUdeviceptr dst, size_t n, uint64_t *seed) {
    enum { BLOCK = 1 << 20 };
    fat_status st = FAT_OK;
    size_t first = n < BLOCK ? n : BLOCK;
    void *h = malloc(first * 2);
    if (!h) { fat_set_error("out of memory"); return FAT_ERR_NOMEM; }
    fill_random(dt, h, first, seed);
    CU_CHECK(MemcpyHtoD(dst, h, first * 2));
    for (size_t done = first; done < n;) {
        size_t m = done < n - done ? done : n - done;
        CU_CHECK(MemcpyDtoD(dst + done * 2, dst, m * 2));
        done += m;
    }
    /* the copies run on the legacy stream; the timing runs on the worker's own non-blocking one */
    CU_CHECK(CtxSynchronize());
out:
    free(h);
    return st;
}

/* Strides for rows of `heads` heads over `seq` positions, in the layout asked for. */
static void strides(const bench_layout *lay, int seq, int heads, int d, int64_t st[3]) {
    int64_t row = d + lay->pad;
    if (lay->bhsd) { st[1] = row; st[2] = (int64_t)seq * row; st[0] = (int64_t)heads * st[2]; }
    else { st[2] = row; st[1] = (int64_t)heads * row; st[0] = (int64_t)seq * st[1]; }
}

void bench_case_free(bench_case *c) {
    if (!c) return;
    CUdeviceptr m[] = { c->mem_q, c->mem_k, c->mem_v, c->mem_o, c->mem_lse, c->mem_cu, c->mem_kn, c->mem_vn, c->mem_aux };
    if (c->arena) cu.CtxSynchronize();          /* its buffers may still be in use */
    for (size_t i = 0; i < sizeof m / sizeof m[0]; i++) if (m[i]) cu.MemFree(m[i]);
    launch_arena_free(c->arena);
    free(c->maps);
    free(c->hq); free(c->hk); free(c->hv); free(c->hcu);
    free(c->hkn); free(c->hvn); free(c->haux);
    free(c);
}

/* A KV cache's host side: cache_seqlens, the block table (a shuffled permutation of the pages), and
 * the fields of the call that say so. rows_k and nb become the cache's rows per outer index and
 * its outer count (pages or sequences). */
static fat_status cache_setup(bench_case *c, const fat_problem *p, const bench_layout *lay, uint64_t *seed,
                              int *rows_k, int *nb) {
    fat_attn_args *a = &c->host;
    int b = p->batch, paged = (p->features & FAT_FEAT_PAGED) != 0;
    int page = FAT_FEAT_PAGE_SIZE(p->features), fresh = (p->features & FAT_FEAT_APPEND) ? p->seqlen_q : 0;
    c->table_stride = paged ? (p->seqlen_k + page - 1) / page : 0;
    c->num_pages = paged ? b * c->table_stride + BENCH_SPARE_PAGES : 0;
    c->haux = calloc((size_t)b + (size_t)b * c->table_stride + 1, sizeof *c->haux);
    if (!c->haux) { fat_set_error("out of memory"); return FAT_ERR_NOMEM; }
    if (p->features & FAT_FEAT_CACHE) {
        for (int i = 0; i < b; i++) {
            int room = p->seqlen_k - fresh;
            int n = lay->cache_lens ? lay->cache_lens[i] : lay->timing_only ? room : room - (int)((i * 2654435761u) % (unsigned)(room / 2 + 1));
            if (n < 0 || n > room) {
                fat_set_error("bench: cache_lens[%d] = %d does not fit %d keys less %d new rows", i, n, p->seqlen_k, fresh);
                return FAT_ERR_INVALID;
            }
            c->haux[i] = n;
        }
        a->cache_seqlens = c->haux;
    }
    if (paged) {
        /* pages 0 .. num_pages-1 shuffled (Fisher-Yates); the first b * stride name the sequences' pages */
        int *perm = malloc((size_t)c->num_pages * sizeof *perm);
        if (!perm) { fat_set_error("out of memory"); return FAT_ERR_NOMEM; }
        for (int i = 0; i < c->num_pages; i++) perm[i] = i;
        for (int i = c->num_pages - 1; i > 0; i--) {
            int j = (int)(splitmix(seed) % (uint64_t)(i + 1)), t = perm[i];
            perm[i] = perm[j];
            perm[j] = t;
        }
        memcpy(c->haux + b, perm, (size_t)b * c->table_stride * sizeof *perm);
        free(perm);
        a->block_table = c->haux + b;
        a->block_table_stride = c->table_stride;
        a->page_size = page;
        a->num_pages = c->num_pages;
        *rows_k = page;
        *nb = c->num_pages;
    }
    if (fresh) a->seqlen_new = fresh;
    return FAT_OK;
}

/* Every row of a KV cache that no sequence holds (past a sequence's cache_seqlens, its appended rows
 * included, and the spare pages) becomes NaN, as a cache from torch.empty may hold: a kernel that
 * reads such a row and multiplies it by a weight of 0 (a masked key's V) outputs NaN and fails. */
static void cache_poison_unused(bench_case *c, const fat_problem *p, int rows_k, int nbk) {
    const fat_attn_args *a = &c->host;
    size_t n = (size_t)nbk * rows_k;
    unsigned char *held = calloc(n, 1);
    if (!held) return;                      /* only the test's strength is lost */
    for (int b = 0; b < p->batch; b++) {
        int have = a->cache_seqlens ? a->cache_seqlens[b] : p->seqlen_k;
        for (int j = 0; j < have; j++) {
            size_t outer = a->block_table ? (size_t)a->block_table[(size_t)b * a->block_table_stride + j / a->page_size]
                                          : (size_t)b;
            held[outer * rows_k + (a->block_table ? j % a->page_size : j)] = 1;
        }
    }
    uint16_t nan = p->dtype == FAT_BF16 ? 0x7fc0 : 0x7e00;
    for (size_t i = 0; i < n; i++) {
        if (held[i]) continue;
        size_t outer = i / rows_k, row = i % rows_k;
        for (int h = 0; h < p->heads_kv; h++)
            for (int e = 0; e < p->head_dim; e++) {
                ((uint16_t *)c->hk)[outer * a->k_stride[0] + row * a->k_stride[1] + h * a->k_stride[2] + e] = nan;
                ((uint16_t *)c->hv)[outer * a->v_stride[0] + row * a->v_stride[1] + h * a->v_stride[2] + e] = nan;
            }
    }
    free(held);
}

/* Scores that rise toward the first keys (bench_layout.key_ramp > 0): Q and K made positive, so
 * that q.k grows with the keys' scale (about 0.9 sqrt(head_dim) in exp2's units at a softmax scale
 * of 1/sqrt(head_dim)), key i of every sequence and head scaled by g = 1 + |ramp| x ((seqlen_k - 1
 * - i) / 64). flash_hopper visits key blocks from the last to the first (walk_forward=0), so
 * nearly every block raises a row's max, by a few units of exp2 at a ramp of 0.3 (d128) and by over
 * a hundred at 20 (d64; 2^128 overflows f32): the paths a lazy or optimistic max takes rarely on
 * random inputs. toward_last: g = 1 + |ramp| x (i / 64), the same for the kernels that visit them
 * first to last (flash_v1, flash_v2, decode, flash_hopper with walk_forward=1).
 * key_ramp < 0: the keys negative (-|k| g), every score far below 0 (below 2^-126 of exp2's base 0
 * from the second group of 64 keys on at -20): what a row that has seen no key yet meets. */
static fat_status ramp_keys(bench_case *c, const fat_problem *p, float ramp, int toward_last) {
    const fat_attn_args *a = &c->host;
    float *x = malloc((size_t)p->head_dim * sizeof *x);
    if (!x) { fat_set_error("out of memory"); return FAT_ERR_NOMEM; }
    for (size_t i = 0; i < c->q_elems; i++) {           /* |q|: padding included, never read */
        float v;
        half_decode(p->dtype, (uint16_t *)c->hq + i, &v, 1);
        v = fabsf(v);
        half_encode(p->dtype, &v, (uint16_t *)c->hq + i, 1);
    }
    for (int b = 0; b < p->batch; b++)
        for (int i = 0; i < p->seqlen_k; i++)
            for (int h = 0; h < p->heads_kv; h++) {
                uint16_t *k = (uint16_t *)c->hk + b * a->k_stride[0] + i * a->k_stride[1] + h * a->k_stride[2];
                const int steps = toward_last ? i / 64 : (p->seqlen_k - 1 - i) / 64;
                const float g = (ramp < 0.f ? -1.f : 1.f) * (1.f + fabsf(ramp) * (float)steps);
                half_decode(p->dtype, k, x, p->head_dim);
                for (int e = 0; e < p->head_dim; e++) x[e] = fabsf(x[e]) * g;
                half_encode(p->dtype, x, k, p->head_dim);
            }
    free(x);
    return FAT_OK;
}

fat_status bench_case_new(const fat_problem *p, const bench_layout *lay, uint64_t seed, bench_case **out) {
    fat_status st = FAT_OK;
    *out = NULL;
    if (lay->timing_only && lay->key_ramp != 0.f) {
        fat_set_error("key_ramp: it shapes the host inputs, which a timing-only case does not have");
        return FAT_ERR_INVALID;
    }
    bench_case *c = calloc(1, sizeof *c);
    if (!c) { fat_set_error("out of memory"); return FAT_ERR_NOMEM; }
    c->prob = *p;
    c->maps = aligned_alloc(128, (sizeof *c->maps + 127) & ~(size_t)127);
    if (!c->maps || launch_arena_new(&c->arena) != FAT_OK) { fat_set_error("out of memory"); st = FAT_ERR_NOMEM; goto out; }
    memset(c->maps, 0, sizeof *c->maps);
    int varlen = (p->features & FAT_FEAT_VARLEN) != 0;
    int d = p->head_dim, b = p->batch;
    fat_attn_args *a = &c->host;
    fat_attn_args_init(a, p->dtype, b, p->heads_q, p->heads_kv, p->seqlen_q, p->seqlen_k, d);
    a->causal = p->causal;
    if (p->features & FAT_FEAT_WINDOW) { a->window_left = lay->window_left; a->window_right = lay->window_right; }
    if (p->features & FAT_FEAT_SOFTCAP) a->softcap = lay->softcap;
    int rows_q = p->seqlen_q, rows_k = p->seqlen_k, nb = b, nbk = b;
    int cache = (p->features & (FAT_FEAT_PAGED | FAT_FEAT_CACHE | FAT_FEAT_APPEND)) != 0;
    if (cache && (st = cache_setup(c, p, lay, &seed, &rows_k, &nbk)) != FAT_OK) goto out;
    if (varlen) {
        c->hcu = calloc(2 * ((size_t)b + 1), sizeof *c->hcu);
        if (!c->hcu) { fat_set_error("out of memory"); st = FAT_ERR_NOMEM; goto out; }
        for (int i = 0; i < b; i++) {
            c->hcu[i + 1] = c->hcu[i] + lay->lens_q[i];
            c->hcu[b + 1 + i + 1] = c->hcu[b + 1 + i] + lay->lens_k[i];
        }
        rows_q = c->hcu[b];
        rows_k = c->hcu[2 * b + 1];
        nb = nbk = 1;                       /* one packed "batch" of all tokens */
        a->cu_seqlens_q = c->hcu;
        a->cu_seqlens_k = c->hcu + b + 1;
    }
    c->total_q = varlen ? rows_q : b * p->seqlen_q;
    c->total_k = varlen ? rows_k : b * p->seqlen_k;
    a->total_q = c->total_q;
    a->total_k = varlen ? c->total_k : 0;
    strides(lay, rows_q, p->heads_q, d, a->q_stride);
    strides(lay, rows_k, p->heads_kv, d, a->k_stride);
    strides(lay, rows_k, p->heads_kv, d, a->v_stride);
    strides(lay, rows_q, p->heads_q, d, a->o_stride);
    c->q_elems = (size_t)nb * rows_q * p->heads_q * (size_t)(d + lay->pad);
    c->k_elems = (size_t)nbk * rows_k * p->heads_kv * (size_t)(d + lay->pad);
    if (a->seqlen_new) {                    /* the new rows: [batch, seqlen_new, heads_kv, d], BSHD */
        bench_layout bshd = { .pad = lay->pad };
        strides(&bshd, a->seqlen_new, p->heads_kv, d, a->k_new_stride);
        strides(&bshd, a->seqlen_new, p->heads_kv, d, a->v_new_stride);
        c->kn_elems = (size_t)b * a->seqlen_new * p->heads_kv * (size_t)(d + lay->pad);
        CU_CHECK(MemAlloc(&c->mem_kn, c->kn_elems * 2));
        CU_CHECK(MemAlloc(&c->mem_vn, c->kn_elems * 2));
    }
    c->o_elems = c->q_elems;
    c->lse_elems = (size_t)c->total_q * p->heads_q;
    CU_CHECK(MemAlloc(&c->mem_q, c->q_elems * 2));
    CU_CHECK(MemAlloc(&c->mem_k, c->k_elems * 2));
    CU_CHECK(MemAlloc(&c->mem_v, c->k_elems * 2));
    CU_CHECK(MemAlloc(&c->mem_o, c->o_elems * 2 + 2 * BENCH_GUARD));
    CU_CHECK(MemAlloc(&c->mem_lse, c->lse_elems * 4 + 2 * BENCH_GUARD));
    if (lay->timing_only) {
        /* Filling a large problem on the host (hundreds of millions of values) took seconds per
         * problem; timing needs values of the right distribution, not unique ones. */
        if ((st = fill_repeated(p->dtype, c->mem_q, c->q_elems, &seed)) != FAT_OK ||
            (st = fill_repeated(p->dtype, c->mem_k, c->k_elems, &seed)) != FAT_OK ||
            (st = fill_repeated(p->dtype, c->mem_v, c->k_elems, &seed)) != FAT_OK) goto out;
        if (c->kn_elems && ((st = fill_repeated(p->dtype, c->mem_kn, c->kn_elems, &seed)) != FAT_OK ||
                            (st = fill_repeated(p->dtype, c->mem_vn, c->kn_elems, &seed)) != FAT_OK)) goto out;
        a->q = a->k = a->v = NULL;
    } else {
        c->hq = malloc(c->q_elems * 2);
        c->hk = malloc(c->k_elems * 2);
        c->hv = malloc(c->k_elems * 2);
        if (!c->hq || !c->hk || !c->hv) { fat_set_error("out of memory"); st = FAT_ERR_NOMEM; goto out; }
        fill_random(p->dtype, c->hq, c->q_elems, &seed);
        fill_random(p->dtype, c->hk, c->k_elems, &seed);
        fill_random(p->dtype, c->hv, c->k_elems, &seed);
        a->q = c->hq; a->k = c->hk; a->v = c->hv;
        if (lay->key_ramp != 0.f) {
            if (cache || varlen) { fat_set_error("key_ramp: plain layouts only (no cache, no varlen)"); st = FAT_ERR_INVALID; goto out; }
            if ((st = ramp_keys(c, p, lay->key_ramp, lay->ramp_toward_last)) != FAT_OK) goto out;
        }
        if (cache) cache_poison_unused(c, p, rows_k, nbk);
        CU_CHECK(MemcpyHtoD(c->mem_q, c->hq, c->q_elems * 2));
        CU_CHECK(MemcpyHtoD(c->mem_k, c->hk, c->k_elems * 2));
        CU_CHECK(MemcpyHtoD(c->mem_v, c->hv, c->k_elems * 2));
        if (c->kn_elems) {
            c->hkn = malloc(c->kn_elems * 2);
            c->hvn = malloc(c->kn_elems * 2);
            if (!c->hkn || !c->hvn) { fat_set_error("out of memory"); st = FAT_ERR_NOMEM; goto out; }
            fill_random(p->dtype, c->hkn, c->kn_elems, &seed);
            fill_random(p->dtype, c->hvn, c->kn_elems, &seed);
            CU_CHECK(MemcpyHtoD(c->mem_kn, c->hkn, c->kn_elems * 2));
            CU_CHECK(MemcpyHtoD(c->mem_vn, c->hvn, c->kn_elems * 2));
            a->k_new = c->hkn;
            a->v_new = c->hvn;
        }
    }
    c->dev = *a;
    c->dev.q = (void *)c->mem_q;
    c->dev.k = (void *)c->mem_k;
    c->dev.v = (void *)c->mem_v;
    c->dev.o = (void *)(c->mem_o + BENCH_GUARD);
    c->dev.lse = lay->with_lse ? (float *)(c->mem_lse + BENCH_GUARD) : NULL;
    if (varlen) {
        CU_CHECK(MemAlloc(&c->mem_cu, 2 * ((size_t)b + 1) * sizeof(int32_t)));
        CU_CHECK(MemcpyHtoD(c->mem_cu, c->hcu, 2 * ((size_t)b + 1) * sizeof(int32_t)));
        c->dev.cu_seqlens_q = (const int32_t *)c->mem_cu;
        c->dev.cu_seqlens_k = (const int32_t *)c->mem_cu + b + 1;
    }
    if (cache) {
        size_t n = (size_t)b + (size_t)b * c->table_stride;
        CU_CHECK(MemAlloc(&c->mem_aux, (n + 1) * sizeof(int32_t)));
        CU_CHECK(MemcpyHtoD(c->mem_aux, c->haux, (n + 1) * sizeof(int32_t)));
        if (a->cache_seqlens) c->dev.cache_seqlens = (const int32_t *)c->mem_aux;
        if (a->block_table) c->dev.block_table = (const int32_t *)c->mem_aux + b;
        if (c->kn_elems) {
            c->dev.k_new = (const void *)c->mem_kn;
            c->dev.v_new = (const void *)c->mem_vn;
        }
    }
    st = bench_poison(c);
out:
    if (st != FAT_OK) { bench_case_free(c); return st; }
    *out = c;
    return FAT_OK;
}

fat_status bench_poison(bench_case *c) {
    fat_status st = FAT_OK;
    CU_CHECK(MemsetD8(c->mem_o, 0xA5, BENCH_GUARD));
    CU_CHECK(MemsetD8(c->mem_o + BENCH_GUARD, 0xFF, c->o_elems * 2));   /* 0xFFFF: NaN in fp16 and bf16 */
    CU_CHECK(MemsetD8(c->mem_o + BENCH_GUARD + c->o_elems * 2, 0xA5, BENCH_GUARD));
    CU_CHECK(MemsetD8(c->mem_lse, 0xA5, BENCH_GUARD));
    CU_CHECK(MemsetD8(c->mem_lse + BENCH_GUARD, 0xFF, c->lse_elems * 4));
    CU_CHECK(MemsetD8(c->mem_lse + BENCH_GUARD + c->lse_elems * 4, 0xA5, BENCH_GUARD));
out:
    return st;
}

fat_status bench_launch(bench_case *c, const launch_fn *f, const gen_launch *l, CUstream s) {
    fat_kparams kp;
    launch_params(&c->dev, NULL, &kp);
    return launch_run(f, l, &c->dev, &kp, c->maps, c->arena, s);
}

static int guard_intact(const unsigned char *g, size_t n) {
    for (size_t i = 0; i < n; i++) if (g[i] != 0xA5) return 0;
    return 1;
}

fat_status bench_fetch(bench_case *c, float *o, float *lse, int *guards_ok) {
    fat_status st = FAT_OK;
    unsigned char *buf = malloc(c->o_elems * 2 + 2 * BENCH_GUARD);
    unsigned char *lbuf = malloc(c->lse_elems * 4 + 2 * BENCH_GUARD);
    if (!buf || !lbuf) { fat_set_error("out of memory"); st = FAT_ERR_NOMEM; goto out; }
    CU_CHECK(CtxSynchronize());
    CU_CHECK(MemcpyDtoH(buf, c->mem_o, c->o_elems * 2 + 2 * BENCH_GUARD));
    CU_CHECK(MemcpyDtoH(lbuf, c->mem_lse, c->lse_elems * 4 + 2 * BENCH_GUARD));
    *guards_ok = guard_intact(buf, BENCH_GUARD) && guard_intact(buf + BENCH_GUARD + c->o_elems * 2, BENCH_GUARD) &&
                 guard_intact(lbuf, BENCH_GUARD) && guard_intact(lbuf + BENCH_GUARD + c->lse_elems * 4, BENCH_GUARD);
    if (c->cache_ref) {                     /* the whole cache, byte for byte, against the CPU's append */
        unsigned char *kv = malloc(c->k_elems * 2);
        if (!kv) { fat_set_error("out of memory"); st = FAT_ERR_NOMEM; goto out; }
        const CUdeviceptr m[2] = { c->mem_k, c->mem_v };
        const void *want[2] = { c->hk, c->hv };
        for (int i = 0; i < 2 && st == FAT_OK; i++) {
            if (cu.MemcpyDtoH(kv, m[i], c->k_elems * 2) != CUDA_SUCCESS) {
                fat_set_error("bench: cannot read the KV cache back");
                st = FAT_ERR_CUDA;
            } else if (memcmp(kv, want[i], c->k_elems * 2) != 0) {
                *guards_ok = 0;
            }
        }
        free(kv);
    }
    if (o) half_decode(c->prob.dtype, buf + BENCH_GUARD, o, c->o_elems);
    if (lse) memcpy(lse, lbuf + BENCH_GUARD, c->lse_elems * 4);
out:
    free(buf);
    free(lbuf);
    return st;
}

fat_status bench_cpu_reference(bench_case *c, float *o, float *lse) {
    if (!c->hq) {
        fat_set_error("bench: a timing-only case has no host inputs for the CPU attention");
        return FAT_ERR_INVALID;
    }
    void *ho = malloc(c->o_elems * 2);
    if (!ho) { fat_set_error("out of memory"); return FAT_ERR_NOMEM; }
    memset(ho, 0xFF, c->o_elems * 2);
    fat_attn_args a = c->host;
    a.o = ho;
    a.lse = lse;
    fat_cpu_opts opt = { FAT_CPU_FLASH_V2, 64, 64, 0 };
    fat_status st = fat_attn_cpu(&a, &opt);
    /* the CPU attention appended k_new and v_new into the host cache: what the GPU's must become */
    if (st == FAT_OK && (a.cache_seqlens || a.block_table)) c->cache_ref = 1;
    if (st == FAT_OK) half_decode(c->prob.dtype, ho, o, c->o_elems);
    free(ho);
    return st;
}

void bench_compare(const bench_case *c, const float *o, const float *ref, const float *lse,
                   const float *lse_ref, bench_err *e) {
    const fat_attn_args *a = &c->host;
    const fat_problem *p = &c->prob;
    int varlen = a->cu_seqlens_q != NULL;
    double num = 0, den = 0;
    memset(e, 0, sizeof *e);
    for (int b = 0; b < p->batch; b++) {
        int sq = varlen ? a->cu_seqlens_q[b + 1] - a->cu_seqlens_q[b] : p->seqlen_q;
        int64_t q0 = varlen ? a->cu_seqlens_q[b] : 0;
        for (int i = 0; i < sq; i++) {
            for (int h = 0; h < p->heads_q; h++) {
                int64_t off = (varlen ? 0 : b * a->o_stride[0]) + (q0 + i) * a->o_stride[1] + h * a->o_stride[2];
                for (int d = 0; d < p->head_dim; d++) {
                    double g = o[off + d], r = ref[off + d];
                    if (!isfinite(g)) { e->nonfinite++; continue; }
                    num += (g - r) * (g - r);
                    den += r * r;
                    if (fabs(g - r) > e->max_abs) e->max_abs = fabs(g - r);
                }
                if (lse && lse_ref) {
                    int64_t li = varlen ? (int64_t)h * c->total_q + q0 + i : ((int64_t)b * p->heads_q + h) * p->seqlen_q + i;
                    float gl = lse[li], rl = lse_ref[li];
                    if (isinf(rl) ? !(isinf(gl) && gl < 0) : !(fabsf(gl - rl) <= 1e-3f * (1 + fabsf(rl)))) e->lse_bad++;
                }
            }
        }
    }
    e->rel_l2 = den > 0 ? sqrt(num / den) : sqrt(num);
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

fat_status bench_time(bench_case *c, const launch_fn *f, const gen_launch *l, CUdeviceptr flush,
                      size_t flush_bytes, CUstream s, double budget_ms, int min_samples, double cut_ms,
                      bench_timing *t) {
    enum { MAX_SAMPLES = 200 };
    fat_status st = FAT_OK;
    CUevent e0 = NULL, e1 = NULL;
    double ms[MAX_SAMPLES], sorted[MAX_SAMPLES], spent = 0;
    int n = 0;
    memset(t, 0, sizeof *t);
    if (min_samples < 1) min_samples = 1;
    if (min_samples > MAX_SAMPLES) min_samples = MAX_SAMPLES;
    CU_CHECK(EventCreate(&e0, CU_EVENT_DEFAULT));
    CU_CHECK(EventCreate(&e1, CU_EVENT_DEFAULT));
    /* One launch loads the module and touches the inputs; more, until 5 ms have passed, let the
     * clocks settle (a long kernel needs no more than the first). */
    for (int w = 0; w < 1000 && (w == 0 || spent < 5.0); w++) {
        float ms1;
        CU_CHECK(EventRecord(e0, s));
        if ((st = bench_launch(c, f, l, s)) != FAT_OK) goto out;
        CU_CHECK(EventRecord(e1, s));
        CU_CHECK(EventSynchronize(e1));
        CU_CHECK(EventElapsedTime(&ms1, e0, e1));
        if (w > 0) spent += ms1;
    }
    spent = 0;
    while (n < MAX_SAMPLES) {
        float ms1;
        /* Writing twice the L2 evicts the inputs the previous run left there. */
        if (flush) CU_CHECK(MemsetD8Async(flush, (unsigned char)n, flush_bytes, s));
        CU_CHECK(EventRecord(e0, s));
        if ((st = bench_launch(c, f, l, s)) != FAT_OK) goto out;
        CU_CHECK(EventRecord(e1, s));
        CU_CHECK(EventSynchronize(e1));
        CU_CHECK(EventElapsedTime(&ms1, e0, e1));
        ms[n++] = ms1;
        spent += ms1;
        /* A variant far behind the best so far cannot win: one sample at twice the cut, or three
         * above it, end its timing. A long slow kernel then costs two launches, not a dozen. */
        if (cut_ms > 0 && ((n == 1 && ms[0] > 2 * cut_ms) ||
                           (n == 3 && ms[0] > cut_ms && ms[1] > cut_ms && ms[2] > cut_ms))) {
            t->cut = 1;
            break;
        }
        if (n >= min_samples) {
            memcpy(sorted, ms, (size_t)n * sizeof *ms);
            qsort(sorted, (size_t)n, sizeof *sorted, cmp_double);
            double med = sorted[n / 2], spread = sorted[(n * 4) / 5 < n ? (n * 4) / 5 : n - 1] - sorted[n / 5];
            if (spread < 0.01 * med || spent > budget_ms) break;
        }
    }
    memcpy(sorted, ms, (size_t)n * sizeof *ms);
    qsort(sorted, (size_t)n, sizeof *sorted, cmp_double);
    t->samples = n;
    t->median_ms = n % 2 ? sorted[n / 2] : 0.5 * (sorted[n / 2 - 1] + sorted[n / 2]);
    t->p20_ms = sorted[n / 5];
    t->p80_ms = sorted[(n * 4) / 5 < n ? (n * 4) / 5 : n - 1];
    t->min_ms = sorted[0];
out:
    if (e0) cu.EventDestroy(e0);
    if (e1) cu.EventDestroy(e1);
    return st;
}

int bench_ragged_lens(const fat_problem *p, int *lens) {
    if (!(p->features & FAT_FEAT_CACHE) || p->batch < 2) return 0;
    int fresh = (p->features & FAT_FEAT_APPEND) ? p->seqlen_q : 0, room = p->seqlen_k - fresh;
    for (int i = 0; i < p->batch; i++) lens[i] = (int)((int64_t)room * (p->batch - i) / p->batch);
    return 1;
}

fat_status bench_set_cache_lens(bench_case *c, const int *lens) {
    if (!c->mem_aux || !c->host.cache_seqlens) {
        fat_set_error("bench: the case has no cache_seqlens to set");
        return FAT_ERR_INVALID;
    }
    fat_status st = FAT_OK;
    memcpy(c->haux, lens, (size_t)c->prob.batch * sizeof *c->haux);
    CU_CHECK(MemcpyHtoD(c->mem_aux, c->haux, (size_t)c->prob.batch * sizeof *c->haux));
    /* from pageable memory the copy may still be in flight when cuMemcpyHtoD returns, and the
     * timing stream does not wait for the legacy stream (CU_STREAM_NON_BLOCKING) */
    CU_CHECK(CtxSynchronize());
out:
    return st;
}

double bench_cache_keys(const bench_case *c) {
    const fat_problem *p = &c->prob;
    if (!c->host.cache_seqlens) return (double)p->batch * p->seqlen_k;
    double n = 0;
    int fresh = (p->features & FAT_FEAT_APPEND) ? p->seqlen_q : 0;
    for (int i = 0; i < p->batch; i++) n += c->haux[i] + fresh;
    return n;
}

double bench_flops(const fat_problem *p) {
    double f = 4.0 * p->batch * p->heads_q * (double)p->seqlen_q * p->seqlen_k * p->head_dim;
    return p->causal ? f / 2 : f;
}

double bench_kv_bytes(const fat_problem *p) {
    if (p->features & FAT_FEAT_VARLEN) return 0;
    return 2.0 * p->batch * p->heads_kv * (double)p->seqlen_k * p->head_dim * 2;
}

/* ---------------------------------------------------------------------------------------------
 * The SM clock, through NVML. Its types are declared here rather than taken from nvml.h, which a
 * machine with the driver but without the CUDA toolkit lacks: the three calls use a status int
 * (0: NVML_SUCCESS), an opaque device handle and NVML_CLOCK_SM = 1. */

typedef struct nvml_device_st *nvml_device;

static struct {
    int (*init)(void);
    int (*by_pci)(const char *bus_id, nvml_device *dev);
    int (*clock)(nvml_device dev, int type, unsigned *mhz);
    int ok;
} nvml;
static pthread_once_t nvml_once = PTHREAD_ONCE_INIT;

static void nvml_load(void) {
    /* The library stays open for the process: the handles it gave out point into it. */
    void *h = dlopen("libnvidia-ml.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!h) return;
    *(void **)&nvml.init = dlsym(h, "nvmlInit_v2");
    *(void **)&nvml.by_pci = dlsym(h, "nvmlDeviceGetHandleByPciBusId_v2");
    *(void **)&nvml.clock = dlsym(h, "nvmlDeviceGetClockInfo");
    nvml.ok = nvml.init && nvml.by_pci && nvml.clock && nvml.init() == 0;
}

int bench_sm_clock_mhz(CUdevice dev) {
    enum { NVML_CLOCK_SM = 1 };
    static CUdevice cached = -1;
    static nvml_device handle;
    int domain = 0, bus = 0, slot = 0;
    unsigned mhz = 0;
    char id[32];
    pthread_once(&nvml_once, nvml_load);
    if (!nvml.ok || cu_load() != FAT_OK) return 0;
    if (cached != dev) {
        /* The PCI address ties a CUDA ordinal to NVML's own numbering. */
        if (cu.DeviceGetAttribute(&domain, CU_DEVICE_ATTRIBUTE_PCI_DOMAIN_ID, dev) != CUDA_SUCCESS ||
            cu.DeviceGetAttribute(&bus, CU_DEVICE_ATTRIBUTE_PCI_BUS_ID, dev) != CUDA_SUCCESS ||
            cu.DeviceGetAttribute(&slot, CU_DEVICE_ATTRIBUTE_PCI_DEVICE_ID, dev) != CUDA_SUCCESS)
            return 0;
        snprintf(id, sizeof id, "%08x:%02x:%02x.0", (unsigned)domain, (unsigned)bus, (unsigned)slot);
        if (nvml.by_pci(id, &handle) != 0) return 0;
        cached = dev;
    }
    return nvml.clock(handle, NVML_CLOCK_SM, &mhz) == 0 ? (int)mhz : 0;
}
