/*
 * test_cpu_attn.c: the CPU attention against an independent float64 reference, the argument
 * checks and their messages, status and dtype names, and the fp16/bf16 conversions.
 *
 * Every attention case is run in fp32, fp16 and bf16 through all three loop orders, with block
 * sizes and thread counts rotating over the cases, on fresh random inputs from one fixed-seed
 * stream (so a failure repeats). The reference reads the same rounded inputs, so the tolerances
 * measure the attention, not the input rounding.
 *
 * Usage: test_cpu_attn [-v] [-b]    -v prints every check; -b also times the three orders on
 * B=2, H=8, S=1024, D=128 (fp16, all cores).
 */
#include <float.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fatune.h"
#include "half.h"
#include "test.h"

/*
 * Tolerances on the relative L2 error of the whole output against the float64 reference. The
 * output is rounded once to its dtype, a relative error of at most 2^-11 (fp16) or 2^-8 (bf16)
 * per element; fp32 accumulation adds about 1e-6. So fp16 gets 4x its rounding and bf16 2.5x;
 * fp32, where only accumulation counts, 1e-5. lse is fp32 for every dtype.
 */
#define TOL_FP32 1e-5
#define TOL_FP16 2e-3
#define TOL_BF16 1e-2
#define TOL_LSE  1e-4      /* absolute, natural log */
#define GUARD    64        /* elements after every buffer that must stay untouched */
#define MAX_SEQS 8

/* ---- random numbers: splitmix64, one stream for the run ---- */

static uint64_t rng_state = 0x5eed5eed12345678ull;

static uint64_t next_u64(void)
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static double uniform(void)
{
    return (double)(next_u64() >> 11) * 0x1p-53;
}

static int rand_int(int lo, int hi)
{
    return lo + (int)(next_u64() % (uint64_t)(hi - lo + 1));
}

/* ---- strided tensors ---- */

enum layout { BSHD, BHSD, PADDED, NLAYOUTS };

static const char *layout_name[NLAYOUTS] = { "bshd", "bhsd", "padded" };

struct tensor {
    unsigned char *data;
    size_t n;                   /* elements, padding and guard included */
    int64_t st[3];
    int nb, rows, heads, d;     /* logical extents; varlen: nb 1, rows = all tokens */
};

static size_t esize(fat_dtype dt)
{
    return dt == FAT_FP32 ? 4 : 2;
}

static int64_t offset(const struct tensor *t, int b, int row, int h, int c)
{
    return (int64_t)b * t->st[0] + (int64_t)row * t->st[1] + (int64_t)h * t->st[2] + c;
}

static double get(fat_dtype dt, const struct tensor *t, int64_t off)
{
    uint16_t h;
    float f;

    if (dt == FAT_FP32) {
        memcpy(&f, t->data + off * 4, 4);
        return f;
    }
    memcpy(&h, t->data + off * 2, 2);
    return dt == FAT_FP16 ? fp16_to_float(h) : bf16_to_float(h);
}

static void put(fat_dtype dt, struct tensor *t, int64_t off, float x)
{
    half_encode(dt, &x, t->data + off * (int64_t)esize(dt), 1);
}

/* Fills every element with one byte pattern: NaN for inputs (a stray read poisons the result),
 * 0x5a for outputs (a stray write shows in the guard check). */
static void fill(struct tensor *t, fat_dtype dt, int nan)
{
    uint16_t h = dt == FAT_FP16 ? 0x7e00 : 0x7fc0;
    float f = NAN;

    if (!nan) {
        memset(t->data, 0x5a, t->n * esize(dt));
        return;
    }
    for (size_t i = 0; i < t->n; i++) {
        if (dt == FAT_FP32)
            memcpy(t->data + i * 4, &f, 4);
        else
            memcpy(t->data + i * 2, &h, 2);
    }
}

/* Lays out [nb, rows, heads, d] as BSHD, BHSD, or BSHD with odd gaps after every head, row and
 * batch. varlen: the batch stride is set to nonsense, the library must ignore it. */
static int make_tensor(struct tensor *t, fat_dtype dt, int layout, int nb, int rows, int heads,
                       int d, int varlen)
{
    int64_t last;

    t->nb = nb;
    t->rows = rows;
    t->heads = heads;
    t->d = d;
    if (layout == BSHD) {
        t->st[2] = d;
        t->st[1] = (int64_t)heads * d;
        t->st[0] = (int64_t)rows * heads * d;
    } else if (layout == BHSD) {
        t->st[1] = d;
        t->st[2] = (int64_t)rows * d;
        t->st[0] = (int64_t)heads * rows * d;
    } else {
        t->st[2] = d + 3;
        t->st[1] = heads * t->st[2] + 5;
        t->st[0] = rows * t->st[1] + 7;
    }
    last = offset(t, nb - 1, rows - 1, heads - 1, d - 1);
    if (rows == 0)
        last = 0;
    if (varlen)
        t->st[0] = -777;
    t->n = (size_t)last + 1 + GUARD;
    t->data = malloc(t->n * esize(dt));
    return t->data ? 0 : -1;
}

/* ---- attention cases ---- */

struct tcase {
    const char *name;
    int batch, hq, hkv, sq, sk, d;      /* varlen: sq, sk are set from the lengths */
    int causal, wl, wr;
    float softcap, scale, amp;          /* inputs uniform in [-amp, amp]; amp 0 means 1 */
    int lq, lkv, lo;                    /* layouts of q, of k and v, of o */
    int no_lse;
    int nseq;                           /* varlen: batch of lengths below, else 0 */
    int lens_q[MAX_SEQS], lens_k[MAX_SEQS];
};

/* One case's buffers in one dtype, and the arguments that describe them. */
struct problem {
    const struct tcase *c;
    fat_dtype dt;
    int32_t cuq[MAX_SEQS + 1], cuk[MAX_SEQS + 1];
    int total_q, total_k;               /* rows of the sequence dimension */
    struct tensor q, k, v, o;
    float *lse;
    size_t lse_n;                       /* logical lse floats; GUARD more are allocated */
    fat_attn_args args;
};

static void problem_free(struct problem *p)
{
    free(p->q.data);
    free(p->k.data);
    free(p->v.data);
    free(p->o.data);
    free(p->lse);
}

static void reset_output(struct problem *p)
{
    fill(&p->o, p->dt, 0);
    if (p->lse)
        memset(p->lse, 0x5a, (p->lse_n + GUARD) * sizeof(float));
}

static void fill_random(struct problem *p, struct tensor *t)
{
    double amp = p->c->amp > 0 ? p->c->amp : 1.0;

    for (int b = 0; b < t->nb; b++)
        for (int r = 0; r < t->rows; r++)
            for (int h = 0; h < t->heads; h++)
                for (int c = 0; c < t->d; c++)
                    put(p->dt, t, offset(t, b, r, h, c), (float)(amp * (2.0 * uniform() - 1.0)));
}

static int problem_make(struct problem *p, const struct tcase *c, fat_dtype dt)
{
    int varlen = c->nseq > 0, batch = varlen ? c->nseq : c->batch;
    int nb = varlen ? 1 : batch, sq = c->sq, sk = c->sk;

    memset(p, 0, sizeof *p);
    p->c = c;
    p->dt = dt;
    if (varlen) {
        sq = sk = 0;
        for (int b = 0; b < batch; b++) {
            p->cuq[b + 1] = p->cuq[b] + c->lens_q[b];
            p->cuk[b + 1] = p->cuk[b] + c->lens_k[b];
            sq = c->lens_q[b] > sq ? c->lens_q[b] : sq;
            sk = c->lens_k[b] > sk ? c->lens_k[b] : sk;
        }
        p->total_q = p->cuq[batch];
        p->total_k = p->cuk[batch];
    } else {
        p->total_q = sq;
        p->total_k = sk;
    }
    if (make_tensor(&p->q, dt, c->lq, nb, p->total_q, c->hq, c->d, varlen) ||
        make_tensor(&p->k, dt, c->lkv, nb, p->total_k, c->hkv, c->d, varlen) ||
        make_tensor(&p->v, dt, c->lkv, nb, p->total_k, c->hkv, c->d, varlen) ||
        make_tensor(&p->o, dt, c->lo, nb, p->total_q, c->hq, c->d, varlen))
        return -1;
    p->lse_n = (size_t)nb * c->hq * p->total_q;
    if (!c->no_lse && !(p->lse = malloc((p->lse_n + GUARD) * sizeof(float))))
        return -1;
    fill(&p->q, dt, 1);
    fill(&p->k, dt, 1);
    fill(&p->v, dt, 1);
    fill_random(p, &p->q);
    fill_random(p, &p->k);
    fill_random(p, &p->v);
    reset_output(p);

    fat_attn_args_init(&p->args, dt, batch, c->hq, c->hkv, sq, sk, c->d);
    p->args.q = p->q.data;
    p->args.k = p->k.data;
    p->args.v = p->v.data;
    p->args.o = p->o.data;
    p->args.lse = p->lse;
    memcpy(p->args.q_stride, p->q.st, sizeof p->q.st);
    memcpy(p->args.k_stride, p->k.st, sizeof p->k.st);
    memcpy(p->args.v_stride, p->v.st, sizeof p->v.st);
    memcpy(p->args.o_stride, p->o.st, sizeof p->o.st);
    p->args.scale = c->scale;
    p->args.causal = c->causal;
    p->args.window_left = c->wl;
    p->args.window_right = c->wr;
    p->args.softcap = c->softcap;
    if (varlen) {
        p->args.cu_seqlens_q = p->cuq;
        p->args.cu_seqlens_k = p->cuk;
    }
    return 0;
}

/* Sequence b of a problem: its lengths, its first row in the sequence dimension, its batch index
 * for the batch stride. */
static void sequence(const struct problem *p, int b, int *sq, int *sk, int *q0, int *k0, int *bi)
{
    if (p->c->nseq) {
        *sq = p->c->lens_q[b];
        *sk = p->c->lens_k[b];
        *q0 = p->cuq[b];
        *k0 = p->cuk[b];
        *bi = 0;
    } else {
        *sq = p->c->sq;
        *sk = p->c->sk;
        *q0 = *k0 = 0;
        *bi = b;
    }
}

