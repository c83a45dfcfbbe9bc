/*
 * bench.h: one problem instantiated on the GPU: random inputs, a guarded output, a run, the
 * comparison with a reference, and timing. Shared by the tuner and the GPU test tier.
 */
#ifndef FAT_BENCH_H
#define FAT_BENCH_H

#include "gen.h"
#include "launch.h"

/* How the tensors of a case are laid out and masked (all zero: BSHD, no window, no LSE). */
typedef struct bench_layout {
    int bhsd;                   /* 1: batch, head, seq, dim; 0: batch, seq, head, dim */
    int pad;                    /* extra elements after each row of head_dim (a multiple of 8) */
    int window_left, window_right;   /* used when the problem has FAT_FEAT_WINDOW */
    float softcap;              /* used when the problem has FAT_FEAT_SOFTCAP */
    int with_lse;
    const int *lens_q, *lens_k; /* varlen: batch lengths (problem has FAT_FEAT_VARLEN) */
    int timing_only;            /* 1: inputs are one random block repeated on the device, made in
                                   milliseconds whatever the size; no host copies, so no CPU
                                   reference (the tuner's timed problem) */
    /* A KV cache (the problem's FAT_FEAT_PAGED, _CACHE, _APPEND): k and v are a cache of seqlen_k
     * keys per sequence, paged with the problem's page size (every page of every sequence, plus
     * BENCH_SPARE_PAGES never named, in an order shuffled from the seed) or [batch, seqlen_k];
     * with an append, seqlen_q new rows per sequence (k_new, v_new) are written at cache_lens[b]. */
    const int *cache_lens;      /* [batch] keys already cached (FAT_FEAT_CACHE); NULL: seqlen_k less the
                                   new rows for timing, lengths spread over the cache otherwise */
    float key_ramp;             /* != 0: scores that rise toward the first keys (Q and K made positive,
                                   key i of a sequence times 1 + |key_ramp| * ((seqlen_k - 1 - i) / 64));
                                   < 0: the keys negated (every score far below 0); plain layouts only
                                   (no cache, no varlen), not with timing_only (FAT_ERR_INVALID) */
    int ramp_toward_last;       /* with key_ramp: the scores rise toward the last keys instead (key i
                                   times 1 + |key_ramp| * (i / 64)): every block raises the max for
                                   the kernels that visit the key blocks first to last */
} bench_layout;

#define BENCH_SPARE_PAGES 3     /* pages of a paged cache no table entry names: they must stay as they were */

typedef struct bench_case {
    fat_problem prob;
    fat_attn_args dev;          /* device pointers */
    fat_attn_args host;         /* the same call on host copies, for the CPU attention */
    int total_q, total_k;       /* rows of q and k */
    size_t q_elems, k_elems, o_elems, lse_elems;
    CUdeviceptr mem_q, mem_k, mem_v, mem_o, mem_lse, mem_cu;
    launch_arena *arena;        /* scratch of the launches (workspaces, zeroed counters) */
    launch_maps *maps;          /* the tensor maps of the last launch, kept for timing */
    void *hq, *hk, *hv;         /* host inputs */
    int32_t *hcu;               /* host cu_seqlens (q then k) */
    /* a KV cache: the new rows, cache_seqlens then the block table (device and host), and the
     * cache as the CPU attention left it (the append done), what the GPU's must equal after a run */
    size_t kn_elems;
    int num_pages, table_stride;
    CUdeviceptr mem_kn, mem_vn, mem_aux;
    void *hkn, *hvn;
    int32_t *haux;
    int cache_ref;              /* 1: hk and hv hold the cache after the CPU attention's append */
} bench_case;

#define BENCH_GUARD 4096        /* guard bytes before and after O and LSE */

/* Allocates and fills a case with fresh random inputs from seed. */
fat_status bench_case_new(const fat_problem *p, const bench_layout *lay, uint64_t seed, bench_case **out);
void bench_case_free(bench_case *c);            /* accepts NULL */

