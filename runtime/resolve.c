/*
 * resolve.c: what a new call shape runs (under the context's lock). The lookup order of the tuned
 * rows (dispatch.c) gives a configuration, or none: then the built-in default. A configuration
 * that does not apply to the shape (a neighbour's tiles) or does not compile here (another NVRTC)
 * falls back to the default, with a log line. A kernel the context has built for another shape is
 * reused with only its launch asked of the template; else the kernel is emitted, its module found
 * (modules.c), and the function prepared for the launch (launch.c).
 */
#include "context.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int resolve_lasting(fat_status st) {
    return st == FAT_ERR_NVRTC || st == FAT_ERR_TEMPLATE || st == FAT_ERR_UNSUPPORTED || st == FAT_ERR_INVALID;
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
        if (!strcmp(c->built[i]->family, family) && !strcmp(c->built[i]->params, params) &&
            !memcmp(&c->built[i]->kind, &k, sizeof k)) return i;
    return -1;
}

/* The launch_fn of function fn: one per function, however many parameter texts and shapes use it,
 * so that what is set on it (the shared memory limit, only ever raised) is known once. NULL when
 * out of memory. */
static launch_fn *fn_of(fat_ctx *c, CUfunction fn) {
    for (int i = 0; i < c->nfns; i++)
        if (c->fns[i]->fn == fn) return c->fns[i];
    launch_fn **all = realloc(c->fns, (size_t)(c->nfns + 1) * sizeof *all);
    if (!all) return NULL;
    c->fns = all;
    launch_fn *f = calloc(1, sizeof *f);
    if (!f) return NULL;
    f->fn = fn;
    all[c->nfns++] = f;
    return f;
}

/* *out: the launch_fn of function `name` in module mod (NULL offline, where mod is NULL). */
static fat_status fn_in(fat_ctx *c, CUmodule mod, const char *name, launch_fn **out) {
    fat_status st = FAT_OK;
    CUfunction f;
    *out = NULL;
    if (!mod) return FAT_OK;
    CU_CHECK(ModuleGetFunction(&f, mod, name));
    if (!(*out = fn_of(c, f))) { fat_set_error("out of memory"); st = FAT_ERR_NOMEM; }
out:
    return st;
}

/* Remembers a resolved kernel under the parameter text it was asked for; returns its index, -1 when
 * it cannot (out of memory, names too long: the next shape then takes the long way). fn may be
 * NULL (offline). */
static int keep_built(fat_ctx *c, const char *family, const char *params, const fat_problem *p, const char *entry_name,
                      launch_fn *fn, const char *origin) {
    int i = find_built(c, family, params, p);
    if (i >= 0) return i;
    if (strlen(family) >= sizeof c->built[0]->family || strlen(params) >= sizeof c->built[0]->params ||
        strlen(entry_name) >= sizeof c->built[0]->entry) return -1;
    built **all = realloc(c->built, (size_t)(c->nbuilt + 1) * sizeof *all);
    if (!all) return -1;
    c->built = all;
    built *b = calloc(1, sizeof *b);
    if (!b) return -1;
    snprintf(b->family, sizeof b->family, "%s", family);
    snprintf(b->params, sizeof b->params, "%s", params);
    snprintf(b->entry, sizeof b->entry, "%s", entry_name);
    b->kind = kind_of(p);
    b->fn = fn;
    b->origin = origin;
    all[c->nbuilt] = b;
    return c->nbuilt++;
}

/* Variant params of family for p into *v: only its launch when the kernel is built already (*known
 * its index), else emitted with its source (*known -1). */
static fat_status emit_or_launch(fat_ctx *c, const char *family, const char *params, const fat_problem *p,
                                 gen_variant *v, int *known) {
    int k = find_built(c, family, params, p);
    fat_status st = k >= 0 ? gen_launch_only(c->g, family, params, p, &c->info, v) : gen_emit(c->g, family, params, p, &c->info, v);
    *known = st == FAT_OK ? k : -1;
    return st;
}

/* Emits the built-in default for p into *v (whatever it held is freed) and its parameters;
 * *known as emit_or_launch (NULL: may be NULL, then always emitted in full). */