/* The mask, straight from the contract, one (i, j) pair at a time. */
static int sees(const struct tcase *c, int sq, int sk, int i, int j)
{
    long diag = (long)i + sk - sq;

    if (c->causal && j > diag)
        return 0;
    if (c->wl >= 0 && j < diag - c->wl)
        return 0;
    if (c->wr >= 0 && j > diag + c->wr)
        return 0;
    return 1;
}

/* Where the reference keeps row i of sequence b, head h: one index for output rows and lse. */
static size_t ref_row(const struct problem *p, int b, int i, int h)
{
    int sq, sk, q0, k0, bi;

    sequence(p, b, &sq, &sk, &q0, &k0, &bi);
    return ((size_t)bi * p->total_q + q0 + i) * p->c->hq + h;
}

static int64_t lse_index(const struct problem *p, int b, int i, int h)
{
    int sq, sk, q0, k0, bi;

    sequence(p, b, &sq, &sk, &q0, &k0, &bi);
    if (p->c->nseq)
        return (int64_t)h * p->total_q + q0 + i;
    return ((int64_t)b * p->c->hq + h) * p->c->sq + i;
}

/*
 * Float64 attention, written from the contract without the library's tricks: for every row, the
 * scores of the keys it sees, their max, the exp-sum, the weighted sum of V. ro gets d doubles
 * per row, rlse one, nvis the count of keys the row sees.
 */
static int reference(const struct problem *p, double *ro, double *rlse, int *nvis)
{
    const struct tcase *c = p->c;
    int batch = c->nseq ? c->nseq : c->batch, group = c->hq / c->hkv, d = c->d;
    double scale = c->scale != 0.0f ? c->scale : 1.0 / sqrt((double)d);
    double *s = malloc(((size_t)p->args.seqlen_k + 1) * sizeof *s);
    double *qrow = malloc((size_t)d * sizeof *qrow);

    if (!s || !qrow) {
        free(s);
        free(qrow);
        return -1;
    }
    for (int b = 0; b < batch; b++) {
        int sq, sk, q0, k0, bi;

        sequence(p, b, &sq, &sk, &q0, &k0, &bi);
        for (int h = 0; h < c->hq; h++) {
            int hk = h / group;

            for (int i = 0; i < sq; i++) {
                size_t row = ref_row(p, b, i, h);
                double *o = ro + row * d, mx = -INFINITY, sum = 0.0;
                int n = 0;

                for (int x = 0; x < d; x++)
                    qrow[x] = get(p->dt, &p->q, offset(&p->q, bi, q0 + i, h, x));
                for (int j = 0; j < sk; j++) {
                    double dotp = 0.0;

                    if (!sees(c, sq, sk, i, j))
                        continue;
                    for (int x = 0; x < d; x++)
                        dotp += qrow[x] * get(p->dt, &p->k, offset(&p->k, bi, k0 + j, hk, x));
                    s[j] = dotp * scale;
                    if (c->softcap > 0.0f)
                        s[j] = c->softcap * tanh(s[j] / c->softcap);
                    mx = s[j] > mx ? s[j] : mx;
                    n++;
                }
                nvis[row] = n;
                for (int x = 0; x < d; x++)
                    o[x] = 0.0;
                rlse[row] = -INFINITY;
                if (n == 0)
                    continue;
                for (int j = 0; j < sk; j++) {
                    double pj;

                    if (!sees(c, sq, sk, i, j))
                        continue;
                    pj = exp(s[j] - mx);
                    sum += pj;
                    for (int x = 0; x < d; x++)
                        o[x] += pj * get(p->dt, &p->v, offset(&p->v, bi, k0 + j, hk, x));
                }
                for (int x = 0; x < d; x++)
                    o[x] /= sum;
                rlse[row] = mx + log(sum);
            }
        }
    }
    free(s);
    free(qrow);
    return 0;
}

/* What one run got wrong, against the reference. */
struct verdict {
    double rel_err;             /* relative L2 error of the output */
    double lse_err;             /* max absolute lse error over rows that see a key */
    long nans;                  /* NaN in the output or lse */
    long masked_bad;            /* rows that see no key but are not exactly 0 / -inf */
    long guards_bad;            /* elements outside the logical output that changed */
};

static int is_untouched(const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != 0x5a)
            return 0;
    return 1;
}

static void judge(const struct problem *p, const double *ro, const double *rlse, const int *nvis,
                  struct verdict *v)
{
    const struct tcase *c = p->c;
    int batch = c->nseq ? c->nseq : c->batch, d = c->d;
    size_t es = esize(p->dt);
    unsigned char *logical = calloc(p->o.n, 1);
    unsigned char *lse_logical = calloc(p->lse_n + GUARD, 1);
    double err2 = 0.0, ref2 = 0.0;

    memset(v, 0, sizeof *v);
    for (int b = 0; b < batch; b++) {
        int sq, sk, q0, k0, bi;

        sequence(p, b, &sq, &sk, &q0, &k0, &bi);
        for (int h = 0; h < c->hq; h++)
            for (int i = 0; i < sq; i++) {
                size_t row = ref_row(p, b, i, h);
                int64_t li = lse_index(p, b, i, h);

                for (int x = 0; x < d; x++) {
                    int64_t off = offset(&p->o, bi, q0 + i, h, x);
                    double got = get(p->dt, &p->o, off), want = ro[row * d + x];

                    if (logical)
                        logical[off] = 1;
                    v->nans += isnan(got) != 0;
                    v->masked_bad += nvis[row] == 0 && got != 0.0;
                    err2 += (got - want) * (got - want);
                    ref2 += want * want;
                }
                if (!p->lse)
                    continue;
                if (lse_logical)
                    lse_logical[li] = 1;
                v->nans += isnan(p->lse[li]) != 0;
                if (nvis[row] == 0) {
                    v->masked_bad += !(isinf(p->lse[li]) && p->lse[li] < 0);
                } else {
                    double e = isnan(p->lse[li]) ? INFINITY : fabs(p->lse[li] - rlse[row]);

                    v->lse_err = e > v->lse_err ? e : v->lse_err;
                }
            }
    }
    v->rel_err = ref2 > 0.0 ? sqrt(err2 / ref2) : sqrt(err2);
    if (!logical || !lse_logical)
        v->guards_bad = -1;     /* cannot tell: counts as a failure */
    for (size_t e = 0; logical && e < p->o.n; e++)
        if (!logical[e] && !is_untouched(p->o.data + e * es, es))
            v->guards_bad++;
    for (size_t e = 0; p->lse && lse_logical && e < p->lse_n + GUARD; e++)
        if (!lse_logical[e] && !is_untouched((const unsigned char *)&p->lse[e], sizeof(float)))
            v->guards_bad++;
    free(logical);
    free(lse_logical);
}

static const char *algo_name(fat_cpu_algo algo)
{
    return algo == FAT_CPU_NAIVE ? "naive" : algo == FAT_CPU_FLASH_V1 ? "flash_v1" : "flash_v2";
}

static double tolerance(fat_dtype dt)
{
    return dt == FAT_FP32 ? TOL_FP32 : dt == FAT_FP16 ? TOL_FP16 : TOL_BF16;
}

static void describe(const struct tcase *c, fat_dtype dt, const fat_cpu_opts *o, char *buf, size_t n)
{
    snprintf(buf, n, "%s [%s %s bm%d bn%d t%d; B%d H%d/%d Sq%d Sk%d D%d causal%d win(%d,%d) cap%g "
             "scale%g %s/%s/%s%s%s]", c->name, fat_dtype_name(dt), algo_name(o->algo), o->block_m,
             o->block_n, o->threads, c->nseq ? c->nseq : c->batch, c->hq, c->hkv, c->sq, c->sk, c->d,
             c->causal, c->wl, c->wr, (double)c->softcap, (double)c->scale, layout_name[c->lq],
             layout_name[c->lkv], layout_name[c->lo], c->no_lse ? " nolse" : "",
             c->nseq ? " varlen" : "");
}

static void check_run(const struct problem *p, const fat_cpu_opts *o, fat_status st,
                      const double *ro, const double *rlse, const int *nvis)
{
    char what[512], line[640];
    struct verdict v;

    describe(p->c, p->dt, o, what, sizeof what);
    snprintf(line, sizeof line, "%s: returns FAT_OK", what);
    CHECK_INT(line, st, FAT_OK);
    if (st != FAT_OK) {
        fprintf(stderr, "  fat_last_error: %s\n", fat_last_error());
        return;
    }
    judge(p, ro, rlse, nvis, &v);
    snprintf(line, sizeof line, "%s: relative L2 error within the dtype's tolerance", what);
    CHECK_LE(line, v.rel_err, tolerance(p->dt));
    snprintf(line, sizeof line, "%s: no NaN in output or lse", what);
    CHECK_INT(line, v.nans, 0);
    snprintf(line, sizeof line, "%s: rows that see no key are exactly 0 with lse -inf", what);
    CHECK_INT(line, v.masked_bad, 0);
    snprintf(line, sizeof line, "%s: nothing written outside the output and lse", what);
    CHECK_INT(line, v.guards_bad, 0);
    if (p->lse) {
        snprintf(line, sizeof line, "%s: lse within %g", what, TOL_LSE);
        CHECK_LE(line, v.lse_err, TOL_LSE);
    }
}

/* The next opts of the rotation: block sizes of the flash orders through all of {16, 32, 64}^2,
 * threads through 1..4. */
static fat_cpu_opts rotate(fat_cpu_algo algo)
{
    static const int blocks[3] = { 16, 32, 64 };
    static int turn;
    fat_cpu_opts o = { algo, 0, 0, 0 };
    int r = turn++;

    if (algo != FAT_CPU_NAIVE) {
        o.block_m = blocks[r % 3];
        o.block_n = blocks[r / 3 % 3];
    }
    o.threads = 1 + r % 4;
    return o;
}

/* One case in one dtype: the reference once, then each of the n opts in list (list NULL: the
 * three orders with rotating block sizes and threads). */