/* Poisons O and LSE (NaN) and writes the guard pattern around them. */
fat_status bench_poison(bench_case *c);

/* Launches f as l says (l from the variant emitted for c->prob) on the case's tensors. */
fat_status bench_launch(bench_case *c, const launch_fn *f, const gen_launch *l, CUstream s);

/* Downloads O (as floats, o_elems of them, in the case's layout) and LSE; *guards_ok is 0 when a
 * guard byte changed, or, for a KV cache once the CPU reference has run, when a byte of the cache
 * differs from the reference's (a write outside the appended rows, or a wrong append). Either
 * output pointer may be NULL. */
fat_status bench_fetch(bench_case *c, float *o, float *lse, int *guards_ok);

/* The CPU attention on the case's host inputs: O as floats in the case's layout, and LSE. */
fat_status bench_cpu_reference(bench_case *c, float *o, float *lse);

/* Compares got with ref over the case's written elements: relative L2 error, largest absolute
 * error, and non-finite values (an output must never be NaN; LSE may be -inf where ref is). */
typedef struct bench_err { double rel_l2, max_abs; long nonfinite, lse_bad; } bench_err;
void bench_compare(const bench_case *c, const float *o, const float *ref, const float *lse,
                   const float *lse_ref, bench_err *e);

/* Times a variant: one launch to load it, launches until 5 ms have passed (clocks settle), then
 * samples, the L2 flushed before each, until there are at least min_samples and either the spread
 * (p80 - p20) is under 1% of the median or the budget is spent; 200 at most. cut_ms > 0: the variant
 * cannot win, so timing stops (t->cut = 1), when its first sample is slower than 2 * cut_ms or its
 * first three all slower than cut_ms. */
typedef struct bench_timing { double median_ms, p20_ms, p80_ms, min_ms; int samples, cut; } bench_timing;
fat_status bench_time(bench_case *c, const launch_fn *f, const gen_launch *l, CUdeviceptr flush,
                      size_t flush_bytes, CUstream s, double budget_ms, int min_samples, double cut_ms,
                      bench_timing *t);

/* A server's batch: a KV cache whose sequences hold different numbers of keys. The tuner times a
 * cache problem of two or more sequences twice, with every sequence full (the problem as named)
 * and with these lengths, and ranks by both (worker.c). lens[i] = room (B - i) / B cached keys,
 * room = seqlen_k less the new rows: from the whole cache down to 1/B of it, linearly (B = 16:
 * 100%, 94%, ... 6%). Returns 0 when the problem has no such batch (no cache, one sequence). */
int bench_ragged_lens(const fat_problem *p, int *lens);

/* Writes a case's cache_seqlens on the device (batch of them) and in its host copy; the block
 * table stays. For timing: a verified case's reference assumed the lengths it was made with. */
fat_status bench_set_cache_lens(bench_case *c, const int *lens);

/* The keys a step of a case reads or appends, summed over its sequences: the weight of one
 * timing against the other in the tuner's two timings of a cache. */
double bench_cache_keys(const bench_case *c);

/* The current SM clock of GPU dev in MHz, read through NVML (libnvidia-ml.so.1, opened with dlopen
 * and resolved once per process; the GPU is found by its PCI address, so CUDA_VISIBLE_DEVICES does
 * not confuse it). 0 when NVML or the GPU is not there, which is no error: a trial is then stored
 * without a clock. */
int bench_sm_clock_mhz(CUdevice dev);

/* The model's FLOPs of a problem: 4 * B * H * Sq * Sk * D, halved when causal (square). */
double bench_flops(const fat_problem *p);

/* The bytes of K and V a problem reads once, 2 * B * Hkv * Sk * D * 2, what a decoding step's speed
 * is counted in (as shared/bench/peers.py counts it); 0 for varlen, whose seqlen_k only bounds the
 * sequences. */
double bench_kv_bytes(const fat_problem *p);

#endif
