/*
 * tune.c: `fatune --gpu N`: for every problem of the suite and every valid variant of every
 * family, compile (cached by content hash in the database), verify against the CPU attention on
 * fresh random inputs, time, and keep the fastest as the problem's best.
 *
 * Every trial is committed when it finishes, so a killed run resumes where it stopped: a trial
 * already in the database for this device, problem and config is not measured again.
 */
#include "tune.h"
#include "bench.h"
#include "db.h"
#include "gen.h"
#include "pool.h"
#include "rtc.h"
#include "status.h"

#define XXH_INLINE_ALL
#include <xxhash.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct cand {
    gen_variant v;          /* emitted for the problem */
    gen_variant vc;         /* emitted for the check problem (same source, other grid) */
    int64_t config_id;
    char hash[33];
    pool_job job;
    int have_trial;         /* measured by an earlier run */
    db_trial_status status;
    double median_ms;
} cand;

typedef struct tuner {
    const tune_opts *o;
    gen *g;
    db *d;
    gen_device dev;
    int64_t device_id;
    CUdeviceptr flush;
    size_t flush_bytes;
    CUstream stream;
    int failures;           /* errors of fatune itself, not of variants */
} tuner;

/* A smaller problem with the same kernel specialisation: same dtype, head_dim, causal and
 * features; sizes kept where small, tails kept odd, the Sq/Sk relation kept. */
static fat_problem check_problem(const fat_problem *p) {
    fat_problem c = *p;
    c.batch = p->batch < 2 ? p->batch : 2;
    c.heads_kv = p->heads_kv < 2 ? p->heads_kv : 2;
    int group = p->heads_q / p->heads_kv;
    c.heads_q = c.heads_kv * (group < 4 ? group : 4);
    if (p->seqlen_q > 1000 || p->seqlen_k > 1000) {
        int sq = p->seqlen_q < 1000 ? p->seqlen_q : 1000;
        int sk = p->seqlen_k < 1000 ? p->seqlen_k : 1000;
        if (p->seqlen_k > p->seqlen_q) sk = sq + (p->seqlen_k - p->seqlen_q < 300 ? p->seqlen_k - p->seqlen_q : 300);
        if (p->seqlen_q > p->seqlen_k) sq = sk + (p->seqlen_q - p->seqlen_k < 300 ? p->seqlen_q - p->seqlen_k : 300);
        c.seqlen_q = sq;
        c.seqlen_k = sk;
    }
    return c;
}

static void kernel_hash(const char *source, const char *arch, char out[33]) {
    XXH3_state_t *h = XXH3_createState();
    char extra[64];
    snprintf(extra, sizeof extra, "|%s|nvrtc %d|-std=c++17", arch, rtc_version());
    XXH3_128bits_reset(h);
    XXH3_128bits_update(h, source, strlen(source));
    XXH3_128bits_update(h, extra, strlen(extra));
    XXH128_hash_t r = XXH3_128bits_digest(h);
    XXH3_freeState(h);
    snprintf(out, 33, "%016llx%016llx", (unsigned long long)r.high64, (unsigned long long)r.low64);
}

static double tolerance(fat_dtype dt) { return dt == FAT_BF16 ? 1.6e-2 : 4e-3; }

/* Verifies one loaded variant on the check case; fills status and reason. */
static fat_status verify(tuner *t, bench_case *cc, const float *ref, const float *lref, const kernel *k,
                         const gen_variant *vc, db_trial *tr, char *reason, size_t rn) {
    size_t n = cc->o_elems;
    float *o = malloc(n * sizeof *o), *lse = malloc(cc->lse_elems * sizeof *lse);
    fat_status st = FAT_OK;
    int guards = 0;
    if (!o || !lse) { st = FAT_ERR_NOMEM; goto out; }
    if ((st = bench_poison(cc)) != FAT_OK) goto out;
    if ((st = bench_launch(cc, k, vc, t->stream)) != FAT_OK) goto out;
    if ((st = bench_fetch(cc, o, lse, &guards)) != FAT_OK) goto out;
    bench_err e;
    bench_compare(cc, o, ref, lse, lref, &e);
    tr->max_err = e.max_abs;
    if (!guards) {
        tr->status = DB_TRIAL_WRONG_RESULT;
        snprintf(reason, rn, "wrote outside O or LSE (guard bytes changed)");
    } else if (e.nonfinite || e.lse_bad || !(e.rel_l2 <= tolerance(cc->prob.dtype))) {
        tr->status = DB_TRIAL_WRONG_RESULT;
        snprintf(reason, rn, "rel L2 error %.3g (tolerance %.3g), %ld non-finite, %ld bad LSE",
                 e.rel_l2, tolerance(cc->prob.dtype), e.nonfinite, e.lse_bad);
    }
out:
    free(o);
    free(lse);
    return st;
}