static void run_case_with(const struct tcase *c, fat_dtype dt, const fat_cpu_opts *list, int n)
{
    struct problem p;
    double *ro = NULL, *rlse = NULL;
    int *nvis = NULL;
    size_t rows;

    if (problem_make(&p, c, dt))
        goto nomem;
    rows = p.lse_n > 0 ? p.lse_n : 1;
    ro = malloc(rows * c->d * sizeof *ro);
    rlse = malloc(rows * sizeof *rlse);
    nvis = malloc(rows * sizeof *nvis);
    if (!ro || !rlse || !nvis || reference(&p, ro, rlse, nvis))
        goto nomem;
    for (int i = 0; i < n; i++) {
        fat_cpu_opts o = list ? list[i] : rotate((fat_cpu_algo)(FAT_CPU_NAIVE + i));

        reset_output(&p);
        check_run(&p, &o, fat_attn_cpu(&p.args, &o), ro, rlse, nvis);
    }
    goto out;
nomem:
    CHECK("test setup: memory for the case", 0);
out:
    free(ro);
    free(rlse);
    free(nvis);
    problem_free(&p);
}

static void run_case(const struct tcase *c, fat_dtype dt)
{
    run_case_with(c, dt, NULL, 3);
}

static void run_all_dtypes(const struct tcase *c)
{
    run_case(c, FAT_FP32);
    run_case(c, FAT_FP16);
    run_case(c, FAT_BF16);
}

/* Fixed cases: each edge the contract names. Fields left out are 0; wl/wr must say -1. */
static const struct tcase fixed_cases[] = {
    /* name                        B  Hq Hkv Sq   Sk   D  causal wl  wr  cap  scale amp lq lkv lo */
    { "one query, one key",        1, 1, 1,  1,   1,   8,  0, -1, -1, 0, 0, 0, BSHD, BSHD, BSHD, 0, 0, {0}, {0} },
    { "tail 17",                   1, 2, 2,  17,  17,  64, 0, -1, -1, 0, 0, 0, BSHD, BSHD, BSHD, 0, 0, {0}, {0} },
    { "tail 63",                   1, 2, 1,  63,  63,  64, 0, -1, -1, 0, 0, 0, BSHD, BSHD, BSHD, 0, 0, {0}, {0} },
    { "tail 64",                   2, 2, 2,  64,  64,  64, 0, -1, -1, 0, 0, 0, BSHD, BSHD, BSHD, 0, 0, {0}, {0} },
    { "tail 65",                   1, 2, 2,  65,  65,  128, 0, -1, -1, 0, 0, 0, BSHD, BSHD, BSHD, 0, 0, {0}, {0} },
    { "tail 127",                  1, 1, 1,  127, 127, 32, 0, -1, -1, 0, 0, 0, BSHD, BSHD, BSHD, 0, 0, {0}, {0} },
    { "tail 129",                  2, 2, 1,  129, 129, 64, 0, -1, -1, 0, 0, 0, BSHD, BSHD, BSHD, 0, 0, {0}, {0} },
    { "head_dim 1",                1, 2, 2,  33,  40,  1,  0, -1, -1, 0, 0, 0, BSHD, BSHD, BSHD, 0, 0, {0}, {0} },
    { "head_dim 5",                1, 2, 2,  33,  40,  5,  1, -1, -1, 0, 0, 0, BSHD, BSHD, BSHD, 0, 0, {0}, {0} },
    { "head_dim 80",               1, 2, 2,  65,  63,  80, 0, -1, -1, 0, 0, 0, BSHD, BSHD, BSHD, 0, 0, {0}, {0} },
    { "head_dim 256",              1, 1, 1,  65,  70,  256, 0, -1, -1, 0, 0, 0, BSHD, BSHD, BSHD, 0, 0, {0}, {0} },
    { "sq < sk",                   1, 2, 2,  17,  129, 64, 0, -1, -1, 0, 0, 0, BSHD, BSHD, BSHD, 0, 0, {0}, {0} },
    { "sq > sk",                   1, 2, 2,  129, 17,  64, 0, -1, -1, 0, 0, 0, BSHD, BSHD, BSHD, 0, 0, {0}, {0} },
    { "one query row (decode)",    2, 4, 1,  1,   127, 128, 0, -1, -1, 0, 0, 0, BSHD, BSHD, BSHD, 0, 0, {0}, {0} },
    { "one key",                   1, 2, 2,  65,  1,   32, 0, -1, -1, 0, 0, 0, BSHD, BSHD, BSHD, 0, 0, {0}, {0} },
    { "causal square",             2, 2, 2,  129, 129, 64, 1, -1, -1, 0, 0, 0, BSHD, BSHD, BSHD, 0, 0, {0}, {0} },
    { "causal sq < sk",            1, 2, 2,  17,  129, 64, 1, -1, -1, 0, 0, 0, BSHD, BSHD, BSHD, 0, 0, {0}, {0} },
    { "causal sq > sk: top rows masked", 1, 2, 2, 129, 17, 64, 1, -1, -1, 0, 0, 0, BSHD, BSHD, BSHD, 0, 0, {0}, {0} },
    { "causal one key",            1, 1, 1,  65,  1,   16, 1, -1, -1, 0, 0, 0, BSHD, BSHD, BSHD, 0, 0, {0}, {0} },
    { "causal decode",             1, 2, 2,  1,   65,  64, 1, -1, -1, 0, 0, 0, BSHD, BSHD, BSHD, 0, 0, {0}, {0} },
    { "window left only",          1, 2, 2,  129, 129, 64, 0, 16, -1, 0, 0, 0, BSHD, BSHD, BSHD, 0, 0, {0}, {0} },
    { "window right only",         1, 2, 2,  65,  129, 64, 0, -1, 8,  0, 0, 0, BSHD, BSHD, BSHD, 0, 0, {0}, {0} },
    { "window both",               1, 2, 2,  127, 100, 64, 0, 32, 5,  0, 0, 0, BSHD, BSHD, BSHD, 0, 0, {0}, {0} },
    { "window diagonal only",      1, 1, 1,  64,  64,  32, 0, 0,  0,  0, 0, 0, BSHD, BSHD, BSHD, 0, 0, {0}, {0} },
    { "causal and window",         2, 2, 2,  129, 129, 64, 1, 7,  -1, 0, 0, 0, BSHD, BSHD, BSHD, 0, 0, {0}, {0} },
    { "window, sq > sk: masked rows", 1, 1, 1, 100, 20, 32, 0, 3, 0,  0, 0, 0, BSHD, BSHD, BSHD, 0, 0, {0}, {0} },
    { "softcap 30",                1, 2, 2,  65,  129, 64, 0, -1, -1, 30, 0, 3, BSHD, BSHD, BSHD, 0, 0, {0}, {0} },
    { "softcap 5 saturating",      1, 2, 2,  65,  65,  64, 1, -1, -1, 5, 1, 2, BSHD, BSHD, BSHD, 0, 0, {0}, {0} },
    { "explicit scale, peaky",     1, 2, 2,  64,  129, 64, 0, -1, -1, 0, 0.6f, 3, BSHD, BSHD, BSHD, 0, 0, {0}, {0} },
    { "GQA 8:1",                   1, 16, 2, 65,  129, 64, 0, -1, -1, 0, 0, 0, BSHD, BSHD, BSHD, 0, 0, {0}, {0} },
    { "MQA",                       2, 4, 1,  64,  100, 64, 1, -1, -1, 0, 0, 0, BSHD, BSHD, BSHD, 0, 0, {0}, {0} },
    { "BHSD",                      2, 2, 2,  65,  63,  64, 1, -1, -1, 0, 0, 0, BHSD, BHSD, BHSD, 0, 0, {0}, {0} },
    { "mixed layouts",             2, 4, 2,  33,  65,  40, 0, -1, -1, 0, 0, 0, BHSD, PADDED, BSHD, 0, 0, {0}, {0} },
    { "padded strides",            2, 2, 1,  65,  129, 24, 1, -1, -1, 0, 0, 0, PADDED, PADDED, PADDED, 0, 0, {0}, {0} },
    { "long keys",                 1, 2, 1,  65,  1024, 64, 0, -1, -1, 0, 0, 2, BSHD, BSHD, BSHD, 0, 0, {0}, {0} },
    { "medium causal",             1, 2, 2,  513, 513, 128, 1, -1, -1, 0, 0, 0, BSHD, BSHD, BSHD, 0, 0, {0}, {0} },
    { "no lse",                    1, 2, 2,  65,  65,  64, 1, -1, -1, 0, 0, 0, BSHD, BSHD, BSHD, 1, 0, {0}, {0} },
    /* varlen: sequence 1 has no queries, sequence 2 no keys (all its rows masked), and under
     * causal sequence 4 (33 queries, 9 keys) has masked top rows */
    { "varlen",                    0, 2, 2,  0,   0,   64, 0, -1, -1, 0, 0, 0, BSHD, BSHD, BSHD, 0, 5,
      { 17, 0, 64, 1, 33 }, { 20, 5, 0, 65, 9 } },
    { "varlen causal",             0, 2, 1,  0,   0,   32, 1, -1, -1, 0, 0, 0, BSHD, BSHD, BSHD, 0, 5,
      { 17, 0, 64, 1, 33 }, { 20, 5, 0, 65, 9 } },
    { "varlen window GQA strided", 0, 4, 2,  0,   0,   40, 1, 10, -1, 0, 0, 0, PADDED, BHSD, PADDED, 0, 5,
      { 129, 3, 0, 64, 65 }, { 100, 3, 7, 0, 129 } },
};

/* A random case: sizes from the tails list or anywhere up to 200, every feature by a coin. The
 * reference is O(B H Sq Sk D) in double, so the biggest ones are cut down. */
