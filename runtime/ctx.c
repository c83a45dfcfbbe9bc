/*
 * ctx.c: the runtime library: fat_open, fat_attn_fwd, fat_query, fat_close.
 *
 * fat_open reads this device's tuned rows into memory. A call maps its arguments to a problem and
 * looks it up in an open-addressing table whose slots are published with release stores and read
 * with acquire loads: a shape seen before costs a hash, a compare and one cuLaunchKernel, with no
 * lock and no allocation. A new shape takes the context's mutex once: choose a configuration
 * (dispatch_choose), emit its kernel through the generator, take the cubin from the database (or
 * compile it with NVRTC and keep it), load it, and publish the slot. The table grows by copying
 * into a table twice the size; old tables stay allocated until fat_close, so a reader that still
 * holds one is never left with freed memory.
 */
#include "ctx.h"
#include "cu.h"
#include "db.h"
#include "dispatch.h"
#include "gen.h"
#include "kernel.h"
#include "rtc.h"
#include "status.h"

#define XXH_INLINE_ALL
#include <xxhash.h>

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FIRST_SLOTS 1024       /* the table starts here and doubles at half full */
#define DEFAULT_FAMILY GEN_DEFAULT_FAMILY

/* One resolved shape. fn is NULL for a failure worth remembering (a kernel that does not compile:
 * trying again on every call would run NVRTC every time) and in an offline context. */
typedef struct entry {
    fat_problem key;
    int kernel;                     /* index into ctx->built: the kernel it launches (-1: none) */
    int launch_only;                /* resolved from a kernel already built (gen_launch) */
    CUfunction fn;
    unsigned grid[3], block[3], smem;
    fat_status fail;
    char *fail_msg;
    fat_choice choice;
} entry;

typedef struct table {
    size_t mask;                    /* slots - 1, slots a power of two */
    _Atomic(entry *) slot[];
} table;

/* A loaded kernel module, by the hash of its source and arch (whatever NVRTC built it). */
typedef struct module_ref {
    char key[33];
    CUmodule mod;
    const char *origin;             /* "database" or "compiled" */
} module_ref;

/* A kernel this context has resolved, by what its source depends on: family, parameters and the
 * problem's specialisation (dtype, head_dim, causal, features; the sizes zeroed). A new shape of
 * the same kernel takes only its launch from the template (gen_launch), and this function. */
typedef struct built {
    char family[32], params[160], entry[64];
    fat_problem kind;
    CUfunction fn;                  /* NULL offline */
    const char *origin;
} built;

/* The dynamic shared memory a function has been allowed: only ever raised, since entries already
 * published launch it with what they were resolved with. */
typedef struct fn_smem { CUfunction fn; unsigned smem; } fn_smem;

/* One tuned row as read at open, with what is needed to find its cubin. */
typedef struct row_extra {
    char kernel[33];                /* the winning trial's kernel hash, "" if none */
    int current;                    /* tuned with this build's version of the template */
} row_extra;

struct fat_ctx {
    int offline;                    /* no GPU: resolve choices and cubin hashes only */
    int gpu;
    CUdevice dev;
    CUcontext cuctx;
    gen_device info;
    db *d;                          /* NULL without a database */
    int db_writable;
    int tuned_nvrtc;                /* the NVRTC version recorded with this device's rows */
    dispatch_row *rows;
    row_extra *extra;
    int nrows, cap_rows;
    struct family_hash { char name[32], hash[33]; } families[16];   /* this build's template hashes */
    int nfamilies;
    pthread_mutex_t lock;           /* everything below, and the generator and database */
    gen *g;
    module_ref *mods;
    int nmods;
    built *built;
    int nbuilt;
    fn_smem *smem_allowed;
    int nsmem_allowed;
    char excluded[8][32];           /* families that turned out to need a workspace */
    int nexcluded;
    char (*unbuildable)[33];        /* module keys of tuned configurations that did not compile */
    int nunbuildable;
    _Atomic(table *) tab;
    table **old;                    /* tables replaced by a larger one, freed at close */
    int nold;
    entry **entries;                /* every entry, in resolution order, for fat_close */
    size_t nentries, cap_entries;
    fat_stats stats;
    char summary[512];
    fat_log_fn log;
    void *log_user;
};

/* Static names of the levels. See fatune.h. */
const char *fat_level_name(fat_level level) {
    static const char *const n[] = { "exact", "bucket", "nearest", "device", "default" };
    return (unsigned)level < 5 ? n[level] : "?";
}

static void say(fat_ctx *c, const char *fmt, ...) FAT_PRINTF_LIKE(2, 3);
static void say(fat_ctx *c, const char *fmt, ...) {
    if (!c->log) return;
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    c->log(c->log_user, buf);
}

static void log_stderr(void *user, const char *message) {
    (void)user;
    fprintf(stderr, "%s\n", message);
}

