/*
 * check.c: the compile-only check. It answers "does every kernel this suite needs build, and how
 * big is the space?" on any machine with NVRTC, with or without a GPU.
 */
#include "check.h"
#include "pool.h"
#include "status.h"

#define XXH_INLINE_ALL
#include <xxhash.h>

#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct unit {
    XXH128_hash_t h;        /* of the source and the target: one compiled kernel */
    gen_variant v;
    const fat_problem *p;   /* the first problem that needs it */
} unit;

typedef struct reason_count {
    char *key;              /* the reason with its numbers left out, to group alike ones */
    char *example;          /* the first reason of the group, as the template gave it */
    int n;
} reason_count;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* The first `lines` lines of a log, indented, into buf. */
static void log_head(const char *log, int lines, char *buf, size_t n) {
    size_t len = 0;
    const char *p = log;
    buf[0] = 0;
    for (int i = 0; i < lines && *p && len + 8 < n; i++) {
        size_t l = strcspn(p, "\n");
        len += (size_t)snprintf(buf + len, n - len, "    %.*s\n", (int)l, p);
        if (len >= n) break;
        p += l;
        if (*p) p++;
    }
}

/* Reasons differ by their numbers: group them by the text without its numbers, and show the
 * first of each group as it was written. */
static void count_reason(reason_count **rc, int *nrc, const char *reason) {
    char key[512];
    size_t k = 0;
    for (const char *c = reason; *c && k + 2 < sizeof key; c++)
        if (!(*c >= '0' && *c <= '9') || k == 0 || key[k - 1] != '#') key[k++] = *c >= '0' && *c <= '9' ? '#' : *c;
    key[k] = 0;
    for (int i = 0; i < *nrc; i++)
        if (strcmp((*rc)[i].key, key) == 0) { (*rc)[i].n++; return; }
    reason_count *nr = realloc(*rc, (size_t)(*nrc + 1) * sizeof **rc);
    if (!nr) return;
    *rc = nr;
    (*rc)[*nrc].key = strdup(key);
    (*rc)[*nrc].example = strdup(reason);
    (*rc)[*nrc].n = 1;
    (*nrc)++;
}

/* "bf16 d128 causal": what a kernel is specialised on (the sizes do not matter to it). */
static void kind_name(const fat_problem *p, char *buf, size_t n) {
    char feat[48];   /* " window softcap varlen paged256 cache append": 44 */
    gen_features_text(p->features, feat, sizeof feat);
    snprintf(buf, n, "%s d%d%s%s", fat_dtype_name(p->dtype), p->head_dim, p->causal ? " causal" : "", feat);
}