static void random_case(struct tcase *c)
{
    static const int tails[] = { 1, 17, 63, 64, 65, 127, 129 };
    static const int dims[] = { 1, 8, 16, 40, 64, 96, 128, 256 };

    memset(c, 0, sizeof *c);
    c->name = "random";
    c->batch = rand_int(1, 3);
    c->hkv = rand_int(1, 3);
    c->hq = c->hkv * rand_int(1, 4);
    c->sq = rand_int(0, 1) ? tails[rand_int(0, 6)] : rand_int(1, 200);
    c->sk = rand_int(0, 1) ? tails[rand_int(0, 6)] : rand_int(1, 200);
    c->d = dims[rand_int(0, 7)];
    c->causal = rand_int(0, 1);
    c->wl = rand_int(0, 3) == 0 ? rand_int(0, 40) : -1;
    c->wr = rand_int(0, 3) == 0 ? rand_int(0, 40) : -1;
    c->softcap = rand_int(0, 3) == 0 ? (float)(10.0 + 40.0 * uniform()) : 0.0f;
    c->scale = rand_int(0, 3) == 0 ? (float)(0.05 + 0.3 * uniform()) : 0.0f;
    c->amp = (float)(1.0 + 3.0 * uniform());
    c->lq = rand_int(0, NLAYOUTS - 1);
    c->lkv = rand_int(0, NLAYOUTS - 1);
    c->lo = rand_int(0, NLAYOUTS - 1);
    c->no_lse = rand_int(0, 4) == 0;
    while ((double)c->batch * c->hq * c->sq * c->sk * c->d > 4e6) {
        c->sq = (c->sq + 1) / 2;
        c->sk = (c->sk + 1) / 2;
    }
    if (rand_int(0, 3) == 0) {
        c->nseq = rand_int(1, MAX_SEQS);
        for (int b = 0; b < c->nseq; b++) {
            c->lens_q[b] = rand_int(0, c->sq);
            c->lens_k[b] = rand_int(0, c->sk);
        }
        c->lens_q[0] = c->sq;       /* the maxima must stay positive */
        c->lens_k[c->nseq - 1] = c->sk;
    }
}

static void test_attention(void)
{
    for (size_t i = 0; i < sizeof fixed_cases / sizeof fixed_cases[0]; i++)
        run_all_dtypes(&fixed_cases[i]);
    for (int i = 0; i < 90; i++) {
        struct tcase c;

        random_case(&c);
        run_case(&c, (fat_dtype)(FAT_FP16 + i % 3));
    }
}

/* Block sizes off the usual grid: one-row and one-key tiles, odd sizes, tiles longer than the
 * sequence. Every row's result must not care. */
static void test_odd_blocks(void)
{
    static const struct tcase c = { "odd blocks", 2, 4, 2, 70, 129, 24, 1, 40, -1, 0, 0, 2,
                                    BSHD, BHSD, PADDED, 0, 0, { 0 }, { 0 } };
    static const struct tcase cv = { "odd blocks varlen", 0, 2, 1, 0, 0, 16, 1, -1, 3, 0, 0, 0,
                                     BSHD, BSHD, BSHD, 0, 4, { 9, 40, 0, 1 }, { 30, 3, 5, 0 } };
    static const int sizes[][2] = { { 1, 1 }, { 7, 13 }, { 13, 7 }, { 100, 3 }, { 128, 256 }, { 4096, 4096 } };
    fat_cpu_opts list[12];
    int n = 0;

    for (int i = 0; i < 6; i++)
        for (int algo = FAT_CPU_FLASH_V1; algo <= FAT_CPU_FLASH_V2; algo++) {
            fat_cpu_opts o = { (fat_cpu_algo)algo, sizes[i][0], sizes[i][1], 2 };
            list[n++] = o;
        }
    run_case_with(&c, FAT_FP32, list, n);
    run_case_with(&cv, FAT_FP32, list, n);
}

/* opts NULL means flash_v2 on every core: same answers as an explicit flash_v2 with 64x64. */
static void test_default_opts(void)
{
    static const struct tcase c = { "default opts", 2, 4, 2, 100, 129, 64, 1, -1, -1, 0, 0, 0,
                                    BSHD, BSHD, BSHD, 0, 0, { 0 }, { 0 } };
    fat_cpu_opts explicit = { FAT_CPU_FLASH_V2, 64, 64, 1 };
    struct problem p;
    unsigned char *first = NULL;

    if (problem_make(&p, &c, FAT_BF16) || !(first = malloc(p.o.n * 2))) {
        CHECK("test setup: memory for default opts", 0);
        goto out;
    }
    CHECK_INT("opts NULL: returns FAT_OK", fat_attn_cpu(&p.args, NULL), FAT_OK);
    memcpy(first, p.o.data, p.o.n * 2);
    reset_output(&p);
    CHECK_INT("explicit flash_v2 64x64: returns FAT_OK", fat_attn_cpu(&p.args, &explicit), FAT_OK);
    CHECK("opts NULL gives the same bits as flash_v2 64x64", memcmp(first, p.o.data, p.o.n * 2) == 0);
out:
    free(first);
    problem_free(&p);
}

/* Thread count must not change a single bit: each row's arithmetic is independent of who runs it. */
static void test_threads(fat_dtype dt)
{
    static const struct tcase c = { "threads", 2, 4, 2, 129, 200, 72, 1, 50, -1, 0, 0, 0,
                                    BSHD, BHSD, PADDED, 0, 0, { 0 }, { 0 } };
    struct problem p;
    size_t obytes = 0, lbytes = 0;
    unsigned char *o1 = NULL;
    float *l1 = NULL;

    if (problem_make(&p, &c, dt))
        goto nomem;
    obytes = p.o.n * esize(dt);
    lbytes = (p.lse_n + GUARD) * sizeof(float);
    if (!(o1 = malloc(obytes)) || !(l1 = malloc(lbytes)))
        goto nomem;
    for (int algo = FAT_CPU_NAIVE; algo <= FAT_CPU_FLASH_V2; algo++) {
        int counts[3] = { 1, 4, 0 };
        char line[160];

        for (int t = 0; t < 3; t++) {
            fat_cpu_opts o = { (fat_cpu_algo)algo, 32, 16, counts[t] };

            reset_output(&p);
            snprintf(line, sizeof line, "%s %s threads %d: returns FAT_OK", algo_name(o.algo),
                     fat_dtype_name(dt), counts[t]);
            CHECK_INT(line, fat_attn_cpu(&p.args, &o), FAT_OK);
            if (t == 0) {
                memcpy(o1, p.o.data, obytes);
                memcpy(l1, p.lse, lbytes);
                continue;
            }
            snprintf(line, sizeof line, "%s %s: threads %d gives the same output bits as threads 1",
                     algo_name(o.algo), fat_dtype_name(dt), counts[t]);
            CHECK(line, memcmp(o1, p.o.data, obytes) == 0);
            snprintf(line, sizeof line, "%s %s: threads %d gives the same lse bits as threads 1",
                     algo_name(o.algo), fat_dtype_name(dt), counts[t]);
            CHECK(line, memcmp(l1, p.lse, lbytes) == 0);
        }
    }
    goto out;
nomem:
    CHECK("test setup: memory for the thread test", 0);
out:
    free(o1);
    free(l1);
    problem_free(&p);
}

/* ---- argument checks ---- */

/* A bad args struct must fail with FAT_ERR_INVALID and a message that names the field. */
static void expect_invalid(const char *what, const fat_attn_args *a, int gpu, const char *field)
{
    char line[200];

    snprintf(line, sizeof line, "%s%s: FAT_ERR_INVALID", what, gpu ? " (gpu)" : "");
    CHECK_INT(line, fat_attn_check(a, gpu), FAT_ERR_INVALID);
    snprintf(line, sizeof line, "%s%s: the message names it", what, gpu ? " (gpu)" : "");
    CHECK_STR_HAS(line, fat_last_error(), field);
}

static void expect_cpu_invalid(const char *what, const fat_attn_args *a, const fat_cpu_opts *o,
                               const char *field)
{
    char line[200];

    snprintf(line, sizeof line, "fat_attn_cpu, %s: FAT_ERR_INVALID", what);
    CHECK_INT(line, fat_attn_cpu(a, o), FAT_ERR_INVALID);
    snprintf(line, sizeof line, "fat_attn_cpu, %s: the message names it", what);
    CHECK_STR_HAS(line, fat_last_error(), field);
}

/* The checks never touch memory, so every pointer may point at this. */
static _Alignas(16) unsigned char dummy[64];

static void good_args(fat_attn_args *a)
{
    fat_attn_args_init(a, FAT_FP16, 2, 8, 2, 128, 256, 64);
    a->q = a->k = a->v = dummy;
    a->o = dummy;
}

static void test_args_init(void)
{
    fat_attn_args a;

    fat_attn_args_init(&a, FAT_BF16, 2, 8, 2, 128, 256, 64);
    CHECK_INT("args_init: q batch stride is seqlen_q * heads_q * head_dim", a.q_stride[0], 128 * 8 * 64);
    CHECK_INT("args_init: q sequence stride is heads_q * head_dim", a.q_stride[1], 8 * 64);
    CHECK_INT("args_init: q head stride is head_dim", a.q_stride[2], 64);
    CHECK_INT("args_init: o strides are q's", a.o_stride[0], a.q_stride[0]);
    CHECK_INT("args_init: k batch stride is seqlen_k * heads_kv * head_dim", a.k_stride[0], 256 * 2 * 64);
    CHECK_INT("args_init: v sequence stride is heads_kv * head_dim", a.v_stride[1], 2 * 64);
    CHECK_INT("args_init: windows unbounded", a.window_left + a.window_right, -2);
    CHECK("args_init: default scale, no mask, no softcap, no lse, no varlen",
          a.scale == 0.0f && !a.causal && a.softcap == 0.0f && !a.lse && !a.cu_seqlens_q &&
          !a.cu_seqlens_k && !a.q && !a.o);
    CHECK_INT("args_init: dtype kept", a.dtype, FAT_BF16);
}