/* Sets the log function under the lock and sends it the summary of the open. See fatune.h. */
void fat_set_log(fat_ctx *ctx, fat_log_fn fn, void *user) {
    if (!ctx) return;
    pthread_mutex_lock(&ctx->lock);
    ctx->log = fn;
    ctx->log_user = user;
    if (fn && ctx->summary[0]) fn(user, ctx->summary);
    pthread_mutex_unlock(&ctx->lock);
}

/* This thread's last message. See fatune.h. */
const char *fat_errmsg(const fat_ctx *ctx) {
    (void)ctx;                /* messages are per thread, so threads sharing ctx do not mix them */
    return fat_last_error();
}

/* A copy of the counters, taken under the lock. See fatune.h. */
fat_status fat_ctx_stats(fat_ctx *ctx, fat_stats *out) {
    if (!ctx || !out) { fat_set_error("%s: NULL", !ctx ? "ctx" : "out"); return FAT_ERR_INVALID; }
    pthread_mutex_lock(&ctx->lock);
    *out = ctx->stats;
    pthread_mutex_unlock(&ctx->lock);
    return FAT_OK;
}

/* ---------------------------------------------------------------------------------------------
 * Opening. */

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

/* Opens the database (writable if allowed, so JIT cubins are kept) and reads this device's rows. */
static fat_status open_db(fat_ctx *c, const char *path) {
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

/* Refuses a GPU fatune cannot build kernels for: before sm_80, or an arch NVRTC is not told about
 * (then every call would fail; better to say so once, here). */
static fat_status check_device(const gen_device *d, int gpu) {
    if (d->cc < 80) {
        fat_set_error("GPU %d (%s, %s): fatune's kernels need sm_80 or later", gpu, d->name, d->arch);
        return FAT_ERR_UNSUPPORTED;
    }
    if (!rtc_arch_known(d->arch)) {
        fat_set_error("GPU %d (%s, %s): fatune does not support the architecture %s (known: sm_80 sm_86 sm_89 "
                      "sm_90 sm_90a)", gpu, d->name, d->arch, d->arch);
        return FAT_ERR_UNSUPPORTED;
    }
    return FAT_OK;
}

static fat_status new_ctx(fat_ctx **out) {
    fat_ctx *c = calloc(1, sizeof *c);
    table *t = calloc(1, sizeof *t + FIRST_SLOTS * sizeof t->slot[0]);
    if (!c || !t) { free(c); free(t); fat_set_error("out of memory"); return FAT_ERR_NOMEM; }
    t->mask = FIRST_SLOTS - 1;
    for (size_t i = 0; i < FIRST_SLOTS; i++) atomic_init(&t->slot[i], NULL);
    atomic_init(&c->tab, t);
    pthread_mutex_init(&c->lock, NULL);
    const char *env = getenv("FATUNE_LOG");
    if (env && *env && strcmp(env, "0") != 0) c->log = log_stderr;
    *out = c;
    return FAT_OK;
}

/* Opens GPU gpu and reads its rows from db_path. See fatune.h. */
fat_status fat_open(const char *db_path, int gpu, fat_ctx **out) {
    if (!out) { fat_set_error("ctx: NULL (fat_open needs somewhere to put the context)"); return FAT_ERR_INVALID; }
    *out = NULL;
    fat_ctx *c;
    fat_status st = new_ctx(&c);
    if (st != FAT_OK) return st;
    c->gpu = gpu;
    if ((st = cu_device_info(gpu, &c->info)) != FAT_OK) goto out;
    if ((st = check_device(&c->info, gpu)) != FAT_OK) goto out;
    CU_CHECK(DeviceGet(&c->dev, gpu));
    CU_CHECK(DevicePrimaryCtxRetain(&c->cuctx, c->dev));
    if ((st = open_db(c, db_path)) != FAT_OK) goto out;
    say(c, "%s", c->summary);
out:
    if (st != FAT_OK) { fat_close(c); return st; }
    *out = c;
    return FAT_OK;
}

/* A context without CUDA, for tests. See ctx.h. */
fat_status ctx_open_offline(const char *db_path, const gen_device *dev, fat_ctx **out) {
    if (!out || !dev) { fat_set_error("%s: NULL", !out ? "ctx" : "dev"); return FAT_ERR_INVALID; }
    *out = NULL;
    fat_ctx *c;
    fat_status st = new_ctx(&c);
    if (st != FAT_OK) return st;
    c->offline = 1;
    c->info = *dev;
    if ((st = check_device(dev, 0)) != FAT_OK || (st = open_db(c, db_path)) != FAT_OK) { fat_close(c); return st; }
    say(c, "%s", c->summary);
    *out = c;
    return FAT_OK;
}

/* Frees the entries and tables, waits for the context's work and unloads the modules with the
 * context current, releases the primary context, closes the database and the generator. See fatune.h. */
void fat_close(fat_ctx *c) {
    if (!c) return;
    for (size_t i = 0; i < c->nentries; i++) { free(c->entries[i]->fail_msg); free(c->entries[i]); }
    free(c->entries);
    free(atomic_load(&c->tab));
    for (int i = 0; i < c->nold; i++) free(c->old[i]);
    free(c->old);
    if (c->nmods) {
        CUcontext prev = NULL;
        cu.CtxGetCurrent(&prev);
        if (prev != c->cuctx) cu.CtxSetCurrent(c->cuctx);
        /* A kernel launched just before the close may still run: unloading its module under it
         * is undefined. A failure here (a sticky error from some earlier kernel) changes nothing. */
        CUresult r = cu.CtxSynchronize();
        if (r != CUDA_SUCCESS) {
            const char *name = NULL;
            cu.GetErrorName(r, &name);
            say(c, "fatune: fat_close: cuCtxSynchronize failed (%s); unloading the kernels anyway", name ? name : "?");
        }
        for (int i = 0; i < c->nmods; i++) cu.ModuleUnload(c->mods[i].mod);
        if (prev != c->cuctx) cu.CtxSetCurrent(prev);
    }
    free(c->mods);
    free(c->built);
    free(c->smem_allowed);
    free(c->unbuildable);
    if (c->cuctx) cu.DevicePrimaryCtxRelease(c->dev);
    db_close(c->d);
    gen_close(c->g);
    free(c->rows);
    free(c->extra);
    pthread_mutex_destroy(&c->lock);
    free(c);
}

/* ---------------------------------------------------------------------------------------------
 * Resolving a new shape (under the lock). */

/* Kernels that need a workspace are not launched: one scratch buffer per context would race between
 * streams. Such a family (naive, flash_v1: teaching and reference kernels) is found when it is
 * first emitted and its rows are skipped from then on. */
static int deployable(const dispatch_row *r, void *ud) {
    const fat_ctx *c = ud;
    for (int i = 0; i < c->nexcluded; i++)
        if (strcmp(c->excluded[i], r->family) == 0) return 0;
    return 1;
}

/* The key of a loaded module: the kernel's source and arch (the NVRTC that built it aside). */
static void module_key(const char *source, const char *arch, char out[33]) {
    rtc_kernel_hash(source, arch, 0, out);
}

/* Looks a cubin up in the database by hash, for this device's arch only. 1: found (*k filled, the
 * caller frees it), 0: not there or refused. */
static int db_cubin(fat_ctx *c, const char *hash, db_kernel *k) {
    if (!c->d || !hash[0]) return 0;
    if (db_kernel_get(c->d, hash, k) != FAT_OK) return 0;
    if (strcmp(k->arch, c->info.arch) != 0) {
        /* Never load a cubin built for another architecture, whatever the row says. */
        say(c, "fatune: kernel %s in the database is built for %s, not %s: not used", hash, k->arch, c->info.arch);
        db_kernel_free(k);
        return 0;
    }
    return 1;
}

/* Keeps a compiled cubin in the database when it is writable. */
static void keep_cubin(fat_ctx *c, const char *hash, const rtc_result *r) {
    if (!c->d || !c->db_writable) return;
    db_kernel put = { .cubin = r->image, .cubin_size = r->size, .compile_ms = r->ms, .registers = r->registers,
                      .spills = r->spill_bytes, .smem_static = r->smem_static };
    snprintf(put.hash, sizeof put.hash, "%s", hash);
    snprintf(put.arch, sizeof put.arch, "%s", c->info.arch);
    if (db_kernel_put(c->d, &put) != FAT_OK) say(c, "fatune: could not keep the cubin: %s", db_errmsg(c->d));
}

static fat_status load_module(fat_ctx *c, const char *key, const void *image, const char *origin, CUmodule *mod) {
    fat_status st = FAT_OK;
    module_ref *m = realloc(c->mods, (size_t)(c->nmods + 1) * sizeof *m);
    if (!m) { fat_set_error("out of memory"); return FAT_ERR_NOMEM; }
    c->mods = m;
    CU_CHECK(ModuleLoadData(mod, image));
    snprintf(c->mods[c->nmods].key, 33, "%s", key);
    c->mods[c->nmods].mod = *mod;
    c->mods[c->nmods].origin = origin;
    c->nmods++;
    c->stats.kernels++;
out:
    return st;
}

/*
 * The module of variant v: already loaded, a cubin from the database (the row's own kernel when
 * row_hash is set, else by the hash of v's source with the NVRTC of the tuned rows, then with this
 * machine's), or compiled now and kept. *origin says which. Offline: *mod stays NULL and origin is
 * "database" or "none".
 */
static fat_status find_module(fat_ctx *c, const gen_variant *v, const char *row_hash, CUmodule *mod, const char **origin) {
    fat_status st = FAT_OK;
    char key[33], hash[33];
    db_kernel k;
    rtc_result r;
    memset(&k, 0, sizeof k);
    memset(&r, 0, sizeof r);
    *mod = NULL;
    module_key(v->source, c->info.arch, key);
    for (int i = 0; i < c->nmods; i++)
        if (strcmp(c->mods[i].key, key) == 0) { *mod = c->mods[i].mod; *origin = c->mods[i].origin; return FAT_OK; }
    int found = row_hash && db_cubin(c, row_hash, &k);
    if (!found && c->tuned_nvrtc) {
        rtc_kernel_hash(v->source, c->info.arch, c->tuned_nvrtc, hash);
        found = db_cubin(c, hash, &k);
    }
    if (found) {
        *origin = "database";
        if (c->offline) goto out;
        st = load_module(c, key, k.cubin, "database", mod);
        if (st == FAT_OK) { c->stats.from_db++; goto out; }
        /* A cubin this driver cannot load (a newer NVRTC made it, say): compile one here instead. */
        say(c, "fatune: the database's cubin for %s %s does not load (%s): compiling it here", v->tmpl, v->canon,
            fat_last_error());
        db_kernel_free(&k);
        st = FAT_OK;
    }
    *origin = "none";
    if (c->offline) goto out;
    if ((st = rtc_load()) != FAT_OK) {
        fat_set_error("no cubin of %s %s for %s in the database, and NVRTC is not available to compile one: %s",
                      v->tmpl, v->canon, c->info.arch, fat_last_error());
        goto out;
    }
    rtc_kernel_hash(v->source, c->info.arch, rtc_version(), hash);
    if (c->tuned_nvrtc != rtc_version() && db_cubin(c, hash, &k)) {   /* compiled here before */
        if ((st = load_module(c, key, k.cubin, "database", mod)) == FAT_OK) {
            *origin = "database";
            c->stats.from_db++;
            goto out;
        }
        /* Refused by the driver (a damaged row, a driver downgrade): compile afresh; the new cubin
         * replaces it in the database. */
        say(c, "fatune: the database's cubin for %s %s does not load (%s): compiling it here", v->tmpl, v->canon,
            fat_last_error());
        db_kernel_free(&k);
        st = FAT_OK;
    }
    if ((st = rtc_compile(v->source, v->tmpl, c->info.arch, 0, &r)) != FAT_OK) {
        if (st == FAT_ERR_NVRTC)
            fat_set_error("%s %s does not compile for %s with NVRTC %d:\n%.300s", v->tmpl, v->canon, c->info.arch,
                          rtc_version(), r.log);
        goto out;
    }
    c->stats.compiled++;
    c->stats.compile_ms += r.ms;
    *origin = "compiled";
    say(c, "fatune: compiled %s %s for %s in %.0f ms%s", v->tmpl, v->canon, c->info.arch, r.ms,
        c->d && c->db_writable ? ", kept in the database" : ", kept in memory");
    keep_cubin(c, hash, &r);
    st = load_module(c, key, r.image, "compiled", mod);
out:
    db_kernel_free(&k);
    rtc_result_free(&r);
    return st;
}

/* Whether a failure is a property of the shape (remembered) rather than of the moment (retried). */
static int lasting(fat_status st) {
    return st == FAT_ERR_NVRTC || st == FAT_ERR_TEMPLATE || st == FAT_ERR_UNSUPPORTED || st == FAT_ERR_INVALID;
}

/* Whether the kernel of module key `key` is a tuned configuration that failed to compile before. */
static int unbuildable(const fat_ctx *c, const char *key) {
    for (int i = 0; i < c->nunbuildable; i++)
        if (strcmp(c->unbuildable[i], key) == 0) return 1;
    return 0;
}

/* Remembers that the kernel of key does not compile here, so that other shapes tuned with it go to
 * the default at once instead of running NVRTC again. Out of memory: it is not remembered. */
static void remember_unbuildable(fat_ctx *c, const char *key) {
    char (*u)[33] = realloc(c->unbuildable, (size_t)(c->nunbuildable + 1) * sizeof *u);
    if (!u) return;
    c->unbuildable = u;
    snprintf(u[c->nunbuildable++], sizeof u[0], "%s", key);
}

static fat_problem kind_of(const fat_problem *p) {
    fat_problem k;
    memset(&k, 0, sizeof k);
    k.dtype = p->dtype;
    k.head_dim = p->head_dim;
    k.causal = p->causal;
    k.features = p->features;
    return k;
}

static int find_built(fat_ctx *c, const char *family, const char *params, const fat_problem *p) {
    fat_problem k = kind_of(p);
    for (int i = 0; i < c->nbuilt; i++)
        if (!strcmp(c->built[i].family, family) && !strcmp(c->built[i].params, params) &&
            !memcmp(&c->built[i].kind, &k, sizeof k)) return i;
    return -1;
}

/* Remembers a resolved kernel under the parameter text it was asked for; returns its index, -1 when
 * it cannot (out of memory, names too long: the next shape then takes the long way). */
static int keep_built(fat_ctx *c, const char *family, const char *params, const fat_problem *p, const char *entry_name,
                      CUfunction fn, const char *origin) {
    int i = find_built(c, family, params, p);
    if (i >= 0) return i;
    if (strlen(family) >= sizeof c->built->family || strlen(params) >= sizeof c->built->params ||
        strlen(entry_name) >= sizeof c->built->entry) return -1;
    built *b = realloc(c->built, (size_t)(c->nbuilt + 1) * sizeof *b);
    if (!b) return -1;
    c->built = b;
    b = &c->built[c->nbuilt];
    snprintf(b->family, sizeof b->family, "%s", family);
    snprintf(b->params, sizeof b->params, "%s", params);
    snprintf(b->entry, sizeof b->entry, "%s", entry_name);
    b->kind = kind_of(p);
    b->fn = fn;
    b->origin = origin;
    return c->nbuilt++;
}

/* Lets fn use smem bytes of dynamic shared memory, raising what it was allowed, never lowering it. */
static fat_status allow_smem(fat_ctx *c, CUfunction fn, size_t smem) {
    fat_status st = FAT_OK;
    if (!fn || smem <= 48 * 1024) return FAT_OK;
    int i = 0;
    while (i < c->nsmem_allowed && c->smem_allowed[i].fn != fn) i++;
    if (i < c->nsmem_allowed && c->smem_allowed[i].smem >= smem) return FAT_OK;
    if (i == c->nsmem_allowed) {
        fn_smem *m = realloc(c->smem_allowed, (size_t)(c->nsmem_allowed + 1) * sizeof *m);
        if (!m) { fat_set_error("out of memory"); return FAT_ERR_NOMEM; }
        c->smem_allowed = m;
        m[i].fn = fn;
        m[i].smem = 0;
        c->nsmem_allowed++;
    }
    CU_CHECK(FuncSetAttribute(fn, CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, (int)smem));
    c->smem_allowed[i].smem = (unsigned)smem;
out:
    return st;
}

/* Variant params of family for p into *v: only its launch when the kernel is built already (*known
 * its index), else emitted with its source (*known -1). */
static fat_status emit_or_launch(fat_ctx *c, const char *family, const char *params, const fat_problem *p,
                                 gen_variant *v, int *known) {
    int k = find_built(c, family, params, p);
    fat_status st = k >= 0 ? gen_launch(c->g, family, params, p, &c->info, v) : gen_emit(c->g, family, params, p, &c->info, v);
    *known = st == FAT_OK ? k : -1;
    return st;
}

/* Emits the built-in default for p into *v (whatever it held is freed) and its parameters;
 * *known as emit_or_launch (NULL: may be NULL, then always emitted in full). */
static fat_status emit_default(fat_ctx *c, const fat_problem *p, const char *name, const char **family, char *params,
                               size_t n, gen_variant *v, int *known) {
    gen_variant_free(v);
    memset(v, 0, sizeof *v);
    *family = DEFAULT_FAMILY;
    fat_status st = gen_builtin_default(c->g, p, &c->info, family, params, n);
    if (st == FAT_OK)
        st = known ? emit_or_launch(c, *family, params, p, v, known)
                   : gen_emit(c->g, *family, params, p, &c->info, v);
    if (st != FAT_OK) {
        fat_set_error("%s: no built-in default (%s): %s", name, *family, gen_errmsg(c->g));
        if (st == FAT_ERR_NOT_FOUND) st = FAT_ERR_UNSUPPORTED;
    }
    return st;
}

/* Chooses, emits and loads the kernel of problem p into e. */
static fat_status resolve(fat_ctx *c, const fat_problem *p, entry *e) {
    fat_status st = FAT_OK;
    e->kernel = -1;
    gen_variant v;
    memset(&v, 0, sizeof v);
    char name[160], params[160];
    gen_problem_name(p, name, sizeof name);
    if (!c->g && (st = gen_open(&c->g)) != FAT_OK) {
        fat_set_error("cannot start the generator: %s", c->g ? gen_errmsg(c->g) : "out of memory");
        gen_close(c->g);
        c->g = NULL;
        return st;
    }
    int row = -1;
    fat_level level;
    const char *family;
    int known = -1;                 /* the kernel is built already: v has its launch (c->built[known]) */
    for (;;) {
        level = dispatch_choose(c->rows, c->nrows, p, deployable, c, &row);
        family = DEFAULT_FAMILY;
        if (row < 0) {
            if ((st = emit_default(c, p, name, &family, params, sizeof params, &v, &known)) != FAT_OK) goto out;
        } else {
            family = c->rows[row].family;
            snprintf(params, sizeof params, "%s", c->rows[row].params);
            gen_variant_free(&v);
            memset(&v, 0, sizeof v);
            if (emit_or_launch(c, family, params, p, &v, &known) != FAT_OK) {
                /* A neighbour's configuration need not be valid here (shared memory, tiles larger
                 * than the sequences, a family this build lacks); the default adapts to the shape. */
                say(c, "fatune: %s: %s %s from the %s row does not apply (%s); using the default", name, family,
                    params, fat_level_name(level), gen_errmsg(c->g));
                level = FAT_LEVEL_DEFAULT;
                row = -1;
                if ((st = emit_default(c, p, name, &family, params, sizeof params, &v, &known)) != FAT_OK) goto out;
            }
        }
        if (!v.workspace) break;
        if (row < 0 || c->nexcluded == (int)(sizeof c->excluded / sizeof c->excluded[0])) {
            fat_set_error("%s: %s %s needs a %zu-byte workspace; the runtime launches workspace-free kernels only",
                          name, family, params, v.workspace);
            st = FAT_ERR_UNSUPPORTED;
            goto out;
        }
        say(c, "fatune: %s needs a workspace: its tuned rows are skipped", family);
        snprintf(c->excluded[c->nexcluded++], sizeof c->excluded[0], "%s", family);
    }
    if (v.grid[0] > INT_MAX || v.grid[1] > 65535 || v.grid[2] > 65535) {
        fat_set_error("%s: the launch grid %ux%ux%u is beyond CUDA's limits (x < 2^31, y and z <= 65535)", name,
                      v.grid[0], v.grid[1], v.grid[2]);
        st = FAT_ERR_INVALID;
        goto out;
    }
    const char *origin = "none";
    if (known >= 0 && (v.source || strcmp(v.entry, c->built[known].entry) != 0)) {
        /* Not the kernel built for another shape after all: a template without launch() (whose
         * source is then checked the long way, by its hash) or one whose entry point depends on
         * the sizes. */
        known = -1;
        if (!v.source) {
            gen_variant_free(&v);
            memset(&v, 0, sizeof v);
            if (gen_emit(c->g, family, params, p, &c->info, &v) != FAT_OK) {
                fat_set_error("%s: %s %s: %s", name, family, params, gen_errmsg(c->g));
                st = FAT_ERR_TEMPLATE;
                goto out;
            }
        }
    }
    e->kernel = known;
    if (known >= 0) {
        /* A new shape of a kernel this context holds: the same function, its launch for p. */
        e->fn = c->built[known].fn;
        e->launch_only = 1;
        origin = c->built[known].origin;
        if ((st = allow_smem(c, e->fn, v.smem)) != FAT_OK) goto out;
    } else {
        /* The row's own kernel is this source exactly when the row is of the same kind (the source
         * depends only on the specialisation and the parameters) and the template is unchanged. */
        const char *row_hash = row >= 0 && level != FAT_LEVEL_DEVICE && c->extra[row].current ? c->extra[row].kernel : NULL;
        CUmodule mod = NULL;
        char key[33];
        module_key(v.source, c->info.arch, key);
        if (row >= 0 && unbuildable(c, key)) {
            st = FAT_ERR_NVRTC;
            fat_set_error("%s %s did not compile for another shape", family, v.canon);
        } else {
            st = find_module(c, &v, row_hash, &mod, &origin);
            if (st == FAT_ERR_NVRTC && row >= 0) remember_unbuildable(c, key);
        }
        if (st == FAT_ERR_NVRTC && row >= 0) {
            /* The tuned configuration does not build here (another NVRTC, say): the default will. */
            say(c, "fatune: %s: %s; using the default", name, fat_last_error());
            level = FAT_LEVEL_DEFAULT;
            row = -1;
            if ((st = emit_default(c, p, name, &family, params, sizeof params, &v, NULL)) != FAT_OK) goto out;
            st = find_module(c, &v, NULL, &mod, &origin);
        }
        if (st != FAT_OK) goto out;
        if (mod) {
            CU_CHECK(ModuleGetFunction(&e->fn, mod, v.entry));
            if ((st = allow_smem(c, e->fn, v.smem)) != FAT_OK) goto out;
        }
        /* under the text it was asked for (a row's, the default's) and its canonical one */
        e->kernel = keep_built(c, family, params, p, v.entry, e->fn, origin);
        if (strcmp(params, v.canon) != 0) keep_built(c, family, v.canon, p, v.entry, e->fn, origin);
    }
    memcpy(e->grid, v.grid, sizeof e->grid);
    memcpy(e->block, v.block, sizeof e->block);
    e->smem = (unsigned)v.smem;
    snprintf(e->choice.family, sizeof e->choice.family, "%s", family);
    snprintf(e->choice.params, sizeof e->choice.params, "%s", v.canon);
    e->choice.level = level;
    if (row >= 0) {
        e->choice.tuned = c->rows[row].prob;
        e->choice.tuned_ms = c->rows[row].median_ms;
    }
    snprintf(e->choice.cubin, sizeof e->choice.cubin, "%s", origin);
    if (c->log) {
        char tuned[160] = "", from[176] = "";
        if (row >= 0 && level != FAT_LEVEL_EXACT) {
            gen_problem_name(&c->rows[row].prob, tuned, sizeof tuned);
            snprintf(from, sizeof from, " (%s)", tuned);
        }
        say(c, "fatune: %s: %s%s -> %s %s, cubin %s", name, fat_level_name(level), from, family, v.canon, origin);
    }
out:
    gen_variant_free(&v);
    return st;
}

/* ---------------------------------------------------------------------------------------------
 * The table. */

static uint64_t key_hash(const fat_problem *p) {
    return XXH3_64bits(p, sizeof *p);
}

static int key_eq(const fat_problem *a, const fat_problem *b) {
    return memcmp(a, b, sizeof *a) == 0;
}

static entry *find(const table *t, const fat_problem *p, uint64_t h) {
    for (size_t i = 0; i <= t->mask; i++) {
        entry *e = atomic_load_explicit(&t->slot[(h + i) & t->mask], memory_order_acquire);
        if (!e) return NULL;
        if (key_eq(&e->key, p)) return e;
    }
    return NULL;
}

static void place(table *t, entry *e) {
    uint64_t h = key_hash(&e->key);
    for (size_t i = 0;; i++) {
        size_t s = (h + i) & t->mask;
        if (!atomic_load_explicit(&t->slot[s], memory_order_relaxed)) {
            atomic_store_explicit(&t->slot[s], e, memory_order_release);
            return;
        }
    }
}

/* Publishes e (under the lock), doubling the table first when it would be over half full. */
static fat_status publish(fat_ctx *c, entry *e) {
    if (c->nentries == c->cap_entries) {
        size_t cap = c->cap_entries ? 2 * c->cap_entries : 256;
        entry **n = realloc(c->entries, cap * sizeof *n);
        if (!n) return FAT_ERR_NOMEM;
        c->entries = n;
        c->cap_entries = cap;
    }
    table *t = atomic_load_explicit(&c->tab, memory_order_relaxed);
    if (2 * (c->nentries + 1) > t->mask + 1) {
        size_t slots = 2 * (t->mask + 1);
        table *bigger = calloc(1, sizeof *bigger + slots * sizeof bigger->slot[0]);
        table **old = realloc(c->old, (size_t)(c->nold + 1) * sizeof *old);
        if (!bigger || !old) { free(bigger); if (old) c->old = old; return FAT_ERR_NOMEM; }
        c->old = old;
        bigger->mask = slots - 1;
        for (size_t i = 0; i < slots; i++) atomic_init(&bigger->slot[i], NULL);
        for (size_t i = 0; i < c->nentries; i++) place(bigger, c->entries[i]);
        c->old[c->nold++] = t;
        atomic_store_explicit(&c->tab, bigger, memory_order_release);
        t = bigger;
    }
    c->entries[c->nentries++] = e;
    place(t, e);
    c->stats.shapes = (int)c->nentries;
    return FAT_OK;
}

/* The entry for problem p, resolving and publishing it when new. A remembered failure comes back
 * as its status and message. */
static fat_status lookup(fat_ctx *c, const fat_problem *p, entry **out) {
    uint64_t h = key_hash(p);
    entry *e = find(atomic_load_explicit(&c->tab, memory_order_acquire), p, h);
    fat_status st = FAT_OK;
    if (!e) {
        pthread_mutex_lock(&c->lock);
        /* Another thread may have published it meanwhile; look again, now as the only writer. */
        e = find(atomic_load_explicit(&c->tab, memory_order_acquire), p, h);
        if (!e) {
            CUcontext prev = NULL;
            e = calloc(1, sizeof *e);
            if (!e) { fat_set_error("out of memory"); st = FAT_ERR_NOMEM; goto unlock; }
            e->key = *p;
            if (!c->offline) {
                cu.CtxGetCurrent(&prev);
                if (prev != c->cuctx) CU_CHECK(CtxSetCurrent(c->cuctx));
            }
            st = resolve(c, p, e);
            if (!c->offline && prev != c->cuctx) cu.CtxSetCurrent(prev);
        out:
            if (st != FAT_OK && !lasting(st)) { free(e); e = NULL; goto unlock; }
            if (st != FAT_OK) { e->fail = st; e->fail_msg = strdup(fat_last_error()); }
            if (publish(c, e) != FAT_OK) {
                free(e->fail_msg);
                free(e);
                e = NULL;
                if (st == FAT_OK) { fat_set_error("out of memory"); st = FAT_ERR_NOMEM; }
            }
        }
    unlock:
        pthread_mutex_unlock(&c->lock);
        if (!e) return st;
    }
    if (e->fail) {
        fat_set_error("%s", e->fail_msg ? e->fail_msg : fat_strerror(e->fail));
        return e->fail;
    }
    *out = e;
    return FAT_OK;
}

/* ---------------------------------------------------------------------------------------------
 * The calls. */

/* From 1, not from a floor: a varlen decoding step's bound of 1 or 2 new tokens must stay a
 * decoding step (runtime/dispatch.h), where the decode family serves it. */
static unsigned round_pow2(int x) {
    unsigned r = 1;
    while (r < (unsigned)x && r < (1u << 30)) r <<= 1;
    return r < (unsigned)x ? (unsigned)x : r;
}

/* The cache and dispatch key of a call. See ctx.h. */
void ctx_call_problem(const fat_attn_args *a, fat_problem *p) {
    dispatch_problem(a, p);
    if (p->features & FAT_FEAT_VARLEN) {
        p->seqlen_q = (int)round_pow2(p->seqlen_q);
        p->seqlen_k = (int)round_pow2(p->seqlen_k);
    }
}

/* Checks the arguments and finds the entry of their problem. */
static fat_status prepare(fat_ctx *c, const fat_attn_args *a, fat_problem *p, entry **e) {
    if (!c) { fat_set_error("ctx: NULL (call fat_open first)"); return FAT_ERR_INVALID; }
    fat_status st = fat_attn_check(a, 1);
    if (st != FAT_OK) return st;
    /* The kernels put the heads and the batch on the grid's y and z, at most 65535 each. */
    if (a->heads_q > 65535) { fat_set_error("heads_q: %d is above 65535, the most the GPU kernels launch", a->heads_q); return FAT_ERR_INVALID; }
    if (a->batch > 65535) { fat_set_error("batch: %d is above 65535, the most the GPU kernels launch", a->batch); return FAT_ERR_INVALID; }
    if (a->cu_seqlens_q && a->lse && a->total_q <= 0) {
        fat_set_error("total_q: must be cu_seqlens_q[batch] (> 0) for a variable-length call that writes lse");
        return FAT_ERR_INVALID;
    }
    ctx_call_problem(a, p);
    return lookup(c, p, e);
}

/* The choice of a call's shape, resolved if new. See fatune.h. */
fat_status fat_query(fat_ctx *c, const fat_attn_args *a, fat_choice *out) {
    entry *e;
    fat_problem p;
    if (!out) { fat_set_error("out: NULL"); return FAT_ERR_INVALID; }
    fat_status st = prepare(c, a, &p, &e);
    if (st == FAT_OK) *out = e->choice;
    return st;
}

/* The launch fat_attn_fwd would make for a. See ctx.h. */
fat_status ctx_launch_of(fat_ctx *c, const fat_attn_args *a, ctx_launch *out) {
    entry *e;
    fat_problem p;
    fat_status st = prepare(c, a, &p, &e);
    if (st != FAT_OK) return st;
    memcpy(out->grid, e->grid, sizeof e->grid);
    memcpy(out->block, e->block, sizeof e->block);
    out->smem = e->smem;
    out->kernel = e->kernel;
    out->launch_only = e->launch_only;
    return FAT_OK;
}

/* Checks, looks up (resolving a new shape), launches on stream with the primary context current,
 * then restores the thread's context. See fatune.h. */
fat_status fat_attn_fwd(fat_ctx *c, const fat_attn_args *a, void *stream) {
    entry *e;
    fat_problem p;
    fat_status st = prepare(c, a, &p, &e);
    if (st != FAT_OK) return st;
    if (!e->fn) { fat_set_error("this context has no GPU (opened offline)"); return FAT_ERR_NO_GPU; }
    CUcontext prev = NULL;
    cu.CtxGetCurrent(&prev);
    if (prev != c->cuctx) CU_CHECK(CtxSetCurrent(c->cuctx));
    fat_kparams kp;
    kernel_params(a, NULL, a->total_q, &kp);
    /* varlen: the key's rounded bounds, so that the grid and the parameters agree */
    kp.seqlen_q = p.seqlen_q;
    kp.seqlen_k = p.seqlen_k;
    void *params[] = { &kp };
    CUresult r = cu.LaunchKernel(e->fn, e->grid[0], e->grid[1], e->grid[2], e->block[0], e->block[1], e->block[2],
                                 e->smem, (CUstream)stream, params, NULL);
    if (prev != c->cuctx) cu.CtxSetCurrent(prev);
    if (r != CUDA_SUCCESS) { cu_record(r, "LaunchKernel", __FILE__, __LINE__); st = FAT_ERR_CUDA; }
out:
    return st;
}