fat_status check_run(gen *g, const fat_problem *probs, int nprobs, const check_opts *o, FILE *out,
                     check_summary *sum) {
    memset(sum, 0, sizeof *sum);
    double t0 = now_s();
    fat_status st = FAT_OK;
    unit *units = NULL;
    int nunits = 0, cap = 0;
    pool_job *jobs = NULL;
    int nfam;
    const char *const *fams = gen_families(&nfam);

    for (int f = 0; f < nfam; f++) {
        if (!gen_family_selected(o->only, fams[f])) continue;
        int space = 0, pruned = 0, before = nunits;
        reason_count *rc = NULL;
        int nrc = 0;
        for (int i = 0; i < nprobs; i++) {
            gen_choice *ch;
            int nch;
            st = gen_enumerate(g, fams[f], &probs[i], o->dev, &ch, &nch);
            if (st != FAT_OK) { fat_set_error("%s", gen_errmsg(g)); goto out; }
            for (int c = 0; c < nch; c++) {
                space++;
                if (!ch[c].ok) { pruned++; count_reason(&rc, &nrc, ch[c].reason); continue; }
                gen_variant v;
                st = gen_emit(g, fams[f], ch[c].canon, &probs[i], o->dev, &v);
                if (st != FAT_OK) { fat_set_error("%s", gen_errmsg(g)); gen_choices_free(ch, nch); goto out; }
                XXH3_state_t hs;
                XXH3_INITSTATE(&hs);
                XXH3_128bits_reset(&hs);
                XXH3_128bits_update(&hs, v.source, strlen(v.source));
                XXH3_128bits_update(&hs, v.launch.target, strlen(v.launch.target));
                XXH128_hash_t h = XXH3_128bits_digest(&hs);
                int dup = 0;
                for (int u = 0; u < nunits && !dup; u++) dup = XXH128_isEqual(units[u].h, h);
                if (dup) { gen_variant_free(&v); continue; }
                if (nunits == cap) {
                    cap = cap ? 2 * cap : 64;
                    unit *nu = realloc(units, (size_t)cap * sizeof *units);
                    if (!nu) { gen_variant_free(&v); gen_choices_free(ch, nch); fat_set_error("out of memory"); st = FAT_ERR_NOMEM; goto out; }
                    units = nu;
                }
                units[nunits].h = h;
                units[nunits].v = v;
                units[nunits].p = &probs[i];
                nunits++;
            }
            gen_choices_free(ch, nch);
        }
        if (!o->quiet) {
            fprintf(out, "%-10s space %d, pruned %d, distinct kernels %d\n", fams[f], space, pruned, nunits - before);
            for (int r = 0; r < nrc; r++)
                fprintf(out, "           pruned %4d: %s%s\n", rc[r].n, rc[r].example, rc[r].n > 1 ? " (and alike)" : "");
        }
        for (int r = 0; r < nrc; r++) { free(rc[r].key); free(rc[r].example); }
        free(rc);
        sum->space += space;
        sum->pruned += pruned;
    }

    jobs = calloc(nunits ? (size_t)nunits : 1, sizeof *jobs);
    if (!jobs) { fat_set_error("out of memory"); st = FAT_ERR_NOMEM; goto out; }
    for (int u = 0; u < nunits; u++) {
        jobs[u].source = units[u].v.source;
        jobs[u].name = units[u].v.tmpl;
        jobs[u].arch = units[u].v.launch.target;
    }
    pool_compile_report(jobs, nunits, o->threads, o->quiet ? NULL : stderr, "check");
    sum->variants = nunits;
    for (int u = 0; u < nunits; u++) {
        char kind[96];
        kind_name(units[u].p, kind, sizeof kind);
        if (jobs[u].st == FAT_OK) {
            sum->compiled++;
            if (jobs[u].res.spill_bytes > 0) {
                sum->spilled++;
                if (jobs[u].res.spill_bytes > sum->max_spill_bytes) sum->max_spill_bytes = jobs[u].res.spill_bytes;
                fprintf(out, "SPILL %s %s (%s, %s): %d registers, %d bytes spilled\n", units[u].v.tmpl,
                        units[u].v.canon, units[u].v.launch.target, kind, jobs[u].res.registers, jobs[u].res.spill_bytes);
            }
            continue;
        }
        sum->failed++;
        char head[2048];
        log_head(jobs[u].res.log ? jobs[u].res.log : "", 6, head, sizeof head);
        fprintf(out, "FAIL %s %s (%s, %s): %s\n%s", units[u].v.tmpl, units[u].v.canon, units[u].v.launch.target, kind,
                jobs[u].err, head);
    }
    sum->seconds = now_s() - t0;
    fprintf(out, "check %s: %d variants, %d compiled, %d failed, %d spill, %.1f s (space %d, pruned %d)\n",
            o->dev->arch, sum->variants, sum->compiled, sum->failed, sum->spilled, sum->seconds,
            sum->space, sum->pruned);
out:
    for (int u = 0; u < nunits; u++) {
        gen_variant_free(&units[u].v);
        if (jobs) rtc_result_free(&jobs[u].res);
    }
    free(units);
    free(jobs);
    return st;
}