static void test_check_sizes(void)
{
    fat_attn_args g, a;

    good_args(&g);
    CHECK_INT("valid args pass the CPU rules", fat_attn_check(&g, 0), FAT_OK);
    CHECK_INT("valid args pass the GPU rules", fat_attn_check(&g, 1), FAT_OK);
    expect_invalid("args NULL", NULL, 0, "args");
    a = g; a.dtype = (fat_dtype)0;
    expect_invalid("dtype 0", &a, 0, "dtype");
    a = g; a.dtype = (fat_dtype)9;
    expect_invalid("dtype 9", &a, 0, "dtype");
    a = g; a.dtype = FAT_FP32;
    CHECK_INT("fp32 passes the CPU rules", fat_attn_check(&a, 0), FAT_OK);
    expect_invalid("fp32 on the GPU", &a, 1, "dtype: fp32 is CPU-only");
    a = g; a.batch = 0;
    expect_invalid("batch 0", &a, 0, "batch");
    a = g; a.heads_q = -1;
    expect_invalid("heads_q -1", &a, 0, "heads_q");
    a = g; a.heads_kv = 0;
    expect_invalid("heads_kv 0", &a, 0, "heads_kv");
    a = g; a.heads_q = 12; a.heads_kv = 5;
    expect_invalid("heads_q 12, heads_kv 5", &a, 0, "heads_q: 12 is not a multiple of heads_kv 5");
    a = g; a.heads_q = 2; a.heads_kv = 4;
    expect_invalid("heads_kv above heads_q", &a, 0, "heads_q");
    a = g; a.seqlen_q = 0;
    expect_invalid("seqlen_q 0", &a, 0, "seqlen_q: must be positive");
    a = g; a.seqlen_k = -3;
    expect_invalid("seqlen_k -3", &a, 0, "seqlen_k");
    a = g; a.head_dim = 0;
    expect_invalid("head_dim 0", &a, 0, "head_dim");
    a = g; a.head_dim = 100;
    CHECK_INT("head_dim 100 passes the CPU rules", fat_attn_check(&a, 0), FAT_OK);
    expect_invalid("head_dim 100", &a, 1, "head_dim: 100 is not a multiple of 8");
    a = g; a.head_dim = 264;
    expect_invalid("head_dim 264", &a, 1, "head_dim");
    a = g; a.batch = 70000; a.seqlen_q = 70000;
    a.q_stride[0] = a.o_stride[0] = 0;
    expect_invalid("batch * seqlen_q past int32", &a, 1, "seqlen_q");
}

static void test_check_pointers(void)
{
    fat_attn_args g, a;
    static const int32_t cu[3] = { 0, 1, 2 };

    good_args(&g);
    a = g; a.q = NULL;
    expect_invalid("q NULL", &a, 0, "q: NULL pointer");
    a = g; a.k = NULL;
    expect_invalid("k NULL", &a, 0, "k: NULL pointer");
    a = g; a.v = NULL;
    expect_invalid("v NULL", &a, 0, "v: NULL pointer");
    a = g; a.o = NULL;
    expect_invalid("o NULL", &a, 0, "o: NULL pointer");
    a = g; a.q = dummy + 2;
    CHECK_INT("fp16 q at 2-byte alignment passes the CPU rules", fat_attn_check(&a, 0), FAT_OK);
    expect_invalid("q not 16-byte aligned", &a, 1, "q");
    a = g; a.v = dummy + 1;
    expect_invalid("fp16 v at an odd address", &a, 0, "v");
    a = g; a.o = dummy + 8;
    expect_invalid("o not 16-byte aligned", &a, 1, "o");
    a = g; a.lse = (float *)(void *)(dummy + 2);
    expect_invalid("lse not 4-byte aligned", &a, 0, "lse");
    a = g; a.cu_seqlens_q = cu;
    expect_invalid("cu_seqlens_q alone", &a, 0, "cu_seqlens_q and cu_seqlens_k must both be set or both NULL");
    a = g; a.cu_seqlens_k = cu;
    expect_invalid("cu_seqlens_k alone", &a, 0, "cu_seqlens_k");
}

static void test_check_mask(void)
{
    fat_attn_args g, a;

    good_args(&g);
    a = g; a.scale = NAN;
    expect_invalid("scale NaN", &a, 0, "scale: must be finite");
    a = g; a.scale = INFINITY;
    expect_invalid("scale inf", &a, 0, "scale");
    a = g; a.causal = 2;
    expect_invalid("causal 2", &a, 0, "causal");
    a = g; a.window_left = -2;
    expect_invalid("window_left -2", &a, 0, "window_left: -2 is below -1");
    a = g; a.window_right = -7;
    expect_invalid("window_right -7", &a, 0, "window_right");
    a = g; a.window_left = 0; a.window_right = 0;
    CHECK_INT("a zero-width window is valid", fat_attn_check(&a, 1), FAT_OK);
    a = g; a.softcap = -1.0f;
    expect_invalid("softcap -1", &a, 0, "softcap: must be >= 0");
    a = g; a.softcap = NAN;
    expect_invalid("softcap NaN", &a, 0, "softcap");
    a = g; a.softcap = INFINITY;
    expect_invalid("softcap inf", &a, 0, "softcap");
}

static void test_check_strides(void)
{
    static const int32_t cu[3] = { 0, 100, 128 };
    fat_attn_args g, a;

    good_args(&g);
    a = g; a.q_stride[1] = -1;
    expect_invalid("q sequence stride -1", &a, 0, "q_stride");
    a = g; a.v_stride[0] = -64;
    expect_invalid("v batch stride negative", &a, 0, "v_stride");
    a = g; a.k_stride[2] = 12;
    CHECK_INT("a k head stride of 12 passes the CPU rules", fat_attn_check(&a, 0), FAT_OK);
    expect_invalid("k head stride 12", &a, 1, "k_stride");
    a = g; a.o_stride[1] = 8 * 64 + 4;
    expect_invalid("o sequence stride not a multiple of 8", &a, 1, "o_stride");
    a = g; a.q_stride[0] = a.q_stride[1] = a.q_stride[2] = 0;
    CHECK_INT("zero strides (broadcast) pass", fat_attn_check(&a, 0), FAT_OK);
    a = g; a.q_stride[0] = INT64_MAX / 2;
    expect_invalid("q batch stride overflowing int64", &a, 0, "q_stride");
    a = g; a.k_stride[1] = INT64_MAX / 300;
    expect_invalid("k sequence stride overflowing int64", &a, 0, "k_stride");
    a = g; a.o_stride[1] = 0;
    expect_invalid("o sequence stride 0: rows overwrite each other", &a, 0, "o_stride[1]");
    a = g; a.seqlen_q = 1; a.o_stride[1] = 0;
    CHECK_INT("o sequence stride 0 with one row passes", fat_attn_check(&a, 0), FAT_OK);
    /* 2^62 fp16 outputs fit a pointer offset, 2^62 lse floats do not */
    fat_attn_args_init(&a, FAT_FP16, INT32_MAX, INT32_MAX, 1, 1, 1, 1);
    a.q = a.k = a.v = dummy;
    a.o = dummy;
    memset(a.q_stride, 0, sizeof a.q_stride);
    memset(a.k_stride, 0, sizeof a.k_stride);
    memset(a.v_stride, 0, sizeof a.v_stride);
    a.o_stride[0] = INT32_MAX; a.o_stride[1] = 0; a.o_stride[2] = 1;
    CHECK_INT("2^62 outputs with zero input strides and no lse pass the CPU rules", fat_attn_check(&a, 0), FAT_OK);
    a.lse = (float *)(void *)dummy;
    expect_invalid("lse of batch * heads_q * seqlen_q past a pointer offset", &a, 0, "lse");
    /* varlen ignores the batch stride, but bounds the rows by batch * seqlen */
    a = g; a.batch = 2; a.cu_seqlens_q = cu; a.cu_seqlens_k = cu;
    a.q_stride[0] = -5; a.o_stride[0] = 12345;
    CHECK_INT("varlen: a nonsense batch stride is ignored", fat_attn_check(&a, 1), FAT_OK);
    a.k_stride[1] = INT64_MAX / 400;
    expect_invalid("varlen: k rows past int64", &a, 0, "k_stride");
}

static void test_cpu_args(void)
{
    static const int32_t cu_ok[3] = { 0, 100, 128 }, cu_down[3] = { 0, 100, 90 };
    static const int32_t cu_long[3] = { 0, 300, 310 }, cu_late[3] = { 4, 100, 128 };
    fat_attn_args g, a;
    fat_cpu_opts o = { FAT_CPU_FLASH_V2, 0, 0, 1 };

    good_args(&g);
    a = g; a.head_dim = 0;
    expect_cpu_invalid("head_dim 0", &a, NULL, "head_dim");
    o.algo = (fat_cpu_algo)7;
    expect_cpu_invalid("algo 7", &g, &o, "algo");
    o.algo = FAT_CPU_FLASH_V1; o.block_m = -1;
    expect_cpu_invalid("block_m -1", &g, &o, "block_m");
    o.block_m = 0; o.block_n = 100000;
    expect_cpu_invalid("block_n 100000", &g, &o, "block_n");
    o.block_n = 0; o.threads = -2;
    expect_cpu_invalid("threads -2", &g, &o, "threads");
    a = g; a.cu_seqlens_q = cu_down; a.cu_seqlens_k = cu_ok;
    expect_cpu_invalid("cu_seqlens_q decreasing", &a, NULL, "cu_seqlens_q");
    a = g; a.cu_seqlens_q = cu_ok; a.cu_seqlens_k = cu_long;
    expect_cpu_invalid("cu_seqlens_k sequence longer than seqlen_k", &a, NULL, "cu_seqlens_k");
    a = g; a.cu_seqlens_q = cu_late; a.cu_seqlens_k = cu_ok;
    expect_cpu_invalid("cu_seqlens_q not starting at 0", &a, NULL, "cu_seqlens_q");

    /* scratch that size_t cannot count: FAT_ERR_NOMEM before anything is read or allocated */
    fat_attn_args_init(&a, FAT_FP32, 1, 1, 1, 2147483647, 1, 2147483640);
    a.q = a.k = a.v = dummy;
    a.o = dummy;
    memset(a.q_stride, 0, sizeof a.q_stride);
    memset(a.k_stride, 0, sizeof a.k_stride);
    memset(a.v_stride, 0, sizeof a.v_stride);
    memset(a.o_stride, 0, sizeof a.o_stride);
    a.o_stride[1] = 1;
    o.algo = FAT_CPU_FLASH_V1; o.threads = 1;
    CHECK_INT("flash_v1 on 2^31 rows of 2^31 floats: FAT_ERR_NOMEM", fat_attn_cpu(&a, &o), FAT_ERR_NOMEM);
    CHECK_STR_HAS("the out-of-memory message says what", fat_last_error(), "scratch");

    /* more work items than int64 counts: refused before anything is read */
    fat_attn_args_init(&a, FAT_FP32, 2000000000, 2000000000, 1, 2000000000, 1, 1);
    a.q = a.k = a.v = dummy;
    a.o = dummy;
    memset(a.q_stride, 0, sizeof a.q_stride);
    memset(a.k_stride, 0, sizeof a.k_stride);
    memset(a.v_stride, 0, sizeof a.v_stride);
    a.o_stride[0] = a.o_stride[1] = a.o_stride[2] = 1;
    o.algo = FAT_CPU_FLASH_V2;
    expect_cpu_invalid("2^93 query rows", &a, &o, "batch");
}