static fat_status emit_default(fat_ctx *c, const fat_problem *p, const char *name, const char **family, char *params,
                               size_t n, gen_variant *v, int *known) {
    gen_variant_free(v);
    memset(v, 0, sizeof *v);
    *family = "?";
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

/* The generator, opened on the first new shape. */
static fat_status open_generator(fat_ctx *c) {
    if (c->g) return FAT_OK;
    fat_status st = gen_open(&c->g);
    if (st == FAT_OK) st = gen_decoding_rows(c->g, &c->decoding_rows);
    if (st != FAT_OK) {
        fat_set_error("cannot start the generator: %s", c->g ? gen_errmsg(c->g) : "out of memory");
        gen_close(c->g);
        c->g = NULL;
    }
    return st;
}

/* Builds the kernel of v (not built for another shape): its module, its function, remembered
 * under the parameter text asked for and the canonical one. The tuned row's configuration that
 * does not compile here falls back to the default (*v, *family, *level, *row change then). */
static fat_status build(fat_ctx *c, const fat_problem *p, const char *name, gen_variant *v, const char **family,
                        char *params, size_t n, fat_level *level, int *row, entry *e, const char **origin) {
    fat_status st = FAT_OK;
    /* The row's own kernel is this source exactly when the row is of the same kind (the source
     * depends only on the specialisation and the parameters) and the template is unchanged. */
    const char *row_hash = *row >= 0 && *level != FAT_LEVEL_DEVICE && c->extra[*row].current ? c->extra[*row].kernel : NULL;
    CUmodule mod = NULL;
    char key[33];
    modules_key(v, key);
    if (*row >= 0 && modules_unbuildable(c, key)) {
        st = FAT_ERR_NVRTC;
        fat_set_error("%s %s did not compile for another shape", *family, v->canon);
    } else {
        st = modules_find(c, v, row_hash, &mod, origin);
        if (st == FAT_ERR_NVRTC && *row >= 0) modules_remember_unbuildable(c, key);
    }
    if (st == FAT_ERR_NVRTC && *row >= 0) {
        /* The tuned configuration does not build here (another NVRTC, say): the default will. */
        ctx_say(c, "fatune: %s: %s; using the default", name, fat_last_error());
        *level = FAT_LEVEL_DEFAULT;
        *row = -1;
        if ((st = emit_default(c, p, name, family, params, n, v, NULL)) != FAT_OK) return st;
        st = modules_find(c, v, NULL, &mod, origin);
    }
    if (st != FAT_OK) return st;
    launch_fn *fn;
    if ((st = fn_in(c, mod, v->launch.entry, &fn)) != FAT_OK) return st;
    /* under the text it was asked for (a row's, the default's) and its canonical one */
    e->kernel = keep_built(c, *family, params, p, v->launch.entry, fn, *origin);
    if (strcmp(params, v->canon) != 0) keep_built(c, *family, v->canon, p, v->launch.entry, fn, *origin);
    e->fn = fn;
    return st;
}

/* Chooses, emits and loads the kernel of problem p into e. */
static fat_status resolve_one(fat_ctx *c, const fat_problem *p, entry *e) {
    fat_status st = FAT_OK;
    e->kernel = -1;
    gen_variant v;
    memset(&v, 0, sizeof v);
    char name[160], params[160];
    gen_problem_name(p, name, sizeof name);
    if ((st = open_generator(c)) != FAT_OK) return st;
    int row = -1;
    fat_level level = dispatch_choose(c->rows, c->nrows, p, c->decoding_rows, NULL, NULL, &row);
    const char *family = "?";
    int known = -1;                 /* the kernel is built already: v has its launch (c->built[known]) */
    if (row < 0) {
        if ((st = emit_default(c, p, name, &family, params, sizeof params, &v, &known)) != FAT_OK) goto out;
    } else {
        family = c->rows[row].family;
        snprintf(params, sizeof params, "%s", c->rows[row].params);
        if (emit_or_launch(c, family, params, p, &v, &known) != FAT_OK) {
            /* A neighbour's configuration need not be valid here (shared memory, tiles larger than
             * the sequences, a family this build lacks); the default adapts to the shape. */
            ctx_say(c, "fatune: %s: %s %s from the %s row does not apply (%s); using the default", name, family, params,
                    fat_level_name(level), gen_errmsg(c->g));
            level = FAT_LEVEL_DEFAULT;
            row = -1;
            if ((st = emit_default(c, p, name, &family, params, sizeof params, &v, &known)) != FAT_OK) goto out;
        }
    }
    if (v.launch.grid[0] > INT_MAX || v.launch.grid[1] > 65535 || v.launch.grid[2] > 65535) {
        fat_set_error("%s: the launch grid %ux%ux%u is beyond CUDA's limits (x < 2^31, y and z <= 65535)", name,
                      v.launch.grid[0], v.launch.grid[1], v.launch.grid[2]);
        st = FAT_ERR_INVALID;
        goto out;
    }
    const char *origin = "none";
    if (known >= 0 && strcmp(v.launch.entry, c->built[known]->entry) != 0) {
        /* Not the kernel built for another shape after all: its entry point depends on the sizes. */
        known = -1;
        gen_variant_free(&v);
        memset(&v, 0, sizeof v);
        if (gen_emit(c->g, family, params, p, &c->info, &v) != FAT_OK) {
            fat_set_error("%s: %s %s: %s", name, family, params, gen_errmsg(c->g));
            st = FAT_ERR_TEMPLATE;
            goto out;
        }
    }
    if (known >= 0) {
        /* A new shape of a kernel this context holds: the same function, its launch for p. */
        e->kernel = known;
        e->fn = c->built[known]->fn;
        e->launch_only = 1;
        origin = c->built[known]->origin;
    } else if ((st = build(c, p, name, &v, &family, params, sizeof params, &level, &row, e, &origin)) != FAT_OK) {
        goto out;
    }
    if (e->fn && (st = launch_prepare(e->fn, &v.launch)) != FAT_OK) goto out;
    e->launch = v.launch;
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
        ctx_say(c, "fatune: %s: %s%s -> %s %s, cubin %s", name, fat_level_name(level), from, family, v.canon, origin);
    }
out:
    gen_variant_free(&v);
    return st;
}

