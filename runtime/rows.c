/*
 * rows.c: reading this GPU model's tuned rows at open: the best configuration per problem, the
 * kernel its trial ran (to find the cubin again), and whether its template is still this build's.
 * A database that is missing is no error (built-in defaults); one that cannot be read is.
 */
#include "context.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Whether template_hash is this build's hash of template `family` (a few families: hashed once). */
static int template_current(fat_ctx *c, const char *family, const char *template_hash) {
    for (int i = 0; i < c->nfamilies; i++)
        if (strcmp(c->families[i].name, family) == 0) return strcmp(c->families[i].hash, template_hash) == 0;
    if (c->nfamilies == (int)(sizeof c->families / sizeof c->families[0])) return 0;
    struct family_hash *f = &c->families[c->nfamilies++];
    snprintf(f->name, sizeof f->name, "%s", family);
    if (gen_template_hash(family, f->hash) != FAT_OK) f->hash[0] = 0;
    return f->hash[0] && strcmp(f->hash, template_hash) == 0;
}

static fat_status load_row(void *ud, const fat_problem *p, const char *family, const char *params,
                           double median_ms, const char *kernel_hash, const char *template_hash) {
    fat_ctx *c = ud;
    if (c->nrows == c->cap_rows) {
        int cap = c->cap_rows ? 2 * c->cap_rows : 64;
        dispatch_row *r = realloc(c->rows, (size_t)cap * sizeof *r);
        if (!r) return FAT_ERR_NOMEM;
        c->rows = r;
        row_extra *x = realloc(c->extra, (size_t)cap * sizeof *x);
        if (!x) return FAT_ERR_NOMEM;
        c->extra = x;
        c->cap_rows = cap;
    }
    dispatch_row *r = &c->rows[c->nrows];
    row_extra *x = &c->extra[c->nrows];
    memset(r, 0, sizeof *r);
    memset(x, 0, sizeof *x);
    r->prob = *p;
    snprintf(r->family, sizeof r->family, "%s", family);
    snprintf(r->params, sizeof r->params, "%s", params);
    r->median_ms = median_ms;
    if (strlen(kernel_hash) < sizeof x->kernel) snprintf(x->kernel, sizeof x->kernel, "%s", kernel_hash);
    x->current = template_current(c, family, template_hash);
    c->nrows++;
    return FAT_OK;
}

/* Opens the database (writable if allowed, so JIT cubins are kept) and reads this device's rows.
 * See context.h. */
fat_status rows_open(fat_ctx *c, const char *path) {
    char err[1024];
    const char *cache = getenv("FATUNE_CACHE");
    if (!path && cache && *cache) {
        /* No tuned database, but a place to keep what NVRTC builds, so the next process finds it. */
        if (db_open(cache, DB_CREATE, &c->d, err, sizeof err) == FAT_OK) {
            c->db_writable = 1;
            snprintf(c->summary, sizeof c->summary, "fatune: GPU %d %s (%s): built-in defaults, compiled cubins kept in "
                     "$FATUNE_CACHE %s", c->gpu, c->info.name, c->info.arch, cache);
            return FAT_OK;
        }
        snprintf(c->summary, sizeof c->summary, "fatune: GPU %d %s (%s): built-in defaults compiled on first use; "
                 "$FATUNE_CACHE is not usable: %.200s", c->gpu, c->info.name, c->info.arch, err);
        return FAT_OK;
    }
    FILE *f = path ? fopen(path, "rb") : NULL;
    int err_no = f ? 0 : errno;
    /* A directory opens; reading it is what fails (EISDIR). */
    if (f && getc(f) == EOF && ferror(f)) { err_no = errno; fclose(f); f = NULL; }
    if (!f && path && err_no != ENOENT) {
        /* Only an absent file means "no database": an unreadable one is the caller's to fix, not
         * a reason to run untuned without a word. */
        fat_set_error("cannot read the database %s: %s", path, strerror(err_no));
        return FAT_ERR_IO;
    }
    if (!f) {
        snprintf(c->summary, sizeof c->summary, "fatune: GPU %d %s (%s): no database%s%s, built-in defaults compiled on first use",
                 c->gpu, c->info.name, c->info.arch, path ? " at " : "", path ? path : "");
        return FAT_OK;
    }
    fclose(f);
    if (db_open(path, 0, &c->d, err, sizeof err) == FAT_OK) c->db_writable = 1;
    else if (db_open(path, DB_READONLY, &c->d, err, sizeof err) != FAT_OK) {
        fat_set_error("%s", err);
        return FAT_ERR_DB;
    }
    int64_t device_id = 0;
    fat_status st = db_device_find(c->d, c->info.name, c->info.cc, &device_id, &c->tuned_nvrtc);
    if (st == FAT_ERR_NOT_FOUND) {
        snprintf(c->summary, sizeof c->summary, "fatune: GPU %d %s (%s): %s holds no rows for this GPU model; "
                 "built-in defaults (cubins for %s in it are still used)", c->gpu, c->info.name, c->info.arch, path, c->info.arch);
        return FAT_OK;
    }
    if (st != FAT_OK) { fat_set_error("%s", db_errmsg(c->d)); return FAT_ERR_DB; }
    st = db_best_rows(c->d, device_id, load_row, c);
    if (st == FAT_ERR_NOMEM) { fat_set_error("out of memory reading %s", path); return st; }
    if (st != FAT_OK) { fat_set_error("%s", db_errmsg(c->d)); return FAT_ERR_DB; }
    int stale = 0;
    for (int i = 0; i < c->nrows; i++) stale += !c->extra[i].current;
    c->stats.tuned_rows = c->nrows;
    snprintf(c->summary, sizeof c->summary, "fatune: GPU %d %s (%s): %d tuned problems in %s (%s, NVRTC %d)%s",
             c->gpu, c->info.name, c->info.arch, c->nrows, path, c->db_writable ? "writable" : "read-only",
             c->tuned_nvrtc, stale ? "; some rows were tuned with another version of their template: their "
             "configurations are used, their cubins only where the kernel source is unchanged" : "");
    return FAT_OK;
}