/* Tunes one problem: returns FAT_OK unless fatune itself failed (a CUDA fault ends the run). */
static fat_status tune_problem(tuner *t, const fat_problem *p) {
    fat_status st = FAT_OK;
    int64_t problem_id;
    char name[160];
    gen_problem_name(p, name, sizeof name);
    fat_problem cp = check_problem(p);
    bench_case *full = NULL, *cc = NULL;
    float *ref = NULL, *lref = NULL;
    cand *cs = NULL;
    int nc = 0, cap = 0;
    pool_job *jobs = NULL;
    int *job_of = NULL;

    if (db_problem_id(t->d, p, &problem_id) != FAT_OK) { fat_set_error("%s", db_errmsg(t->d)); return FAT_ERR_DB; }

    int nfam;
    const char *const *fams = gen_families(&nfam);
    for (int f = 0; f < nfam; f++) {
        if (t->o->only && strcmp(t->o->only, fams[f]) != 0) continue;
        char th[33];
        int64_t tid;
        gen_choice *ch;
        int nch;
        if (gen_template_hash(fams[f], th) != FAT_OK) continue;
        if ((st = gen_enumerate(t->g, fams[f], p, &t->dev, &ch, &nch)) != FAT_OK) { fat_set_error("%s", gen_errmsg(t->g)); goto out; }
        for (int i = 0; i < nch; i++) {
            if (!ch[i].ok) continue;
            if (nc == cap) {
                cap = cap ? 2 * cap : 32;
                cand *n2 = realloc(cs, (size_t)cap * sizeof *cs);
                if (!n2) { gen_choices_free(ch, nch); st = FAT_ERR_NOMEM; goto out; }
                cs = n2;
            }
            cand *c = &cs[nc];
            memset(c, 0, sizeof *c);
            if ((st = gen_emit(t->g, fams[f], ch[i].canon, p, &t->dev, &c->v)) != FAT_OK ||
                (st = gen_emit(t->g, fams[f], ch[i].canon, &cp, &t->dev, &c->vc)) != FAT_OK) {
                fat_set_error("%s", gen_errmsg(t->g));
                gen_variant_free(&c->v);
                gen_choices_free(ch, nch);
                goto out;
            }
            nc++;
            if (strcmp(c->v.source, c->vc.source) != 0) {
                /* The contract: a kernel depends on the specialisation, never on the sizes. */
                fat_set_error("%s %s: emitted source depends on the sequence sizes", fams[f], ch[i].canon);
                gen_choices_free(ch, nch);
                st = FAT_ERR_TEMPLATE;
                goto out;
            }
            if (db_template_id(t->d, fams[f], c->v.version, th, &tid) != FAT_OK ||
                db_config_id(t->d, tid, c->v.canon, &c->config_id) != FAT_OK) {
                fat_set_error("%s", db_errmsg(t->d));
                gen_choices_free(ch, nch);
                st = FAT_ERR_DB;
                goto out;
            }
            kernel_hash(c->v.source, t->dev.arch, c->hash);
            db_trial prev;
            if (db_trial_get(t->d, t->device_id, problem_id, c->config_id, &prev) == FAT_OK) {
                c->have_trial = 1;
                c->status = prev.status;
                c->median_ms = prev.median_ms;
                db_trial_free(&prev);
            }
        }
        gen_choices_free(ch, nch);
    }

    /* Compile what the database does not hold yet, all at once. */
    jobs = calloc(nc ? (size_t)nc : 1, sizeof *jobs);
    job_of = calloc(nc ? (size_t)nc : 1, sizeof *job_of);
    if (!jobs || !job_of) { st = FAT_ERR_NOMEM; goto out; }
    int nj = 0;
    for (int i = 0; i < nc; i++) {
        int yes = 0;
        job_of[i] = -1;
        if (cs[i].have_trial) continue;
        if (db_kernel_exists(t->d, cs[i].hash, &yes) == FAT_OK && yes) continue;
        jobs[nj].source = cs[i].v.source;
        jobs[nj].name = cs[i].v.tmpl;
        jobs[nj].arch = t->dev.arch;
        job_of[i] = nj++;
    }
    pool_compile(jobs, nj, 0);

    double best_ms = 0;          /* the fastest full measurement so far, for cutting early */
    for (int i = 0; i < nc; i++)
        if (cs[i].have_trial && cs[i].status == DB_TRIAL_OK && cs[i].median_ms > 0 &&
            (best_ms <= 0 || cs[i].median_ms < best_ms)) best_ms = cs[i].median_ms;
    for (int i = 0; i < nc; i++) {
        cand *c = &cs[i];
        if (c->have_trial) continue;
        char reason[1024] = "";
        db_trial tr;
        memset(&tr, 0, sizeof tr);
        tr.device_id = t->device_id;
        tr.problem_id = problem_id;
        tr.config_id = c->config_id;
        tr.status = DB_TRIAL_OK;
        db_kernel kr;
        memset(&kr, 0, sizeof kr);
        int have_cubin = 0;
        if (job_of[i] >= 0) {
            pool_job *j = &jobs[job_of[i]];
            if (j->st != FAT_OK) {
                tr.status = DB_TRIAL_COMPILE_ERROR;
                snprintf(reason, sizeof reason, "%.200s\n%.800s", j->err, j->res.log);
            } else {
                db_kernel put = { .cubin = j->res.image, .cubin_size = j->res.size, .compile_ms = j->res.ms,
                                  .registers = j->res.registers, .spills = j->res.spill_bytes,
                                  .smem_static = j->res.smem_static };
                snprintf(put.hash, sizeof put.hash, "%s", c->hash);
                snprintf(put.arch, sizeof put.arch, "%s", t->dev.arch);
                if (db_kernel_put(t->d, &put) != FAT_OK) { fat_set_error("%s", db_errmsg(t->d)); st = FAT_ERR_DB; goto out; }
                kr.cubin = j->res.image;
                have_cubin = 1;
            }
        } else if (db_kernel_get(t->d, c->hash, &kr) == FAT_OK) {
            have_cubin = 2;
        }
        if (tr.status == DB_TRIAL_OK && have_cubin) {
            snprintf(tr.kernel_hash, sizeof tr.kernel_hash, "%s", c->hash);
            kernel k;
            if (kernel_load(kr.cubin, c->v.entry, c->v.smem, &k) != FAT_OK) {
                tr.status = DB_TRIAL_RESOURCE;
                snprintf(reason, sizeof reason, "%s", fat_last_error());
            } else {
                if (!cc) {
                    bench_layout lay = { .with_lse = 1, .window_left = 64, .window_right = 16, .softcap = 30.f };
                    if ((st = bench_case_new(&cp, &lay, 0x5eed0000u + (uint64_t)problem_id, &cc)) != FAT_OK) goto out;
                    ref = malloc(cc->o_elems * sizeof *ref);
                    lref = malloc(cc->lse_elems * sizeof *lref);
                    if (!ref || !lref) { st = FAT_ERR_NOMEM; goto out; }
                    if ((st = bench_cpu_reference(cc, ref, lref)) != FAT_OK) goto out;
                    bench_layout flay = { .window_left = 64, .window_right = 16, .softcap = 30.f };
                    if ((st = bench_case_new(p, &flay, 0xf00du + (uint64_t)problem_id, &full)) != FAT_OK) goto out;
                }
                st = verify(t, cc, ref, lref, &k, &c->vc, &tr, reason, sizeof reason);
                if (st == FAT_OK && tr.status == DB_TRIAL_OK) {
                    bench_timing tm;
                    st = bench_time(full, &k, &c->v, t->flush, t->flush_bytes, t->stream, 300.0,
                                    best_ms > 0 ? 1.25 * best_ms : 0, &tm);
                    tr.median_ms = tm.median_ms; tr.p20_ms = tm.p20_ms; tr.p80_ms = tm.p80_ms;
                    tr.min_ms = tm.min_ms; tr.samples = tm.samples;
                    if (tm.cut) snprintf(reason, sizeof reason, "cut early: %d samples all > 1.25x the best so far (%.3f ms)", tm.samples, best_ms);
                    else if (best_ms <= 0 || tm.median_ms < best_ms) best_ms = tm.median_ms;
                }
                kernel_unload(&k);
                if (st != FAT_OK) {
                    /* A fault poisons the context: record it; the run cannot go on in this process. */
                    tr.status = DB_TRIAL_FAULT;
                    snprintf(reason, sizeof reason, "%s", fat_last_error());
                }
            }
        }
        if (have_cubin == 2) db_kernel_free(&kr);
        tr.reason = *reason ? reason : NULL;
        c->status = tr.status;
        c->median_ms = tr.median_ms;
        if (db_trial_put(t->d, &tr) != FAT_OK) { fat_set_error("%s", db_errmsg(t->d)); st = FAT_ERR_DB; goto out; }
        if (tr.status != DB_TRIAL_OK)
            fprintf(stderr, "  %s %s: %s: %.200s\n", c->v.tmpl, c->v.canon, db_trial_status_name(tr.status), reason);
        if (st != FAT_OK) goto out;
    }

    /* The best: the fastest verified variant. Variants within 1% of it are a tie (the run-to-run
     * noise of a median here): the first by family and parameter text wins, so two tunes agree. */
    int best = -1, second = -1;
    for (int i = 0; i < nc; i++) {
        if (cs[i].status != DB_TRIAL_OK || !(cs[i].median_ms > 0)) continue;
        if (best < 0 || cs[i].median_ms < cs[best].median_ms) best = i;
    }
    if (best >= 0) {
        double fastest = cs[best].median_ms;
        for (int i = 0; i < nc; i++) {
            if (cs[i].status != DB_TRIAL_OK || !(cs[i].median_ms > 0) || cs[i].median_ms > 1.01 * fastest) continue;
            int c = strcmp(cs[i].v.tmpl, cs[best].v.tmpl);
            if (c < 0 || (c == 0 && strcmp(cs[i].v.canon, cs[best].v.canon) < 0)) best = i;
        }
        for (int i = 0; i < nc; i++) {
            if (i == best || cs[i].status != DB_TRIAL_OK || !(cs[i].median_ms > 0)) continue;
            if (second < 0 || cs[i].median_ms < cs[second].median_ms) second = i;
        }
    }
    if (best < 0) {
        printf("%-44s no valid variant\n", name);
        t->failures++;
        goto out;
    }
    db_best b = { t->device_id, problem_id, cs[best].config_id, cs[best].median_ms,
                  second >= 0 ? cs[second].median_ms / cs[best].median_ms - 1 : 0, "exhaustive", 1 };
    if (db_best_put(t->d, &b) != FAT_OK) { fat_set_error("%s", db_errmsg(t->d)); st = FAT_ERR_DB; goto out; }
    printf("%-44s %-9s %-40s %9.3f ms %7.1f TFLOPS  (+%.1f%% over next)\n", name, cs[best].v.tmpl, cs[best].v.canon,
           cs[best].median_ms, bench_flops(p) / cs[best].median_ms / 1e9, 100 * b.margin);
    fflush(stdout);
out:
    for (int i = 0; i < nc; i++) { gen_variant_free(&cs[i].v); gen_variant_free(&cs[i].vc); }
    if (jobs) for (int i = 0; i < nc; i++) rtc_result_free(&jobs[i].res);
    free(jobs);
    free(job_of);
    free(cs);
    free(ref);
    free(lref);
    bench_case_free(cc);
    bench_case_free(full);
    return st;
}

