/*
 * tune.c: `fatune --gpu N`: for every problem of the suite and every valid variant of every family
 * that applies, compile (cubins cached in the database by content hash), then let the GPU's bench
 * worker verify and time it, and keep the fastest as the problem's best.
 *
 * This process never touches CUDA: compilation is NVRTC in a thread pool, and everything that runs
 * on the GPU happens in the worker (worker.c), which may crash or hang without taking the run down.
 * Every trial is committed as it finishes, so a killed run resumes where it stopped: a trial
 * already in the database for this device, problem and config is not measured again. Which
 * variants a problem tries is the strategy's (guided by default: see plan()). The winner is named
 * by tuner/choose.c: up to four variants within 3% of the fastest (the default within 8%) are
 * timed again, interleaved, and one wins only by more than 3% (CHOOSE_TIE_BAND) and in every round;
 * a tie goes to the built-in default, else to the first by name. With several GPUs, one supervisor
 * process per GPU takes every n-th problem, all writing to one database (WAL).
 */
#include "tune.h"
#include "bench.h"
#include "choose.h"
#include "db.h"
#include "dispatch.h"
#include "gen.h"
#include "inspect.h"
#include "pool.h"
#include "rtc.h"
#include "status.h"
#include "worker.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

typedef struct cand {
    gen_variant v;          /* emitted for the problem */
    gen_variant vc;         /* emitted for the verification problem (same source, other grid) */
    int64_t config_id;
    char hash[33];
    int job;                /* index into the compile jobs, -1 when the cubin is in the database */
    int have_trial;         /* measured by an earlier run */
    int planned;            /* to be tried by this run's strategy (guided: not every candidate) */
    int done;               /* tried by this run */
    int is_default;         /* the built-in default (gen_builtin_default): wins its ties */
    int status;             /* db_trial_status */
    double median_ms;
} cand;

typedef struct tuner {
    const tune_opts *o;
    gen *g;
    db *d;
    worker *w;
    gen_device dev;
    int gpu;
    int64_t device_id;
    double t0, deadline;    /* CLOCK_MONOTONIC seconds; deadline 0: none */
    int problems_done, problems_total, failures;
    double s_setup, s_compile, s_trials, s_retime;   /* seconds spent per phase, for the summary */
    double cur_best_ms, cur_flops;                    /* the problem being tuned: its best so far */
    int decoding_rows;      /* the decoding regime (gen_decoding_rows) */
    int compiled, verified, timed;
    int tty;
} tuner;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

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

/* The content hash of a kernel: its source, the compile options, the arch and NVRTC's version
 * (rtc_kernel_hash, the one the runtime looks cubins up by). */
static void kernel_hash(const char *source, const char *arch, char out[33]) {
    rtc_kernel_hash(source, arch, rtc_version(), out);
}

static void progress(tuner *t, const char *name) {
    if (!t->tty || t->o->quiet) return;
    double el = now_s() - t->t0;
    double eta = t->problems_done ? el / t->problems_done * (t->problems_total - t->problems_done) : 0;
    char best[64] = "";
    if (t->cur_best_ms > 0)
        snprintf(best, sizeof best, ", best %.3f ms %.0f TFLOPS", t->cur_best_ms, t->cur_flops / t->cur_best_ms / 1e9);
    fprintf(stderr, "\r\033[K[%d/%d] %s  compiled %d, verified %d, timed %d%s  %.0fs elapsed, ETA %.0fs",
            t->problems_done + 1, t->problems_total, name, t->compiled, t->verified, t->timed, best, el, eta);
}

static void clear_progress(const tuner *t) {
    if (t->tty && !t->o->quiet) fprintf(stderr, "\r\033[K");
}

/* Deterministic shuffle (splitmix64 from a fixed seed), for --strategy random. */
static void shuffle(cand *cs, int n, uint64_t seed) {
    for (int i = n - 1; i > 0; i--) {
        uint64_t z = (seed += 0x9e3779b97f4a7c15ull);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        int j = (int)((z ^ (z >> 31)) % (uint64_t)(i + 1));
        cand tmp = cs[i]; cs[i] = cs[j]; cs[j] = tmp;
    }
}

/* Whether a run with these options tunes family name (*used): the ones --only names, else those
 * whose template does not say `tuned = false` (naive, the reference). FAT_ERR_TEMPLATE when the
 * template does not load (gen_errmsg says why). */
static fat_status family_used(gen *g, const tune_opts *o, const char *name, int *used) {
    gen_family info;
    *used = 0;
    if (!gen_family_selected(o->only, name)) return FAT_OK;
    fat_status st = gen_family_info(g, name, &info);
    if (st == FAT_OK) *used = o->only || info.tuned;
    return st;
}

/* Whether a family the run uses has a valid variant for p (*yes). */
static fat_status any_valid(tuner *t, const fat_problem *p, int *yes) {
    int nfam;
    const char *const *fams = gen_families(&nfam);
    *yes = 0;
    for (int f = 0; f < nfam && !*yes; f++) {
        int used, nch;
        gen_choice *ch;
        if (family_used(t->g, t->o, fams[f], &used) != FAT_OK) return FAT_ERR_TEMPLATE;
        if (!used) continue;
        if (gen_enumerate(t->g, fams[f], p, &t->dev, &ch, &nch) != FAT_OK) return FAT_ERR_TEMPLATE;
        for (int i = 0; i < nch; i++) *yes |= ch[i].ok;
        gen_choices_free(ch, nch);
    }
    return FAT_OK;
}

/* A problem with an append that no family of the run does itself (flash_hopper never appends,
 * decode only up to its decoding rows) is tuned as its attention alone: the runtime copies k_new
 * and v_new into the cache first (GEN_KV_APPEND) and looks up the problem without the append
 * (runtime/resolve.c), the row this tunes. Says so for each, unless quiet. */
static fat_status split_appends(tuner *t, fat_problem *probs, int n, int say) {
    for (int i = 0; i < n; i++) {
        int yes;
        if (!(probs[i].features & FAT_FEAT_APPEND)) continue;
        if (any_valid(t, &probs[i], &yes) != FAT_OK) {
            fat_set_error("%s", gen_errmsg(t->g));
            return FAT_ERR_TEMPLATE;
        }
        if (yes) continue;
        char name[160];
        gen_problem_name(&probs[i], name, sizeof name);
        probs[i].features &= ~FAT_FEAT_APPEND;
        if (say) printf("%s: no kernel appends at this shape; tuning its attention (a call appends first with %s)\n", name,
                        GEN_KV_APPEND);
    }
    return FAT_OK;
}