/* The append kernel (GEN_KV_APPEND) of problem p into e: the kernel built for another shape of the
 * same kind when there is one, else emitted and loaded. */
static fat_status resolve_append(fat_ctx *c, const fat_problem *p, const char *name, entry *e) {
    gen_variant v;
    memset(&v, 0, sizeof v);
    int known = -1;
    fat_status st = emit_or_launch(c, GEN_KV_APPEND, "", p, &v, &known);
    if (st != FAT_OK) {
        fat_set_error("%s: %s: %s", name, GEN_KV_APPEND, gen_errmsg(c->g));
        goto out;
    }
    launch_fn *fn = NULL;
    if (known >= 0) {
        fn = c->built[known]->fn;
    } else {
        CUmodule mod = NULL;
        const char *origin = "none";
        if ((st = modules_find(c, &v, NULL, &mod, &origin)) != FAT_OK) goto out;
        if ((st = fn_in(c, mod, v.launch.entry, &fn)) != FAT_OK) goto out;
        keep_built(c, GEN_KV_APPEND, "", p, v.launch.entry, fn, origin);
    }
    if (fn && (st = launch_prepare(fn, &v.launch)) != FAT_OK) goto out;
    e->append_fn = fn;
    e->append_launch = v.launch;
    snprintf(e->choice.append, sizeof e->choice.append, "%s", GEN_KV_APPEND);
    ctx_say(c, "fatune: %s: k_new and v_new appended first by %s (%s does not append)", name, GEN_KV_APPEND,
            e->choice.family);
out:
    gen_variant_free(&v);
    return st;
}

/* Chooses, emits and loads what problem p runs into e. See context.h. An append that no kernel of
 * the problem does itself (flash_hopper never appends: another CTA's TMA would not see the rows; decode
 * appends up to its decoding rows) is split: GEN_KV_APPEND copies k_new and v_new into the cache,
 * then the attention resolved for the problem without the append (its tuned rows are the cache
 * problem's) reads them there, the kernels taking sk = cache_seqlens + seqlen_new either way. */
fat_status resolve(fat_ctx *c, const fat_problem *p, entry *e) {
    fat_status st = resolve_one(c, p, e);
    if (st != FAT_ERR_UNSUPPORTED || !(p->features & FAT_FEAT_APPEND)) return st;
    fat_problem attn = *p;
    attn.features &= ~FAT_FEAT_APPEND;
    if ((st = resolve_one(c, &attn, e)) != FAT_OK) return st;
    char name[160];
    gen_problem_name(p, name, sizeof name);
    return resolve_append(c, p, name, e);
}