/* ---- status and names ---- */

static void *fail_in_thread(void *arg)
{
    fat_attn_args a;
    char *out = arg;

    good_args(&a);
    a.seqlen_q = 0;
    fat_attn_check(&a, 0);
    snprintf(out, 128, "%s", fat_last_error());
    return NULL;
}

static void test_status(void)
{
    static const fat_status codes[] = { FAT_OK, FAT_ERR_INVALID, FAT_ERR_UNSUPPORTED, FAT_ERR_NO_GPU,
                                        FAT_ERR_CUDA, FAT_ERR_NVRTC, FAT_ERR_TEMPLATE, FAT_ERR_DB,
                                        FAT_ERR_NOMEM, FAT_ERR_IO, FAT_ERR_NOT_FOUND };
    size_t n = sizeof codes / sizeof codes[0];
    int distinct = 1;
    char other[128] = "";
    fat_attn_args a;
    pthread_t t;

    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < i; j++)
            distinct &= strcmp(fat_strerror(codes[i]), fat_strerror(codes[j])) != 0;
    CHECK("every status code has its own name", distinct);
    CHECK_STR_HAS("FAT_ERR_INVALID is an invalid argument", fat_strerror(FAT_ERR_INVALID), "invalid");
    CHECK_STR_HAS("FAT_ERR_NOMEM is out of memory", fat_strerror(FAT_ERR_NOMEM), "memory");
    CHECK_STR_HAS("an unknown code still has a name", fat_strerror((fat_status)99), "unknown");
    CHECK_STR_HAS("fp16 name", fat_dtype_name(FAT_FP16), "fp16");
    CHECK_STR_HAS("bf16 name", fat_dtype_name(FAT_BF16), "bf16");
    CHECK_STR_HAS("fp32 name", fat_dtype_name(FAT_FP32), "fp32");
    CHECK_STR_HAS("unknown dtype name", fat_dtype_name((fat_dtype)0), "?");

    /* fat_last_error is per thread: a failure elsewhere leaves this thread's message alone */
    good_args(&a);
    a.batch = 0;
    fat_attn_check(&a, 0);
    if (pthread_create(&t, NULL, fail_in_thread, other) == 0) {
        pthread_join(t, NULL);
        CHECK_STR_HAS("the other thread saw its own message", other, "seqlen_q");
        CHECK_STR_HAS("this thread's message is unchanged", fat_last_error(), "batch");
    } else {
        SKIP("fat_last_error per thread", "pthread_create failed");
    }
}

/* ---- fp16 / bf16 conversions ---- */

static uint32_t bits(float f)
{
    uint32_t x;

    memcpy(&x, &f, 4);
    return x;
}

static float from_bits(uint32_t x)
{
    float f;

    memcpy(&f, &x, 4);
    return f;
}

static void test_fp16(void)
{
    long mismatch = 0, nan_bad = 0, tie_bad = 0;

    /* every bit pattern: widening is exact, so narrowing it back is the identity */
    for (uint32_t h = 0; h < 0x10000; h++) {
        float f = fp16_to_float((uint16_t)h);
        int is_nan = (h & 0x7c00) == 0x7c00 && (h & 0x3ff);

        if (!is_nan)
            mismatch += float_to_fp16(f) != h;
        else
            nan_bad += !isnan(f) || !isnan(fp16_to_float(float_to_fp16(f))) ||
                       ((h & 0x200) && float_to_fp16(f) != h);  /* quiet NaNs keep sign and payload */
    }
    CHECK_INT("fp16 -> float -> fp16 is the identity on all 63488 non-NaN patterns", mismatch, 0);
    CHECK_INT("fp16 NaNs stay NaN; quiet ones keep their bits", nan_bad, 0);

    /* every rounding boundary between neighbouring finite halves, both signs: the midpoint goes to
     * the even one, the floats just below and above it to the nearer one */
    for (uint32_t h = 0; h < 0x7bff; h++) {
        float a = fp16_to_float((uint16_t)h), b = fp16_to_float((uint16_t)(h + 1));
        float mid = (a + b) / 2;                /* exact: halves have 11 significant bits */
        uint16_t even = (uint16_t)((h & 1) ? h + 1 : h);

        tie_bad += float_to_fp16(mid) != even;
        tie_bad += float_to_fp16(-mid) != (even | 0x8000);
        tie_bad += float_to_fp16(nextafterf(mid, 0.0f)) != h;
        tie_bad += float_to_fp16(nextafterf(mid, INFINITY)) != h + 1;
    }
    CHECK_INT("fp16 rounds to nearest, ties to even, at every boundary", tie_bad, 0);

    CHECK("fp16 0x3c00 is 1", fp16_to_float(0x3c00) == 1.0f);
    CHECK("fp16 0x7bff is 65504", fp16_to_float(0x7bff) == 65504.0f);
    CHECK("fp16 0x0001 is 2^-24", fp16_to_float(0x0001) == 0x1p-24f);
    CHECK("fp16 0x0400 is 2^-14", fp16_to_float(0x0400) == 0x1p-14f);
    CHECK("fp16 0xfc00 is -inf", isinf(fp16_to_float(0xfc00)) && fp16_to_float(0xfc00) < 0);
    CHECK("fp16 0x8000 is -0", fp16_to_float(0x8000) == 0.0f && signbit(fp16_to_float(0x8000)));
    CHECK_INT("65519 rounds down to 65504", float_to_fp16(65519.0f), 0x7bff);
    CHECK_INT("65520 rounds to inf", float_to_fp16(65520.0f), 0x7c00);
    CHECK_INT("-1e10 overflows to -inf", float_to_fp16(-1e10f), 0xfc00);
    CHECK_INT("inf stays inf", float_to_fp16(INFINITY), 0x7c00);
    CHECK_INT("2^-25 ties to zero", float_to_fp16(0x1p-25f), 0x0000);
    CHECK_INT("just above 2^-25 rounds up to the smallest subnormal", float_to_fp16(nextafterf(0x1p-25f, 1.0f)), 0x0001);
    CHECK_INT("1.5 * 2^-24 ties to even (2 * 2^-24)", float_to_fp16(0x1.8p-24f), 0x0002);
    CHECK_INT("the smallest float subnormal is -0 when negative", float_to_fp16(-FLT_TRUE_MIN), 0x8000);
    CHECK_INT("1 + 2^-11 ties to 1", float_to_fp16(1.0f + 0x1p-11f), 0x3c00);
    CHECK_INT("1 + 3 * 2^-11 ties to 1 + 2^-9", float_to_fp16(1.0f + 0x3p-11f), 0x3c02);
    CHECK("a float NaN becomes an fp16 NaN", isnan(fp16_to_float(float_to_fp16(NAN))));
    CHECK("a signalling float NaN does not become inf", isnan(fp16_to_float(float_to_fp16(from_bits(0x7f800001u)))));
}

static void test_bf16(void)
{
    long mismatch = 0, tie_bad = 0;

    for (uint32_t h = 0; h < 0x10000; h++) {
        float f = bf16_to_float((uint16_t)h);

        if (!isnan(f))
            mismatch += float_to_bf16(f) != h;
    }
    CHECK_INT("bf16 -> float -> bf16 is the identity on every non-NaN pattern", mismatch, 0);
    for (uint32_t h = 0; h < 0x7f7f; h++) {
        float a = bf16_to_float((uint16_t)h), b = bf16_to_float((uint16_t)(h + 1));
        float mid = a + (b - a) / 2;            /* exact: one more bit than bf16 has */
        uint16_t even = (uint16_t)((h & 1) ? h + 1 : h);

        tie_bad += float_to_bf16(mid) != even;
        tie_bad += float_to_bf16(-mid) != (even | 0x8000);
        tie_bad += float_to_bf16(nextafterf(mid, 0.0f)) != h;
        tie_bad += float_to_bf16(nextafterf(mid, INFINITY)) != h + 1;
    }
    CHECK_INT("bf16 rounds to nearest, ties to even, at every boundary (subnormals too)", tie_bad, 0);

    CHECK_INT("bf16 of 1", float_to_bf16(1.0f), 0x3f80);
    CHECK_INT("bf16 of -2.5", float_to_bf16(-2.5f), 0xc020);
    CHECK_INT("bf16 of pi rounds down", float_to_bf16(3.14159265f), 0x4049);
    CHECK_INT("bf16 of 1 + 2^-8 ties to even (1)", float_to_bf16(1.0f + 0x1p-8f), 0x3f80);
    CHECK_INT("bf16 of 1 + 3 * 2^-8 ties to even (1 + 2^-6)", float_to_bf16(1.0f + 0x3p-8f), 0x3f82);
    CHECK_INT("bf16 of 1 + 2^-8 + 2^-20 rounds up", float_to_bf16(1.0f + 0x1p-8f + 0x1p-20f), 0x3f81);
    CHECK_INT("bf16 of 0.1", float_to_bf16(0.1f), 0x3dcd);
    CHECK_INT("FLT_MAX rounds to inf", float_to_bf16(FLT_MAX), 0x7f80);
    CHECK_INT("-inf stays -inf", float_to_bf16(-INFINITY), 0xff80);
    CHECK_INT("-0 stays -0", float_to_bf16(-0.0f), 0x8000);
    CHECK_INT("a float subnormal tie goes to even", float_to_bf16(from_bits(0x00018000u)), 0x0002);
    CHECK_INT("the smallest float subnormal rounds to 0", float_to_bf16(FLT_TRUE_MIN), 0x0000);
    CHECK("a signalling float NaN stays NaN", isnan(bf16_to_float(float_to_bf16(from_bits(0x7f800001u)))));
    CHECK("bf16 of NaN is NaN", isnan(bf16_to_float(float_to_bf16(NAN))));
    CHECK_INT("bf16 widening is the top half of a float", bits(bf16_to_float(0x4049)), 0x40490000u);
}