/* Emits the candidates of every family for p; registers their template and config rows. */
static fat_status collect(tuner *t, const fat_problem *p, const fat_problem *cp, int64_t problem_id,
                          cand **out, int *nout) {
    fat_status st = FAT_OK;
    cand *cs = NULL;
    int nc = 0, cap = 0, nfam;
    const char *const *fams = gen_families(&nfam);
    for (int f = 0; f < nfam; f++) {
        int used;
        if (family_used(t->g, t->o, fams[f], &used) != FAT_OK) {
            fat_set_error("template %s: %s", fams[f], gen_errmsg(t->g));
            st = FAT_ERR_TEMPLATE;
            goto out;
        }
        if (!used) continue;
        char th[33];
        int64_t tid;
        gen_choice *ch;
        int nch, taken = 0;
        if (gen_template_hash(fams[f], th) != FAT_OK) continue;
        if ((st = gen_enumerate(t->g, fams[f], p, &t->dev, &ch, &nch)) != FAT_OK) {
            fat_set_error("%s", gen_errmsg(t->g));
            goto out;
        }
        int first = nc;
        for (int i = 0; i < nch; i++) {
            if (!ch[i].ok) continue;
            if (nc == cap) {
                cap = cap ? 2 * cap : 64;
                cand *n2 = realloc(cs, (size_t)cap * sizeof *cs);
                if (!n2) { gen_choices_free(ch, nch); fat_set_error("out of memory"); st = FAT_ERR_NOMEM; goto out; }
                cs = n2;
            }
            cand *c = &cs[nc];
            memset(c, 0, sizeof *c);
            c->job = -1;
            if ((st = gen_emit(t->g, fams[f], ch[i].canon, p, &t->dev, &c->v)) != FAT_OK ||
                (st = gen_emit(t->g, fams[f], ch[i].canon, cp, &t->dev, &c->vc)) != FAT_OK) {
                fat_set_error("%s", gen_errmsg(t->g));
                gen_variant_free(&c->v);
                gen_choices_free(ch, nch);
                goto out;
            }
            nc++;
            taken++;
            if (strcmp(c->v.source, c->vc.source) != 0) {
                /* The contract: a kernel depends on its specialisation, never on the sizes. */
                fat_set_error("%s %s: the emitted source depends on the problem's sizes (templates must "
                              "take sizes from the parameter block)", fams[f], ch[i].canon);
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
            kernel_hash(c->v.source, c->v.launch.target, c->hash);
            db_trial prev;
            if (db_trial_get(t->d, t->device_id, problem_id, c->config_id, &prev) == FAT_OK) {
                c->have_trial = 1;
                c->status = prev.status;
                c->median_ms = prev.median_ms;
                db_trial_free(&prev);
            }
        }
        gen_choices_free(ch, nch);
        if (t->o->strategy == TUNE_RANDOM) shuffle(cs + first, taken, 0x5eed + (uint64_t)problem_id);
        /* quick effort: a sample of the family's space (all of it when small). */
        if (t->o->quick && taken > 12) {
            if (t->o->strategy != TUNE_RANDOM) shuffle(cs + first, taken, 0x5eed + (uint64_t)problem_id);
            for (int i = first + 12; i < nc; i++) { gen_variant_free(&cs[i].v); gen_variant_free(&cs[i].vc); }
            nc = first + 12;
        }
    }
out:
    if (st != FAT_OK) {
        for (int i = 0; i < nc; i++) { gen_variant_free(&cs[i].v); gen_variant_free(&cs[i].vc); }
        free(cs);
        cs = NULL;
        nc = 0;
    }
    *out = cs;
    *nout = nc;
    return st;
}

/* What the worker needs to verify and time candidate c from its cubin. */
static worker_req trial_req(const tuner *t, const cand *c, const void *cubin, size_t size, double cut_ms,
                            double budget_ms, int min_samples, int verify) {
    worker_req q = { cubin, size, c->vc.launch, c->v.launch, cut_ms, budget_ms, min_samples, !verify,
                     t->o->trial_timeout_s };
    return q;
}

/* Timing per trial: the first pass ranks (a cut ends the hopeless early), the finalists are then
 * timed again (remeasure), so the first pass needs only a few samples. */
#define FIRST_BUDGET_MS(t) ((t)->o->quick ? 20.0 : 50.0)
#define FIRST_MIN_SAMPLES 5
#define AGAIN_BUDGET_MS(t) ((t)->o->quick ? 10.0 : 20.0)
#define AGAIN_MIN_SAMPLES 3

enum { FINALISTS = 4, ROUNDS = 3 };
#define FINAL_BAND 0.03     /* finalists: within 3% of the fastest */
/* The built-in default is a finalist within 8% of the fastest: the first pass's few samples can be
 * a few % off, and whether the default is timed again (and so can win its tie) must not hang on
 * them. With 3% for it too, two runs on the H200 (2026-11-30) disagreed on 5 of 34 problems, every
 * time because the default was left out of one run's finalists and not of the other's. */
#define DEFAULT_FINAL_BAND 0.08
#define TIE_BAND CHOOSE_TIE_BAND

/* Times the finalists again, ROUNDS times, interleaved (A B C A B C ...), so that drift of clock
 * and temperature falls on all of them alike, and names the winner from those times: it must beat
 * each other one by more than TIE_BAND and in every round, else the tie goes to the built-in
 * default or the first by name (choose_paired). fin[0..nf-1] are indices into cs. When a winner
 * comes out, *best, *runner (the runner-up, -1 when none is left), *best_ms and *margin are set; a
 * finalist that fails now (a fault, a wrong result: a flaky kernel) gets that status recorded and
 * drops out. */
static fat_status remeasure(tuner *t, cand *cs, const int *fin, int nf, int64_t problem_id, const char *name,
                            int *best, int *runner, double *best_ms, double *margin) {
    double ms[FINALISTS][ROUNDS] = { { 0 } };
    int alive[FINALISTS];
    for (int f = 0; f < nf; f++) alive[f] = 1;
    for (int r = 0; r < ROUNDS; r++) {
        for (int f = 0; f < nf; f++) {
            if (!alive[f]) continue;
            cand *c = &cs[fin[f]];
            db_kernel kr;
            memset(&kr, 0, sizeof kr);
            if (db_kernel_get(t->d, c->hash, &kr) != FAT_OK) {
                /* the cubin cannot be read back: keep the choice as first measured */
                clear_progress(t);
                fprintf(stderr, "  %s: not timed again: the cubin %s cannot be read: %s\n", name, c->hash, db_errmsg(t->d));
                return FAT_OK;
            }
            /* verified again in the first round (a flaky kernel must not be deployed), then only timed */
            worker_req q = trial_req(t, c, kr.cubin, kr.cubin_size, 0, AGAIN_BUDGET_MS(t), AGAIN_MIN_SAMPLES, r == 0);
            worker_res res;
            fat_status st = worker_trial(t->w, &q, &res);
            db_kernel_free(&kr);
            if (st != FAT_OK) return st;
            if (res.status == DB_TRIAL_OK && res.median_ms > 0) { ms[f][r] = res.median_ms; continue; }
            /* Verified and timed once, failing now: never deploy it. */
            char reason[1100];
            snprintf(reason, sizeof reason, "on re-measure: %s", res.reason);
            db_trial tr;
            memset(&tr, 0, sizeof tr);
            tr.device_id = t->device_id;
            tr.problem_id = problem_id;
            tr.config_id = c->config_id;
            tr.status = res.status == DB_TRIAL_OK ? DB_TRIAL_WRONG_RESULT : res.status;
            snprintf(tr.kernel_hash, sizeof tr.kernel_hash, "%s", c->hash);
            tr.reason = reason;
            if (db_trial_put(t->d, &tr) != FAT_OK) { fat_set_error("%s", db_errmsg(t->d)); return FAT_ERR_DB; }
            c->status = tr.status;
            alive[f] = 0;
            clear_progress(t);
            fprintf(stderr, "  %s %s on %s: %s %s\n", c->v.tmpl, c->v.canon, name, db_trial_status_name(tr.status), reason);
        }
    }
    choose_in in[FINALISTS];
    double paired[FINALISTS * ROUNDS];
    for (int f = 0; f < nf; f++) {
        const cand *c = &cs[fin[f]];
        in[f].family = c->v.tmpl;
        in[f].params = c->v.canon;
        in[f].preferred = c->is_default;
        memcpy(paired + f * ROUNDS, ms[f], sizeof ms[f]);
        in[f].median_ms = alive[f] ? choose_median(ms[f], ROUNDS, &in[f].noise) : 0;
        if (!alive[f]) in[f].noise = 0;
    }
    int second, w = choose_paired(in, paired, nf, ROUNDS, TIE_BAND, &second);
    if (w < 0) return FAT_OK;           /* every finalist failed: the caller chooses again as measured */
    *best = fin[w];
    *best_ms = in[w].median_ms;
    *runner = second >= 0 ? fin[second] : -1;
    *margin = second >= 0 ? in[second].median_ms / in[w].median_ms - 1 : 0;
    return FAT_OK;
}

/* Moves the built-in default (gen_builtin_default for p, or the next default family's when the run
 * leaves that family out) to the front, the rest keeping their order. Measured first, it sets the
 * time every other variant is cut against: without it the families measured before the default
 * family (flash_v1 sorts first) are cut only against each other, and a slow family is timed in
 * full, variant after variant. The order changes nothing else: the best is chosen over all of
 * them, ties to the default, else by name. */
static int default_first(tuner *t, const fat_problem *p, cand *cs, int nc) {
    const char *order[GEN_MAX_FAMILIES];
    int nd;
    char params[256];
    if (gen_default_families(t->g, order, &nd) != FAT_OK) return 0;
    for (int f = 0; f < nd; f++) {
        if (gen_default(t->g, order[f], p, &t->dev, params, sizeof params) != FAT_OK) continue;
        for (int i = 0; i < nc; i++) {
            if (strcmp(cs[i].v.tmpl, order[f]) != 0 || strcmp(cs[i].v.canon, params) != 0) continue;
            cand d = cs[i];
            memmove(cs + 1, cs, (size_t)i * sizeof *cs);
            cs[0] = d;
            cs[0].is_default = 1;
            return 1;
        }
    }
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * The guided strategy. Problems of one kernel specialisation (dtype, head_dim, causal, features)
 * have the same candidates, and their ranking changes slowly with the sizes: the tiles that win at
 * 4k keys are the ones that win at 8k. So the first problem of a specialisation (the cheapest, as
 * the run goes cheapest first) tries every candidate, and each later one tries only the built-in
 * default, the GUIDE_SCREENED fastest of the nearest screened problem and the GUIDE_NEAR fastest of
 * each of the GUIDE_NEIGHBOURS nearest tuned problems (which catch what changes with size). Near:
 * in log space over seqlen_q, seqlen_k, batch x heads and the GQA group. Only problems that come
 * before this one in the run's order (cost_cmp) guide it, so that its plan depends on the suite and
 * not on what else the database holds: a finished run run again measures nothing. Quick effort
 * samples instead (collect) and is not guided. */

enum { GUIDE_SCREENED = 8, GUIDE_NEAR = 4, GUIDE_NEIGHBOURS = 2, GUIDE_MAX_SIBLINGS = 256 };

/* The run's order: FLOPs, then the sizes and the specialisation, so that any two problems compare
 * the same way whatever file they came from. */
static int cost_cmp(const fat_problem *a, const fat_problem *b) {
    double x = bench_flops(a), y = bench_flops(b);
    if (x != y) return x < y ? -1 : 1;
    const int ka[] = { a->seqlen_q, a->seqlen_k, a->batch, a->heads_q, a->heads_kv, a->head_dim, a->causal,
                       (int)a->features, (int)a->dtype };
    const int kb[] = { b->seqlen_q, b->seqlen_k, b->batch, b->heads_q, b->heads_kv, b->head_dim, b->causal,
                       (int)b->features, (int)b->dtype };
    for (size_t i = 0; i < sizeof ka / sizeof ka[0]; i++)
        if (ka[i] != kb[i]) return ka[i] < kb[i] ? -1 : 1;
    return 0;
}

typedef struct sibling { int64_t id; double dist; } sibling;

typedef struct siblings {
    const fat_problem *p;
    int decoding_rows;
    sibling s[GUIDE_MAX_SIBLINGS];  /* the nearest ones, when there are more */
    int n;
} siblings;

static double lg(double x) { return log2(x > 0 ? x : 1); }

static double problem_distance(const fat_problem *a, const fat_problem *b) {
    return fabs(lg(a->seqlen_q) - lg(b->seqlen_q)) + fabs(lg(a->seqlen_k) - lg(b->seqlen_k)) +
           fabs(lg((double)a->batch * a->heads_q) - lg((double)b->batch * b->heads_q)) +
           fabs(lg((double)a->heads_q / a->heads_kv) - lg((double)b->heads_q / b->heads_kv));
}

static int by_distance(const void *a, const void *b) {
    const sibling *x = a, *y = b;
    if (x->dist != y->dist) return x->dist < y->dist ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

static fat_status sibling_seen(void *ud, int64_t id, const fat_problem *p, int trials) {
    siblings *s = ud;
    (void)trials;
    if (cost_cmp(p, s->p) >= 0) return FAT_OK;         /* not before this problem (or itself) */
    if (dispatch_decoding(p, s->decoding_rows) != dispatch_decoding(s->p, s->decoding_rows))
        return FAT_OK;                                  /* the other regime */
    sibling x = { id, problem_distance(s->p, p) };
    if (s->n < GUIDE_MAX_SIBLINGS) { s->s[s->n++] = x; return FAT_OK; }
    int far = 0;                                        /* full: replace the farthest if nearer */
    for (int i = 1; i < s->n; i++) if (by_distance(&s->s[i], &s->s[far]) > 0) far = i;
    if (by_distance(&x, &s->s[far]) < 0) s->s[far] = x;
    return FAT_OK;
}

/* Marks the k fastest of sibling id's ok trials among cs as planned and every candidate with a
 * trial there (any status) as seen. FAT_OK, FAT_ERR_NOMEM or FAT_ERR_DB. */
static fat_status plan_from(tuner *t, int64_t id, cand *cs, int nc, int k, unsigned char *seen) {
    double *ms = calloc(nc ? (size_t)nc : 1, sizeof *ms);
    if (!ms) { fat_set_error("out of memory"); return FAT_ERR_NOMEM; }
    for (int i = 0; i < nc; i++) {
        db_trial tr;
        fat_status st = db_trial_get(t->d, t->device_id, id, cs[i].config_id, &tr);
        if (st == FAT_ERR_NOT_FOUND) continue;
        if (st != FAT_OK) { fat_set_error("%s", db_errmsg(t->d)); free(ms); return FAT_ERR_DB; }
        seen[i] = 1;
        if (tr.status == DB_TRIAL_OK && tr.median_ms > 0) ms[i] = tr.median_ms;
        db_trial_free(&tr);
    }
    for (int n = 0; n < k; n++) {
        int pick = -1;
        for (int i = 0; i < nc; i++)
            if (ms[i] > 0 && (pick < 0 || ms[i] < ms[pick])) pick = i;
        if (pick < 0) break;
        cs[pick].planned = 1;
        ms[pick] = 0;
    }
    free(ms);
    return FAT_OK;
}

/* Sets cs[].planned for the strategy; *guides receives how many tuned problems guided the plan (0:
 * every candidate is planned). has_default: cs[0] is the built-in default. Guided: the GUIDE_SCREENED
 * fastest of the nearest screened sibling (its best row complete: it tried its whole space), the
 * GUIDE_NEAR fastest of each of the GUIDE_NEIGHBOURS nearest siblings, the default, and every
 * candidate no sibling has tried (the space grows with the sequence lengths: a tile pruned as
 * oversized for 512 keys is valid for 4096), so that each candidate of a kind is measured once. */
static fat_status plan(tuner *t, const fat_problem *p, cand *cs, int nc, int has_default, int *guides) {
    fat_status st = FAT_OK;
    siblings *sb = NULL;
    unsigned char *seen = NULL;
    *guides = 0;
    for (int i = 0; i < nc; i++) cs[i].planned = 1;
    if (t->o->strategy != TUNE_GUIDED || t->o->quick || nc == 0) return FAT_OK;
    if (!(sb = calloc(1, sizeof *sb)) || !(seen = calloc((size_t)nc, 1))) { fat_set_error("out of memory"); st = FAT_ERR_NOMEM; goto out; }
    sb->p = p;
    sb->decoding_rows = t->decoding_rows;
    if (db_siblings(t->d, t->device_id, p, sibling_seen, sb) != FAT_OK) {
        fat_set_error("%s", db_errmsg(t->d));
        st = FAT_ERR_DB;
        goto out;
    }
    qsort(sb->s, (size_t)sb->n, sizeof *sb->s, by_distance);
    int screened = -1;
    for (int j = 0; j < sb->n && screened < 0; j++) {
        db_best b;
        fat_status bs = db_best_get(t->d, t->device_id, sb->s[j].id, &b);
        if (bs == FAT_OK && b.complete) screened = j;
        else if (bs != FAT_OK && bs != FAT_ERR_NOT_FOUND) { fat_set_error("%s", db_errmsg(t->d)); st = FAT_ERR_DB; goto out; }
    }
    if (screened < 0) goto out;                     /* this problem screens the space */
    for (int i = 0; i < nc; i++) cs[i].planned = 0;
    for (int j = 0; j < sb->n; j++) {
        int k = j == screened ? GUIDE_SCREENED : j < GUIDE_NEIGHBOURS ? GUIDE_NEAR : 0;
        if ((st = plan_from(t, sb->s[j].id, cs, nc, k, seen)) != FAT_OK) goto out;
        *guides += k > 0;
    }
    for (int i = 0; i < nc; i++) cs[i].planned |= !seen[i];
    if (has_default) cs[0].planned = 1;
out:
    free(sb);
    free(seen);
    return st;
}

/* ---------------------------------------------------------------------------------------------
 * One problem, step by step: its candidates and plan (begin), compile what the plan needs and the
 * database lacks (compile_planned), verify and time it (try_planned; a guided plan that verifies
 * nothing is widened to the whole space, widen_plan), name the winner from the first pass
 * (choose_first), time the finalists again (choose_final), store and print it (finish). */

typedef struct run {
    const fat_problem *p;
    fat_problem cp;         /* the verification problem */
    int64_t problem_id;
    char name[160];
    cand *cs;
    int nc;
    pool_job *jobs;         /* compile jobs, one per candidate at most */
    int nj;
    int guides;             /* tuned problems that guided the plan (0: every candidate planned) */
    int complete;           /* no budget cut the run short */
    int sent;               /* the problem is set up in the worker */
    int timed_here;         /* variants this run timed */
    double best_ms;         /* the fastest full measurement so far, for cutting early */
    int best, second;       /* the winner and the runner-up (indices into cs, -1: none) */
    double won_ms, won_margin;
} run;

static fat_status begin(tuner *t, const fat_problem *p, run *r) {
    memset(r, 0, sizeof *r);
    r->p = p;
    r->cp = check_problem(p);
    r->complete = 1;
    r->best = r->second = -1;
    gen_problem_name(p, r->name, sizeof r->name);
    if (db_problem_id(t->d, p, &r->problem_id) != FAT_OK) { fat_set_error("%s", db_errmsg(t->d)); return FAT_ERR_DB; }
    t->cur_best_ms = 0;
    t->cur_flops = bench_flops(p);
    progress(t, r->name);
    fat_status st = collect(t, p, &r->cp, r->problem_id, &r->cs, &r->nc);
    if (st != FAT_OK) return st;
    int has_default = default_first(t, p, r->cs, r->nc);
    if ((st = plan(t, p, r->cs, r->nc, has_default, &r->guides)) != FAT_OK) return st;
    r->jobs = calloc(r->nc ? (size_t)r->nc : 1, sizeof *r->jobs);
    if (!r->jobs) { fat_set_error("out of memory"); return FAT_ERR_NOMEM; }
    for (int i = 0; i < r->nc; i++)
        if (r->cs[i].have_trial && r->cs[i].status == DB_TRIAL_OK && r->cs[i].median_ms > 0 &&
            (r->best_ms <= 0 || r->cs[i].median_ms < r->best_ms)) r->best_ms = r->cs[i].median_ms;
    return FAT_OK;
}

static void end(run *r) {
    for (int i = 0; i < r->nc; i++) { gen_variant_free(&r->cs[i].v); gen_variant_free(&r->cs[i].vc); }
    if (r->jobs) for (int i = 0; i < r->nj; i++) rtc_result_free(&r->jobs[i].res);
    free(r->jobs);
    free(r->cs);
}

/* Whether candidate c is still to be tried by this run. */
static int pending(const cand *c) { return !c->have_trial && c->planned && !c->done; }

/* Compiles, all at once, the planned candidates whose cubin the database does not hold yet; sets
 * the problem up in the worker when anything is to be tried. */
static fat_status compile_planned(tuner *t, run *r) {
    double ts = now_s();
    int npending = 0, first = r->nj;
    for (int i = 0; i < r->nc; i++) {
        cand *c = &r->cs[i];
        int yes = 0;
        if (!pending(c) || c->job >= 0) continue;
        npending++;
        if (db_kernel_exists(t->d, c->hash, &yes) == FAT_OK && yes) continue;
        r->jobs[r->nj].source = c->v.source;
        r->jobs[r->nj].name = c->v.tmpl;
        r->jobs[r->nj].arch = c->v.launch.target;
        c->job = r->nj++;
    }
    pool_compile(r->jobs + first, r->nj - first, 0);
    t->compiled += r->nj - first;
    t->s_compile += now_s() - ts;
    ts = now_s();
    fat_status st = FAT_OK;
    if (npending && !r->sent) {
        if ((st = worker_problem(t->w, r->p, &r->cp, 0x5eed0000u + (uint64_t)r->problem_id)) == FAT_OK) r->sent = 1;
    }
    t->s_setup += now_s() - ts;
    return st;
}

/* The cubin of candidate c: from its compile job (stored in the database now) or the database.
 * NULL with *reason set (a heap string) when it did not compile or cannot be read; *kr holds what
 * the database gave (free it). */
static fat_status cubin_of(tuner *t, run *r, const cand *c, db_kernel *kr, const void **cubin, size_t *size,
                           char **reason) {
    *cubin = NULL;
    *size = 0;
    *reason = NULL;
    if (c->job >= 0) {
        pool_job *j = &r->jobs[c->job];
        if (j->st != FAT_OK) {
            /* the whole log: its first lines are often warnings, the error comes after */
            if (asprintf(reason, "%s\n%s", j->err, j->res.log ? j->res.log : "") < 0) *reason = NULL;
            return FAT_OK;
        }
        db_kernel put = { .cubin = j->res.image, .cubin_size = j->res.size, .compile_ms = j->res.ms,
                          .registers = j->res.registers, .spills = j->res.spill_bytes, .smem_static = j->res.smem_static };
        snprintf(put.hash, sizeof put.hash, "%s", c->hash);
        snprintf(put.arch, sizeof put.arch, "%s", c->v.launch.target);
        if (db_kernel_put(t->d, &put) != FAT_OK) { fat_set_error("%s", db_errmsg(t->d)); return FAT_ERR_DB; }
        *cubin = j->res.image;
        *size = j->res.size;
    } else if (db_kernel_get(t->d, c->hash, kr) == FAT_OK && kr->cubin) {
        *cubin = kr->cubin;
        *size = kr->cubin_size;
    } else if (asprintf(reason, "the cached cubin %s cannot be read: %s", c->hash,
                        kr->hash[0] && !kr->cubin ? "the database keeps no cubin for it" : db_errmsg(t->d)) < 0) {
        *reason = NULL;
    }
    return FAT_OK;
}

/* Verifies and times every planned candidate not tried yet, committing each trial. */
static fat_status try_planned(tuner *t, run *r) {
    double ts = now_s();
    fat_status st = FAT_OK;
    for (int i = 0; i < r->nc; i++) {
        cand *c = &r->cs[i];
        if (!pending(c)) continue;
        if (t->deadline > 0 && now_s() > t->deadline) { r->complete = 0; break; }
        db_trial tr;
        memset(&tr, 0, sizeof tr);
        tr.device_id = t->device_id;
        tr.problem_id = r->problem_id;
        tr.config_id = c->config_id;
        tr.status = DB_TRIAL_COMPILE_ERROR;
        db_kernel kr;
        memset(&kr, 0, sizeof kr);
        const void *cubin;
        size_t size;
        char *reason = NULL;
        if ((st = cubin_of(t, r, c, &kr, &cubin, &size, &reason)) != FAT_OK) { db_kernel_free(&kr); break; }
        if (cubin) {
            snprintf(tr.kernel_hash, sizeof tr.kernel_hash, "%s", c->hash);
            worker_req q = trial_req(t, c, cubin, size, r->best_ms > 0 ? 1.25 * r->best_ms : 0, FIRST_BUDGET_MS(t),
                                     FIRST_MIN_SAMPLES, 1);
            worker_res res;
            st = worker_trial(t->w, &q, &res);
            db_kernel_free(&kr);
            if (st != FAT_OK) break;
            tr.status = res.status;
            tr.median_ms = res.median_ms; tr.p20_ms = res.p20_ms; tr.p80_ms = res.p80_ms; tr.min_ms = res.min_ms;
            tr.samples = res.samples;
            tr.max_err = res.max_err;
            tr.sm_clock_mhz = res.sm_clock_mhz;
            if (res.reason[0]) reason = strdup(res.reason);
            if (res.status != DB_TRIAL_RESOURCE && res.status != DB_TRIAL_FAULT && res.status != DB_TRIAL_TIMEOUT)
                t->verified++;
            if (res.status == DB_TRIAL_OK) {
                t->timed++;
                r->timed_here++;
                if (!res.cut && (r->best_ms <= 0 || res.median_ms < r->best_ms)) r->best_ms = res.median_ms;
            }
        }
        db_kernel_free(&kr);
        tr.reason = reason;
        c->status = tr.status;
        c->median_ms = tr.median_ms;
        if (db_trial_put(t->d, &tr) != FAT_OK) {
            fat_set_error("%s", db_errmsg(t->d));
            free(reason);
            st = FAT_ERR_DB;
            break;
        }
        c->done = 1;
        if (tr.status != DB_TRIAL_OK) {
            clear_progress(t);
            fprintf(stderr, "  %s %s on %s: %s: %.300s%s\n", c->v.tmpl, c->v.canon, r->name,
                    db_trial_status_name(tr.status), reason ? reason : "",
                    reason && strlen(reason) > 300 ? "... (fatune show --logs has all of it)" : "");
        }
        free(reason);
        t->cur_best_ms = r->best_ms;
        progress(t, r->name);
    }
    t->s_trials += now_s() - ts;
    return st;
}

/* After a guided pass: 1 when nothing of the plan verified and candidates were left out, which
 * are then planned too (a neighbour's tiles may fail at this size). */
static int widen_plan(tuner *t, run *r) {
    if (!r->complete || t->o->strategy != TUNE_GUIDED) return 0;
    int verified = 0, left = 0;
    for (int i = 0; i < r->nc; i++) {
        const cand *c = &r->cs[i];
        verified |= c->status == DB_TRIAL_OK && c->median_ms > 0 && (c->have_trial || c->done);
        left |= !c->planned && !c->have_trial;
    }
    if (verified || !left) return 0;
    clear_progress(t);
    fprintf(stderr, "  %s: none of the guided plan verified; trying the rest of the space\n", r->name);
    for (int i = 0; i < r->nc; i++) r->cs[i].planned = 1;
    r->guides = 0;
    return 1;
}

/* The inputs of choose_winner from the candidates' first measurements. */
static void first_pass(const run *r, choose_in *in) {
    for (int i = 0; i < r->nc; i++) {
        in[i].family = r->cs[i].v.tmpl;
        in[i].params = r->cs[i].v.canon;
        in[i].preferred = r->cs[i].is_default;
        in[i].noise = 0;
        in[i].median_ms = r->cs[i].status == DB_TRIAL_OK ? r->cs[i].median_ms : 0;
    }
}

/* The winner over every verified variant by its first measurement: the fastest, variants within
 * TIE_BAND of it being a tie that the built-in default, else the first by family and parameter
 * text, wins, so that two tunes agree. A run that measured nothing new keeps the stored winner (it
 * may have come from timing the finalists again, which the first-pass medians do not show). */
static void choose_first(tuner *t, run *r, const choose_in *in) {
    r->best = choose_winner(in, r->nc, TIE_BAND, &r->second);
    if (r->best >= 0) {
        r->won_ms = r->cs[r->best].median_ms;
        r->won_margin = r->second >= 0 ? r->cs[r->second].median_ms / r->won_ms - 1 : 0;
    }
    db_best old;
    if (r->best < 0 || r->timed_here || db_best_get(t->d, t->device_id, r->problem_id, &old) != FAT_OK) return;
    for (int i = 0; i < r->nc; i++) {
        if (r->cs[i].config_id != old.config_id || !(in[i].median_ms > 0)) continue;
        r->best = i;
        r->won_ms = old.median_ms;
        r->won_margin = old.margin;
        r->second = -1;
        for (int j = 0; j < r->nc; j++)
            if (j != i && in[j].median_ms > 0 && (r->second < 0 || in[j].median_ms < in[r->second].median_ms))
                r->second = j;
    }
}

/* When this run timed something: the finalists (the first pass's winner, the built-in default when
 * within DEFAULT_FINAL_BAND of the fastest (it wins any tie it is in, so it must be timed again to
 * be in one), then the fastest of the rest within FINAL_BAND) are timed again, interleaved, and
 * the winner taken from those times (remeasure). */
static fat_status choose_final(tuner *t, run *r, choose_in *in) {
    if (r->best < 0 || !r->timed_here || (t->deadline > 0 && now_s() > t->deadline)) return FAT_OK;
    int fin[FINALISTS], nf = 0;
    double fastest = r->cs[r->best].median_ms;
    for (int i = 0; i < r->nc; i++) if (in[i].median_ms > 0 && in[i].median_ms < fastest) fastest = in[i].median_ms;
    fin[nf++] = r->best;
    for (int i = 0; i < r->nc; i++)
        if (i != r->best && r->cs[i].is_default && in[i].median_ms > 0 &&
            in[i].median_ms <= (1 + DEFAULT_FINAL_BAND) * fastest)
            fin[nf++] = i;
    while (nf < FINALISTS) {
        int pick = -1;
        for (int i = 0; i < r->nc; i++) {
            int taken = 0;
            for (int f = 0; f < nf; f++) taken |= fin[f] == i;
            if (taken || !(in[i].median_ms > 0) || in[i].median_ms > (1 + FINAL_BAND) * fastest) continue;
            if (pick < 0 || in[i].median_ms < in[pick].median_ms) pick = i;
        }
        if (pick < 0) break;
        fin[nf++] = pick;
    }
    if (nf < 2) return FAT_OK;
    int w = -1;
    progress(t, r->name);
    fat_status st = remeasure(t, r->cs, fin, nf, r->problem_id, r->name, &w, &r->second, &r->won_ms, &r->won_margin);
    if (st != FAT_OK) return st;
    if (w >= 0) {
        r->best = w;
        return FAT_OK;
    }
    /* every finalist failed when timed again: the best of the rest, as measured */
    first_pass(r, in);
    r->best = choose_winner(in, r->nc, TIE_BAND, &r->second);
    if (r->best >= 0) {
        r->won_ms = r->cs[r->best].median_ms;
        r->won_margin = r->second >= 0 ? r->cs[r->second].median_ms / r->won_ms - 1 : 0;
    }
    return FAT_OK;
}

/* Stores the winner (a complete row is never replaced by a partial one) and prints its line. */
static fat_status finish(tuner *t, run *r) {
    const cand *w = r->best >= 0 ? &r->cs[r->best] : NULL;
    if (!w) {
        if (!t->o->json) printf("%-44s no verified variant%s\n", r->name, r->complete ? "" : " (budget spent)");
        if (r->complete) t->failures++;
        return FAT_OK;
    }
    /* complete: every valid variant has a trial (in this run or an earlier one) */
    int tried = 0;
    for (int i = 0; i < r->nc; i++) tried += r->cs[i].have_trial || r->cs[i].done;
    char budget[32] = "";
    static const char *const strategy[] = { "guided", "exhaustive", "random" };
    if (t->o->budget_s > 0) snprintf(budget, sizeof budget, ", budget %.0fs", t->o->budget_s);
    db_best b = { t->device_id, r->problem_id, w->config_id, r->won_ms, r->won_margin, "",
                  r->complete && !t->o->quick && tried == r->nc };
    snprintf(b.effort, sizeof b.effort, "%s%s, %d of %d%s", strategy[t->o->strategy], t->o->quick ? " quick" : "",
             tried, r->nc, budget);
    db_best old;
    if (!(db_best_get(t->d, t->device_id, r->problem_id, &old) == FAT_OK && old.complete && !b.complete) &&
        db_best_put(t->d, &b) != FAT_OK) {
        fat_set_error("%s", db_errmsg(t->d));
        return FAT_ERR_DB;
    }
    double tflops = bench_flops(r->p) / r->won_ms / 1e9;
    /* a decoding step is memory-bound: its KV cache read per second says more than its FLOPs */
    double tbps = dispatch_decoding(r->p, t->decoding_rows) ? bench_kv_bytes(r->p) / r->won_ms / 1e9 : 0;
    if (t->o->json) {
        printf("{\"problem\": \"%s\", \"family\": \"%s\", \"params\": \"%s\", \"median_ms\": %.5f, \"tflops\": %.2f, "
               "\"kv_tbps\": %.3f, \"margin\": %.4f, \"complete\": %s, \"tried\": %d, \"space\": %d, \"gpu\": %d}\n",
               r->name, w->v.tmpl, w->v.canon, r->won_ms, tflops, tbps, b.margin, b.complete ? "true" : "false",
               tried, r->nc, t->gpu);
    } else {
        /* The margin over the runner-up; within the TIE_BAND noise band the winner is a deterministic
         * tie-break and may be the slower of the two by a little. */
        char margin[48], kv[32] = "", how[64] = "";
        if (r->second == -1) snprintf(margin, sizeof margin, "(alone)");
        else if (b.margin >= TIE_BAND) snprintf(margin, sizeof margin, "(+%.1f%% over next)", 100 * b.margin);
        else snprintf(margin, sizeof margin, "(tie-break within %.0f%%%s)", 100 * TIE_BAND,
                      w->is_default ? ": the default" : "");
        if (tbps > 0) snprintf(kv, sizeof kv, " %5.2f TB/s", tbps);
        if (tried < r->nc) snprintf(how, sizeof how, " [%d of %d tried%s]", tried, r->nc, r->guides ? ", guided" : "");
        printf("%-44s %-9s %-48s %8.3f ms %6.1f TFLOPS%s %s%s%s\n", r->name, w->v.tmpl, w->v.canon, r->won_ms, tflops,
               kv, margin, how, r->complete ? "" : " partial");
    }
    fflush(stdout);
    return FAT_OK;
}

/* Tunes one problem: FAT_OK unless fatune itself failed (database, worker that cannot start). */
static fat_status tune_problem(tuner *t, const fat_problem *p) {
    run r;
    choose_in *in = NULL;
    fat_status st = begin(t, p, &r);
    /* Pass 0 tries the plan; a guided plan that verifies nothing is widened and pass 1 tries the rest. */
    for (int pass = 0; st == FAT_OK && pass < 2; pass++) {
        if ((st = compile_planned(t, &r)) != FAT_OK || (st = try_planned(t, &r)) != FAT_OK) break;
        if (pass > 0 || !widen_plan(t, &r)) break;
    }
    if (st != FAT_OK) goto out;
    double ts = now_s();
    if (!(in = calloc(r.nc ? (size_t)r.nc : 1, sizeof *in))) { fat_set_error("out of memory"); fat_set_error("out of memory"); st = FAT_ERR_NOMEM; goto out; }
    first_pass(&r, in);
    choose_first(t, &r, in);
    st = choose_final(t, &r, in);
    t->s_retime += now_s() - ts;
    clear_progress(t);
    if (st == FAT_OK) st = finish(t, &r);
out:
    free(in);
    end(&r);
    return st;
}

static int by_cost(const void *a, const void *b) { return cost_cmp(a, b); }

/* ---------------------------------------------------------------------------------------------
 * Machines: --shard K/N (tune_machine_share in tune.h). */

enum { SHARD_PROBLEM_S = 2 };               /* seconds of compiles, inputs and checks per problem */
#define SHARD_SLACK 1.25                    /* a kind stays whole up to this much over a fair share */
#define SHARD_FLOPS 2e13                    /* FLOPs timed per second of tuning: the timed runs
                                               (tens of repetitions) at hundreds of TFLOPS */

typedef struct shard_item {
    int first, count;                       /* problems [first, first + count) of the kind-sorted list */
    double cost;
} shard_item;

static int same_kind(const fat_problem *a, const fat_problem *b, int rows) {
    return a->dtype == b->dtype && a->head_dim == b->head_dim && a->causal == b->causal &&
           a->features == b->features && dispatch_decoding(a, rows) == dispatch_decoding(b, rows);
}

static int kind_decoding_rows;              /* for by_kind (qsort has no user pointer) */

/* kind (decoding, dtype, head_dim, causal, features), then the run's order within it */
static int by_kind(const void *pa, const void *pb) {
    const fat_problem *a = pa, *b = pb;
    const int ka[] = { dispatch_decoding(a, kind_decoding_rows), (int)a->dtype, a->head_dim, a->causal, (int)a->features };
    const int kb[] = { dispatch_decoding(b, kind_decoding_rows), (int)b->dtype, b->head_dim, b->causal, (int)b->features };
    for (size_t i = 0; i < sizeof ka / sizeof ka[0]; i++)
        if (ka[i] != kb[i]) return ka[i] < kb[i] ? -1 : 1;
    return cost_cmp(a, b);
}

/* the longest first; equal costs in list order, so that every machine sorts alike */
static int by_item_cost(const void *pa, const void *pb) {
    const shard_item *a = pa, *b = pb;
    if (a->cost != b->cost) return a->cost > b->cost ? -1 : 1;
    return a->first < b->first ? -1 : a->first > b->first;
}

static double shard_cost(const fat_problem *p) { return SHARD_PROBLEM_S + bench_flops(p) / SHARD_FLOPS; }

int tune_machine_share(fat_problem *probs, int *n, int shard, int nshards, int decoding_rows, int *whole, int *kinds,
                       double *share) {
    int m = *n, nitems = 0, nk = 0, kept = 0;
    double total = 0, mine = 0;
    *whole = *kinds = 0;
    *share = 0;
    if (m == 0) return 0;
    kind_decoding_rows = decoding_rows;
    qsort(probs, (size_t)m, sizeof *probs, by_kind);
    for (int i = 0; i < m; i++) total += shard_cost(&probs[i]);
    shard_item *items = calloc((size_t)m, sizeof *items);
    double *load = calloc((size_t)nshards, sizeof *load);
    int *owner = calloc((size_t)m, sizeof *owner);
    if (!items || !load || !owner) { free(items); free(load); free(owner); return -1; }
    for (int i = 0; i < m;) {
        int j = i;
        double c = 0;
        while (j < m && same_kind(&probs[i], &probs[j], decoding_rows)) c += shard_cost(&probs[j++]);
        nk++;
        if (c <= SHARD_SLACK * total / nshards || j - i == 1) {
            items[nitems++] = (shard_item){ i, j - i, c };
            kept++;
        } else {
            for (int k = i; k < j; k++) items[nitems++] = (shard_item){ k, 1, shard_cost(&probs[k]) };
        }
        i = j;
    }
    qsort(items, (size_t)nitems, sizeof *items, by_item_cost);
    for (int i = 0; i < nitems; i++) {
        int best = 0;
        for (int s = 1; s < nshards; s++) if (load[s] < load[best]) best = s;
        load[best] += items[i].cost;
        for (int k = 0; k < items[i].count; k++) owner[items[i].first + k] = best;
    }
    int w = 0;
    for (int i = 0; i < m; i++)
        if (owner[i] == shard) {
            mine += shard_cost(&probs[i]);
            probs[w++] = probs[i];
        }
    *n = w;
    *whole = kept;
    *kinds = nk;
    *share = total > 0 ? mine / total : 0;
    free(items);
    free(load);
    free(owner);
    return 0;
}

/* One GPU's share of the problems: those with index % nshard == shard. */
static int tune_shard(const tune_opts *o, int gpu, int shard, int nshard) {
    tuner t = { .o = o, .gpu = gpu, .t0 = now_s(), .tty = isatty(2) };
    int rc = 1;
    fat_problem *probs = NULL;
    int n = 0;
    char err[1024];
    if (o->budget_s > 0) t.deadline = t.t0 + o->budget_s;
    if (rtc_load() != FAT_OK) { fprintf(stderr, "fatune: %s\n", fat_last_error()); return 1; }
    if (gen_open(&t.g) != FAT_OK) { fprintf(stderr, "fatune: %s\n", gen_errmsg(t.g)); goto out; }
    if (gen_decoding_rows(t.g, &t.decoding_rows) != FAT_OK) {
        fprintf(stderr, "fatune: %s\n", gen_errmsg(t.g));
        rc = 2;
        goto out;
    }
    if (gen_shapes_file(t.g, o->shapes, &probs, &n) != FAT_OK) {
        fprintf(stderr, "fatune: %s\n", gen_errmsg(t.g));
        rc = 2;
        goto out;
    }
    if (o->nshards > 0) {
        int all = n, whole, kinds;
        double share;
        if (tune_machine_share(probs, &n, o->shard, o->nshards, t.decoding_rows, &whole, &kinds, &share)) {
            fprintf(stderr, "fatune: out of memory\n");
            goto out;
        }
        if (shard == 0 && !o->json)
            printf("shard %d/%d: %d of %d problem%s (%.0f%% of the suite's estimated tuning time); of the suite's %d "
                   "kernel kind%s, %d %s tuned whole on one machine\n", o->shard, o->nshards, n, all, all == 1 ? "" : "s",
                   100 * share, kinds, kinds == 1 ? "" : "s", whole, whole == 1 ? "is" : "are");
    }
    if (db_open(o->db, DB_CREATE, &t.d, err, sizeof err) != FAT_OK) { fprintf(stderr, "fatune: %s\n", err); goto out; }
    if (worker_start(gpu, &t.w, &t.dev) != FAT_OK) { fprintf(stderr, "fatune: %s\n", fat_last_error()); goto out; }
    /* the worker never loads NVRTC: the targets are this process's */
    t.dev.nvrtc_version = rtc_version();
    gen_device_targets(&t.dev);
    db_device dd = { t.dev.name, t.dev.cc, t.dev.sms, t.dev.l2, t.dev.smem_optin, worker_driver_version(t.w),
                     rtc_version() };
    /* Before the first row of this run: the file's rows under this GPU's name must be this GPU's. */
    if (tune_check_device(t.d, o->db, &dd, shard == 0 && !o->quiet ? stderr : NULL, err, sizeof err)) {
        fprintf(stderr, "fatune: %s\n", err);
        goto out;
    }
    if (db_device_id(t.d, &dd, &t.device_id) != FAT_OK) { fprintf(stderr, "fatune: %s\n", db_errmsg(t.d)); goto out; }
    if (split_appends(&t, probs, n, shard == 0 && !o->quiet && !o->json) != FAT_OK) {
        fprintf(stderr, "fatune: %s\n", fat_last_error());
        goto out;
    }
    /* guided: cheapest first, so each specialisation's space is screened on its cheapest problem */
    if (o->strategy == TUNE_GUIDED) qsort(probs, (size_t)n, sizeof *probs, by_cost);
    for (int i = shard; i < n; i += nshard) t.problems_total++;
    if (!o->quiet && !o->json)
        printf("tuning %d problem%s on GPU %d (%s, %s) into %s\n", t.problems_total, t.problems_total == 1 ? "" : "s", gpu,
               t.dev.name, t.dev.arch, o->db);
    fflush(stdout);
    for (int i = shard; i < n; i += nshard) {
        fat_status st = tune_problem(&t, &probs[i]);
        if (st != FAT_OK) { clear_progress(&t); fprintf(stderr, "fatune: %s\n", fat_last_error()); goto out; }
        t.problems_done++;
    }
    if (!o->json)
        printf("done: %d problem%s in %.1f s (%d compiled, %d verified, %d timed), %d without a verified variant\n"
               "time: compiling %.1f s, inputs and reference %.1f s, trials %.1f s, finalists again %.1f s\n",
               t.problems_done, t.problems_done == 1 ? "" : "s", now_s() - t.t0, t.compiled, t.verified, t.timed,
               t.failures, t.s_compile, t.s_setup, t.s_trials, t.s_retime);
    rc = t.failures ? 1 : 0;
out:
    worker_stop(t.w);
    free(probs);
    db_close(t.d);
    gen_close(t.g);
    return rc;
}

/* ---------------------------------------------------------------------------------------------
 * Bad input, found before any GPU work. */

/* The database tune would write: an existing file must open writable as a fatune database of a
 * version this build knows; a missing (or empty) one must be creatable. Creates nothing. */
static int check_db(const char *path) {
    struct stat st;
    char msg[1200], tmp[4200];
    db *d = NULL;
    if (stat(path, &st) == 0 && st.st_size > 0) {
        if (db_open(path, 0, &d, msg, sizeof msg) != FAT_OK) {
            fprintf(stderr, "fatune: %s\n", msg);
            return 1;
        }
        db_close(d);
        return 0;
    }
    if (stat(path, &st) == 0) {
        FILE *f = fopen(path, "r+");    /* an empty file becomes the database: it must be writable */
        if (!f) {
            fprintf(stderr, "fatune: %s: cannot open for writing: %s\n", path, strerror(errno));
            return 1;
        }
        fclose(f);
    }
    /* SQLite keeps its -wal and -shm files beside the database: the directory must take files. */
    if (inspect_temp_beside(path, tmp, sizeof tmp) != 0) {
        fprintf(stderr, "fatune: %s: cannot create the database there: %s\n", path, strerror(errno));
        return 1;
    }
    unlink(tmp);
    return 0;
}

/* Every family the run uses loads and enumerates its space for every problem (with sm_90's
 * nominal limits: the GPU's own are known only once its worker runs). */
static int check_templates(const tune_opts *o) {
    gen *g = NULL;
    fat_problem *probs = NULL;
    gen_device dev;
    int n = 0, nfam, rc = 2;
    const char *const *fams = gen_families(&nfam);
    if (gen_open(&g) != FAT_OK) {
        fprintf(stderr, "fatune: %s\n", g ? gen_errmsg(g) : fat_strerror(FAT_ERR_NOMEM));
        rc = 1;
        goto out;
    }
    if (gen_shapes_file(g, o->shapes, &probs, &n) != FAT_OK) {
        fprintf(stderr, "fatune: %s\n", gen_errmsg(g));
        goto out;
    }
    gen_device_for_arch("sm_90", &dev);
    for (int f = 0; f < nfam; f++) {
        int used;
        if (family_used(g, o, fams[f], &used) != FAT_OK) {
            fprintf(stderr, "fatune: template %s: %s\n", fams[f], gen_errmsg(g));
            goto out;
        }
        if (!used) continue;
        for (int i = 0; i < n; i++) {
            gen_choice *ch;
            int nch;
            if (gen_enumerate(g, fams[f], &probs[i], &dev, &ch, &nch) != FAT_OK) {
                fprintf(stderr, "fatune: template %s: %s\n", fams[f], gen_errmsg(g));
                goto out;
            }
            gen_choices_free(ch, nch);
        }
    }
    rc = 0;
out:
    free(probs);
    gen_close(g);
    return rc;
}

int tune_preflight(const tune_opts *o) {
    int rc = check_templates(o);
    return rc ? rc : check_db(o->db);
}

struct device_scan {
    const db_device *dev;
    const char *path;
    FILE *notes;
    char *msg;
    size_t n;
    int refused;
    db *d;
};

static fat_status count_rows(void *arg, const db_best *b, const db_keys *k) {
    (void)b; (void)k;
    ++*(int *)arg;
    return FAT_OK;
}

static fat_status scan_device(void *arg, int64_t id, const db_device *row) {
    struct device_scan *s = arg;
    const db_device *dev = s->dev;
    (void)id;
    if (strcmp(row->name, dev->name) != 0 || row->cc != dev->cc) {
        int nbest = 0;
        if (s->notes && db_best_each(s->d, row->name, count_rows, &nbest) == FAT_OK && nbest)
            fprintf(s->notes, "fatune: note: %s also holds %d best configs of '%s' (cc %d.%d); rows are kept "
                    "per device model, this run adds those of '%s'\n", s->path, nbest, row->name,
                    row->cc / 10, row->cc % 10, dev->name);
        return FAT_OK;
    }
    if (row->sms != dev->sms || row->l2_bytes != dev->l2_bytes || row->smem_optin != dev->smem_optin) {
        snprintf(s->msg, s->n, "%s: its rows of '%s' (cc %d.%d) were measured on a GPU with %d SMs, %lld KiB "
                 "of L2 and %lld bytes of shared memory per block; this one has %d SMs, %lld KiB and %lld "
                 "bytes: another device model under the same name (a MIG slice or a cut-down board?). Its "
                 "trials cannot be mixed with this GPU's: tune into another database (--db)",
                 s->path, dev->name, dev->cc / 10, dev->cc % 10, row->sms, (long long)(row->l2_bytes >> 10),
                 (long long)row->smem_optin, dev->sms, (long long)(dev->l2_bytes >> 10),
                 (long long)dev->smem_optin);
        s->refused = 1;
        return FAT_ERR_INVALID;
    }
    if (s->notes && (row->driver_version != dev->driver_version || row->nvrtc_version != dev->nvrtc_version))
        fprintf(s->notes, "fatune: note: %s: '%s' was tuned with driver %d and NVRTC %d, this run has %d and "
                "%d; the trials measured then are kept (delete the database to measure everything again)\n",
                s->path, dev->name, row->driver_version, row->nvrtc_version, dev->driver_version,
                dev->nvrtc_version);
    return FAT_OK;
}

int tune_check_device(db *d, const char *path, const db_device *dev, FILE *notes, char *msg, size_t n) {
    struct device_scan s = { dev, path, notes, msg, n, 0, d };
    fat_status st = db_device_each(d, scan_device, &s);
    if (s.refused) return 1;
    if (st != FAT_OK) {
        snprintf(msg, n, "%s", db_errmsg(d));
        return 1;
    }
    return 0;
}

int tune_main(const tune_opts *o) {
    if (o->ngpus == 1) return tune_shard(o, o->gpus[0], 0, 1);
    /* One supervisor per GPU; each opens the database itself (WAL takes the concurrent writers). */
    pid_t pids[TUNE_MAX_GPUS];
    fflush(stdout);
    for (int i = 0; i < o->ngpus; i++) {
        pids[i] = fork();
        if (pids[i] == 0) _exit(tune_shard(o, o->gpus[i], i, o->ngpus));
        if (pids[i] < 0) { fprintf(stderr, "fatune: cannot fork for GPU %d\n", o->gpus[i]); return 1; }
    }
    int rc = 0;
    for (int i = 0; i < o->ngpus; i++) {
        int status = 0;
        waitpid(pids[i], &status, 0);
        int r = WIFEXITED(status) ? WEXITSTATUS(status) : 1;
        if (r > rc) rc = r;
    }
    return rc;
}