int tune_main(const tune_opts *o) {
    tuner t = { .o = o };
    int rc = 1;
    fat_problem *probs = NULL;
    int n = 0;
    char err[1024];
    fat_status st = FAT_OK;
    CUdevice cudev;

    if (cu_device_info(o->gpu, &t.dev) != FAT_OK || cu_device_open(o->gpu, &cudev) != FAT_OK) {
        fprintf(stderr, "fatune: %s\n", fat_last_error());
        return 1;
    }
    if (rtc_load() != FAT_OK) { fprintf(stderr, "fatune: %s\n", fat_last_error()); return 1; }
    if (gen_open(&t.g) != FAT_OK) { fprintf(stderr, "fatune: %s\n", gen_errmsg(t.g)); goto out; }
    if (gen_shapes_file(t.g, o->shapes, &probs, &n) != FAT_OK) {
        fprintf(stderr, "fatune: %s\n", gen_errmsg(t.g));
        rc = 2;
        goto out;
    }
    if (db_open(o->db, DB_CREATE, &t.d, err, sizeof err) != FAT_OK) { fprintf(stderr, "fatune: %s\n", err); goto out; }
    int drv = 0;
    cu.DriverGetVersion(&drv);
    db_device dd = { t.dev.name, t.dev.cc, t.dev.sms, t.dev.l2, t.dev.smem_optin, drv, rtc_version() };
    if (db_device_id(t.d, &dd, &t.device_id) != FAT_OK) { fprintf(stderr, "fatune: %s\n", db_errmsg(t.d)); goto out; }
    t.flush_bytes = (size_t)(2 * t.dev.l2);
    st = FAT_OK;
    CU_CHECK(MemAlloc(&t.flush, t.flush_bytes));
    CU_CHECK(StreamCreate(&t.stream, CU_STREAM_NON_BLOCKING));
    printf("tuning %d problems on GPU %d (%s, %s) into %s\n", n, o->gpu, t.dev.name, t.dev.arch, o->db);
    for (int i = 0; i < n; i++) {
        st = tune_problem(&t, &probs[i]);
        if (st != FAT_OK) { fprintf(stderr, "fatune: %s\n", fat_last_error()); goto out; }
    }
    rc = t.failures ? 1 : 0;
out:
    if (st != FAT_OK && rc == 0) rc = 1;
    if (st != FAT_OK && !*fat_last_error()) fprintf(stderr, "fatune: %s\n", fat_strerror(st));
    if (t.stream) cu.StreamDestroy(t.stream);
    if (t.flush) cu.MemFree(t.flush);
    free(probs);
    db_close(t.d);
    gen_close(t.g);
    return rc;
}