static void test_half_arrays(void)
{
    float src[5] = { 1.0f, -2.5f, 65504.0f, 0x1p-24f, 0.0f }, back[5];
    uint16_t h[5];
    float f32[5];
    int same = 1;

    half_encode(FAT_FP16, src, h, 5);
    half_decode(FAT_FP16, h, back, 5);
    for (int i = 0; i < 5; i++)
        same &= back[i] == src[i];
    CHECK("fp16 arrays of representable values round trip", same);
    half_encode(FAT_BF16, src, h, 5);
    half_decode(FAT_BF16, h, back, 5);
    CHECK("bf16 arrays: 1 and -2.5 round trip", back[0] == 1.0f && back[1] == -2.5f);
    CHECK("bf16 arrays: 65504 rounds to 65536", back[2] == 65536.0f);
    half_encode(FAT_FP32, src, f32, 5);
    half_decode(FAT_FP32, f32, back, 5);
    CHECK("fp32 arrays are copied", memcmp(back, src, sizeof src) == 0);
}

/* ---- timing (-b) ---- */

static double seconds(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void bench(void)
{
    static const struct tcase c = { "bench", 2, 8, 8, 1024, 1024, 128, 0, -1, -1, 0, 0, 0,
                                    BSHD, BSHD, BSHD, 0, 0, { 0 }, { 0 } };
    struct problem p;

    if (problem_make(&p, &c, FAT_FP16)) {
        CHECK("test setup: memory for the benchmark", 0);
        problem_free(&p);
        return;
    }
    for (int causal = 0; causal <= 1; causal++) {
        p.args.causal = causal;
        for (int algo = FAT_CPU_NAIVE; algo <= FAT_CPU_FLASH_V2; algo++) {
            fat_cpu_opts o = { (fat_cpu_algo)algo, 0, 0, 0 };
            double t0 = seconds(), t;
            fat_status st = fat_attn_cpu(&p.args, &o);
            double flops = 4.0 * 2 * 8 * 1024.0 * 1024 * 128 / (causal ? 2 : 1);

            t = seconds() - t0;
            printf("bench B2 H8 S1024 D128 fp16 %-6s %-8s %8.1f ms %6.2f GFLOP/s %s\n",
                   causal ? "causal" : "full", algo_name(o.algo), t * 1e3, flops / t * 1e-9,
                   st == FAT_OK ? "" : fat_last_error());
        }
    }
    problem_free(&p);
}

/* ---- a KV cache: lengths per sequence, the append, paged keys and values ---- */

enum { KB = 3, KSQ = 5, KHQ = 4, KHK = 2, KD = 24, KCAP = 40, KNEW = 3, KPAGE = 8, KSTRIDE = KCAP / KPAGE,
       KPAGES = 2 * KB * KSTRIDE };
static const int32_t kv_have[KB] = { 0, 7, 29 };        /* keys in each cache before the call */

/* n random elements of dt (values in [-1, 1)) */
static unsigned char *random_elems(fat_dtype dt, size_t n)
{
    unsigned char *x = malloc(n * esize(dt));
    for (size_t i = 0; x && i < n; i++) {
        float f = (float)(2.0 * uniform() - 1.0);
        half_encode(dt, &f, x + i * esize(dt), 1);
    }
    return x;
}

/* The varlen call on the sequences' keys laid out one after another: what the KV cache call
 * must give, bit for bit (same loop order, same lengths). keys[b] points at sequence b's rows
 * [len][KHK][KD] of k (and of v at vals[b]); q is [KB][KSQ][KHQ][KD], which varlen reads packed. */
static fat_status kv_expected(fat_dtype dt, const unsigned char *q, unsigned char *const keys[KB],
                              unsigned char *const vals[KB], const int32_t len[KB], int causal, void *o, float *lse)
{
    size_t es = esize(dt), row = (size_t)KHK * KD * es;
    int32_t cq[KB + 1] = { 0 }, ck[KB + 1] = { 0 };
    int maxk = 0;
    for (int b = 0; b < KB; b++) {
        cq[b + 1] = cq[b] + KSQ;
        ck[b + 1] = ck[b] + len[b];
        maxk = len[b] > maxk ? len[b] : maxk;
    }
    unsigned char *pk = malloc((size_t)(ck[KB] ? ck[KB] : 1) * row), *pv = malloc((size_t)(ck[KB] ? ck[KB] : 1) * row);
    fat_status st = FAT_ERR_NOMEM;
    if (pk && pv) {
        for (int b = 0; b < KB; b++) {
            memcpy(pk + (size_t)ck[b] * row, keys[b], (size_t)len[b] * row);
            memcpy(pv + (size_t)ck[b] * row, vals[b], (size_t)len[b] * row);
        }
        fat_attn_args a;
        fat_attn_args_init(&a, dt, KB, KHQ, KHK, KSQ, maxk, KD);
        a.q = q;
        a.k = pk;
        a.v = pv;
        a.o = o;
        a.lse = lse;
        a.causal = causal;
        a.cu_seqlens_q = cq;
        a.cu_seqlens_k = ck;
        a.total_q = cq[KB];
        a.total_k = ck[KB];
        st = fat_attn_cpu(&a, NULL);
    }
    free(pk);
    free(pv);
    return st;
}

static void test_kv_cache_dtype(fat_dtype dt)
{
    const char *dn = dt == FAT_FP32 ? "fp32" : dt == FAT_BF16 ? "bf16" : "fp16";
    size_t es = esize(dt), row = (size_t)KHK * KD * es, page = (size_t)KPAGE * row;
    size_t nq = (size_t)KB * KSQ * KHQ * KD, ncache = (size_t)KB * KCAP * KHK * KD, nnew = (size_t)KB * KNEW * KHK * KD;
    unsigned char *q = random_elems(dt, nq), *k = random_elems(dt, ncache), *v = random_elems(dt, ncache);
    unsigned char *kn = random_elems(dt, nnew), *vn = random_elems(dt, nnew);
    unsigned char *pk = random_elems(dt, (size_t)KPAGES * KPAGE * KHK * KD), *pv = random_elems(dt, (size_t)KPAGES * KPAGE * KHK * KD);
    unsigned char *pk0 = malloc((size_t)KPAGES * page);
    unsigned char *o = malloc(nq * es), *o_ref = malloc(nq * es), *o2 = malloc(nq * es);
    float *lse = malloc((size_t)KB * KHQ * KSQ * sizeof(float)), *lse_ref = malloc((size_t)KB * KHQ * KSQ * sizeof(float));
    int32_t table[KB * KSTRIDE], perm[KPAGES], have[KB], len[KB];
    char what[200];

    if (!q || !k || !v || !kn || !vn || !pk || !pv || !pk0 || !o || !o_ref || !o2 || !lse || !lse_ref) {
        CHECK("kv cache: test buffers allocated", 0);
        goto out;
    }
    memcpy(have, kv_have, sizeof have);
    for (int i = 0; i < KPAGES; i++)
        perm[i] = i;
    for (int i = KPAGES - 1; i > 0; i--) {                 /* pages in a shuffled order */
        int j = rand_int(0, i), t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
    for (int i = 0; i < KB * KSTRIDE; i++)
        table[i] = perm[i];
    /* the paged cache holds the contiguous cache's rows: page table[b][j / KPAGE], row j % KPAGE */
    for (int b = 0; b < KB; b++)
        for (int j = 0; j < KCAP; j++) {
            memcpy(pk + (size_t)table[b * KSTRIDE + j / KPAGE] * page + (size_t)(j % KPAGE) * row,
                   k + ((size_t)b * KCAP + j) * row, row);
            memcpy(pv + (size_t)table[b * KSTRIDE + j / KPAGE] * page + (size_t)(j % KPAGE) * row,
                   v + ((size_t)b * KCAP + j) * row, row);
        }
    memcpy(pk0, pk, (size_t)KPAGES * page);

    /* what every call below must give: attention on each sequence's cache after the append */
    unsigned char *keys[KB], *vals[KB];
    unsigned char *ek = malloc(ncache * es), *ev = malloc(ncache * es);
    if (!ek || !ev) {
        CHECK("kv cache: test buffers allocated", 0);
        free(ek);
        free(ev);
        goto out;
    }
    memcpy(ek, k, ncache * es);
    memcpy(ev, v, ncache * es);
    for (int b = 0; b < KB; b++) {
        memcpy(ek + ((size_t)b * KCAP + have[b]) * row, kn + (size_t)b * KNEW * row, (size_t)KNEW * row);
        memcpy(ev + ((size_t)b * KCAP + have[b]) * row, vn + (size_t)b * KNEW * row, (size_t)KNEW * row);
        keys[b] = ek + (size_t)b * KCAP * row;
        vals[b] = ev + (size_t)b * KCAP * row;
        len[b] = have[b] + KNEW;
    }
    snprintf(what, sizeof what, "kv cache %s: the varlen call on the appended caches runs", dn);
    CHECK_INT(what, kv_expected(dt, q, keys, vals, len, 1, o_ref, lse_ref), FAT_OK);

    /* 1. a contiguous cache [KB, KCAP, KHK, KD], k_new appended at cache_seqlens */
    fat_attn_args a;
    fat_attn_args_init(&a, dt, KB, KHQ, KHK, KSQ, KCAP, KD);
    a.q = q;
    a.k = k;
    a.v = v;
    a.o = o;
    a.lse = lse;
    a.causal = 1;
    a.cache_seqlens = have;
    a.k_new = kn;
    a.v_new = vn;
    a.seqlen_new = KNEW;
    for (int i = 0; i < 3; i++)
        a.k_new_stride[i] = a.v_new_stride[i] = i == 0 ? (int64_t)KNEW * KHK * KD : i == 1 ? KHK * KD : KD;
    snprintf(what, sizeof what, "kv cache %s: contiguous, append 3 rows, causal: runs", dn);
    CHECK_INT(what, fat_attn_cpu(&a, NULL), FAT_OK);
    int same_lse = 1;                   /* lse [batch][head][row] here, [head][total_q] for varlen */
    for (int b = 0; b < KB; b++)
        for (int h = 0; h < KHQ; h++)
            for (int i = 0; i < KSQ; i++)
                same_lse &= lse[(b * KHQ + h) * KSQ + i] == lse_ref[h * KB * KSQ + b * KSQ + i];
    snprintf(what, sizeof what, "kv cache %s: contiguous: the output and lse are the varlen call's, bit for bit", dn);
    CHECK(what, memcmp(o, o_ref, nq * es) == 0 && same_lse);
    snprintf(what, sizeof what, "kv cache %s: contiguous: k_new and v_new written at cache_seqlens, nothing else", dn);
    CHECK(what, memcmp(k, ek, ncache * es) == 0 && memcmp(v, ev, ncache * es) == 0);

    /* 2. the same through pages in a shuffled order */
    fat_attn_args pa = a;
    pa.k = pk;
    pa.v = pv;
    pa.o = o2;
    pa.block_table = table;
    pa.block_table_stride = KSTRIDE;
    pa.page_size = KPAGE;
    pa.num_pages = KPAGES;
    pa.k_stride[0] = pa.v_stride[0] = (int64_t)KPAGE * KHK * KD;
    pa.k_stride[1] = pa.v_stride[1] = KHK * KD;
    snprintf(what, sizeof what, "kv cache %s: paged (page 8, pages shuffled), append: runs", dn);
    CHECK_INT(what, fat_attn_cpu(&pa, NULL), FAT_OK);
    snprintf(what, sizeof what, "kv cache %s: paged: the contiguous cache's output, bit for bit", dn);
    CHECK(what, memcmp(o2, o_ref, nq * es) == 0);
    int only_new = 1;
    for (int pg = 0; pg < KPAGES; pg++)
        for (int r = 0; r < KPAGE; r++) {
            int want_new = 0;
            for (int b = 0; b < KB; b++)
                for (int j = have[b]; j < have[b] + KNEW; j++)
                    if (table[b * KSTRIDE + j / KPAGE] == pg && j % KPAGE == r) {
                        want_new = 1;
                        only_new &= memcmp(pk + (size_t)pg * page + (size_t)r * row,
                                           kn + ((size_t)b * KNEW + (size_t)(j - have[b])) * row, row) == 0;
                    }
            if (!want_new)
                only_new &= memcmp(pk + (size_t)pg * page + (size_t)r * row, pk0 + (size_t)pg * page + (size_t)r * row,
                                   row) == 0;
        }
    snprintf(what, sizeof what, "kv cache %s: paged: the appended rows land in their pages (across a page boundary "
             "at 7..9), every other row of the pool untouched", dn);
    CHECK(what, only_new);

    /* 3. no append, no cache_seqlens: every sequence attends to seqlen_k keys of its pages */
    fat_attn_args full = pa;
    full.cache_seqlens = NULL;
    full.k_new = full.v_new = NULL;
    full.seqlen_new = 0;
    int32_t cap[KB] = { KCAP, KCAP, KCAP };
    for (int b = 0; b < KB; b++) {
        keys[b] = ek + (size_t)b * KCAP * row;
        vals[b] = ev + (size_t)b * KCAP * row;
    }
    snprintf(what, sizeof what, "kv cache %s: paged, no cache_seqlens: runs", dn);
    CHECK_INT(what, fat_attn_cpu(&full, NULL), FAT_OK);
    CHECK_INT("kv cache: the varlen call of the whole caches runs", kv_expected(dt, q, keys, vals, cap, 1, o_ref, lse_ref), FAT_OK);
    snprintf(what, sizeof what, "kv cache %s: paged, no cache_seqlens: seqlen_k keys each, bit for bit", dn);
    CHECK(what, memcmp(o2, o_ref, nq * es) == 0);

    /* 4. what is read on the host is checked before anything is written */
    memcpy(pk0, pk, (size_t)KPAGES * page);
    memset(o2, 0x5a, nq * es);
    int32_t bad_table[KB * KSTRIDE];
    memcpy(bad_table, table, sizeof bad_table);
    bad_table[2 * KSTRIDE + 3] = KPAGES;                      /* sequence 2 (32 keys) reads its 4th page */
    fat_attn_args bt = pa;
    bt.block_table = bad_table;
    expect_cpu_invalid("a block-table entry past num_pages", &bt, NULL, "block_table[2][3]: page 30 is outside");
    bad_table[2 * KSTRIDE + 3] = -1;
    expect_cpu_invalid("a negative block-table entry", &bt, NULL, "block_table[2][3]");
    bad_table[2 * KSTRIDE + 3] = table[2 * KSTRIDE + 3];
    bad_table[2 * KSTRIDE + 4] = 12345;                       /* its 5th is never read */
    bad_table[0 * KSTRIDE + 4] = -7;                          /* sequence 0 (3 keys) never reads it */
    snprintf(what, sizeof what, "kv cache %s: an entry past a sequence's keys is never read, so any value passes", dn);
    CHECK_INT(what, fat_attn_cpu(&bt, NULL), FAT_OK);
    memcpy(pk, pk0, (size_t)KPAGES * page);
    memset(o2, 0x5a, nq * es);
    int32_t over[KB] = { 0, 37, 29 };                         /* 37 + 3 fits 40 exactly; 38 would not */
    fat_attn_args ov = pa;
    ov.cache_seqlens = over;
    ov.block_table = table;
    snprintf(what, sizeof what, "kv cache %s: a cache filled to seqlen_k exactly runs", dn);
    CHECK_INT(what, fat_attn_cpu(&ov, NULL), FAT_OK);
    memcpy(pk, pk0, (size_t)KPAGES * page);
    memset(o2, 0x5a, nq * es);
    over[1] = 38;
    expect_cpu_invalid("a cache too short for cache_seqlens + seqlen_new", &ov, NULL, "cache_seqlens[1]: 38 keys + seqlen_new");
    over[1] = -1;
    expect_cpu_invalid("a negative cache_seqlens", &ov, NULL, "cache_seqlens[1]: -1 is negative");
    int untouched = memcmp(pk, pk0, (size_t)KPAGES * page) == 0;
    for (size_t i = 0; i < nq * es; i++)
        untouched &= o2[i] == 0x5a;
    snprintf(what, sizeof what, "kv cache %s: refused calls write neither the cache nor the output", dn);
    CHECK(what, untouched);
    free(ek);
    free(ev);
out:
    free(q); free(k); free(v); free(kn); free(vn); free(pk); free(pv); free(pk0);
    free(o); free(o_ref); free(o2); free(lse); free(lse_ref);
}

/* The KV cache fields as fat_attn_check reads them (the struct alone). */
static void test_check_kv_cache(void)
{
    static _Alignas(16) int32_t lens[4], table[16];
    fat_attn_args g, a;

    good_args(&g);
    g.cache_seqlens = lens;
    g.block_table = table;
    g.block_table_stride = 16;
    g.page_size = 16;
    g.num_pages = 8;
    g.k_stride[0] = g.v_stride[0] = 16 * 2 * 64;
    CHECK_INT("a paged cache passes the CPU rules", fat_attn_check(&g, 0), FAT_OK);
    CHECK_INT("a paged cache passes the GPU rules", fat_attn_check(&g, 1), FAT_OK);
    a = g; a.page_size = 12;
    expect_invalid("page_size 12", &a, 0, "page_size: 12, want a multiple of 8 from 8 to 256");
    a = g; a.page_size = 512;
    expect_invalid("page_size 512", &a, 1, "page_size: 512");
    a = g; a.num_pages = 0;
    expect_invalid("num_pages 0 with a block table", &a, 0, "num_pages");
    a = g; a.block_table_stride = 0;
    expect_invalid("block_table_stride 0", &a, 0, "block_table_stride");
    a = g; a.block_table_stride = 15;
    expect_invalid("seqlen_k 256 over 15 pages of 16", &a, 0, "seqlen_k: 256 keys per sequence, but block_table_stride 15");
    a = g; a.block_table = (const int32_t *)(dummy + 2);
    expect_invalid("a misaligned block table", &a, 0, "block_table: pointer");
    a = g; a.cu_seqlens_q = a.cu_seqlens_k = lens;
    expect_invalid("a block table with varlen", &a, 0, "block_table: not with cu_seqlens");
    a = g; a.k_new = dummy;
    expect_invalid("k_new without v_new", &a, 0, "k_new and v_new");
    a = g; a.k_new = a.v_new = dummy; a.seqlen_new = 0;
    expect_invalid("k_new with seqlen_new 0", &a, 0, "seqlen_new: must be positive");
    a = g; a.k_new = a.v_new = dummy; a.seqlen_new = 300;
    expect_invalid("seqlen_new above seqlen_k", &a, 0, "seqlen_new: 300 rows do not fit");
    a = g; a.cache_seqlens = NULL; a.k_new = a.v_new = dummy; a.seqlen_new = 1;
    a.k_new_stride[2] = a.v_new_stride[2] = 64;
    expect_invalid("k_new without cache_seqlens", &a, 0, "k_new: needs cache_seqlens");
    a = g; a.k_new = a.v_new = dummy; a.seqlen_new = 2;
    a.k_new_stride[0] = a.v_new_stride[0] = 2 * 2 * 64;
    a.k_new_stride[1] = a.v_new_stride[1] = 2 * 64;
    a.k_new_stride[2] = a.v_new_stride[2] = 64;
    CHECK_INT("an append of 2 rows passes", fat_attn_check(&a, 1), FAT_OK);
    a.k_new_stride[1] = 12;
    expect_invalid("a k_new stride that is not a multiple of 8 (GPU)", &a, 1, "k_new_stride[1]");
    a.k_new_stride[1] = 2 * 64;
    a.k_stride[1] = 0;
    expect_invalid("a zero row stride in a cache the call appends to", &a, 0, "k_stride[1]: 0");
    a = g; a.k_stride[1] = 0;
    CHECK_INT("a zero row stride in a cache only read is a broadcast, allowed", fat_attn_check(&a, 0), FAT_OK);
}

static void test_kv_cache(void)
{
    test_check_kv_cache();
    test_kv_cache_dtype(FAT_FP32);
    test_kv_cache_dtype(FAT_BF16);
}

int main(int argc, char **argv)
{
    int do_bench = 0;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-v") == 0)
            test_verbose = 1;
        else if (strcmp(argv[i], "-b") == 0)
            do_bench = 1;
    }
    test_fp16();
    test_bf16();
    test_half_arrays();
    test_status();
    test_args_init();
    test_check_sizes();
    test_check_pointers();
    test_check_mask();
    test_check_strides();
    test_cpu_args();
    test_attention();
    test_odd_blocks();
    test_default_opts();
    test_threads(FAT_FP32);
    test_threads(FAT_BF16);
    test_kv_cache();
    if (do_bench)
        bench();
    return test_done("cpu");
}
