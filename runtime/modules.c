/*
 * modules.c: where a kernel's cubin comes from. A module already loaded in this context is used
 * again; else the database's cubin (the tuned row's own kernel, or found by the hash of the
 * source, its target and the NVRTC version); else NVRTC compiles it, and the cubin is kept in the
 * database when it is writable. A stored cubin is loaded only when its target runs on this GPU
 * (gen_target_runs_on), whatever a row says.
 */
#include "context.h"
#include "rtc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void modules_key(const gen_variant *v, char out[33]) {
    rtc_kernel_hash(v->source, v->launch.target, 0, out);
}

/* Looks a cubin up in the database by hash, for a target this GPU runs. 1: found (*k filled, the
 * caller frees it), 0: not there or refused. */
static int db_cubin(fat_ctx *c, const char *hash, db_kernel *k) {
    if (!c->d || !hash[0]) return 0;
    if (db_kernel_get(c->d, hash, k) != FAT_OK) return 0;
    if (!k->cubin) {            /* a row exported without its cubin: compile it here */
        db_kernel_free(k);
        return 0;
    }
    if (!gen_target_runs_on(k->arch, c->info.cc)) {
        /* Never load a cubin built for another architecture, whatever the row says. */
        ctx_say(c, "fatune: kernel %s in the database is built for %s, which does not run on %s: not used", hash,
                k->arch, c->info.arch);
        db_kernel_free(k);
        return 0;
    }
    return 1;
}

/* Keeps a compiled cubin in the database when it is writable. */
static void keep_cubin(fat_ctx *c, const char *hash, const char *target, const rtc_result *r) {
    if (!c->d || !c->db_writable) return;
    db_kernel put = { .cubin = r->image, .cubin_size = r->size, .compile_ms = r->ms, .registers = r->registers,
                      .spills = r->spill_bytes, .smem_static = r->smem_static };
    snprintf(put.hash, sizeof put.hash, "%s", hash);
    snprintf(put.arch, sizeof put.arch, "%s", target);
    if (db_kernel_put(c->d, &put) != FAT_OK) ctx_say(c, "fatune: could not keep the cubin: %s", db_errmsg(c->d));
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

/* The module of variant v. See context.h. */
fat_status modules_find(fat_ctx *c, const gen_variant *v, const char *row_hash, CUmodule *mod, const char **origin) {
    fat_status st = FAT_OK;
    const char *target = v->launch.target;
    char key[33], hash[33];
    db_kernel k;
    rtc_result r;
    memset(&k, 0, sizeof k);
    memset(&r, 0, sizeof r);
    *mod = NULL;
    modules_key(v, key);
    for (int i = 0; i < c->nmods; i++)
        if (strcmp(c->mods[i].key, key) == 0) { *mod = c->mods[i].mod; *origin = c->mods[i].origin; return FAT_OK; }
    int found = row_hash && db_cubin(c, row_hash, &k);
    if (!found && c->tuned_nvrtc) {
        rtc_kernel_hash(v->source, target, c->tuned_nvrtc, hash);
        found = db_cubin(c, hash, &k);
    }
    if (found) {
        *origin = "database";
        if (c->offline) goto out;
        st = load_module(c, key, k.cubin, "database", mod);
        if (st == FAT_OK) { c->stats.from_db++; goto out; }
        /* A cubin this driver cannot load (a newer NVRTC made it, say): compile one here instead. */
        ctx_say(c, "fatune: the database's cubin for %s %s does not load (%s): compiling it here", v->tmpl, v->canon,
                fat_last_error());
        db_kernel_free(&k);
        st = FAT_OK;
    }
    *origin = "none";
    if (c->offline) goto out;
    if ((st = rtc_load()) != FAT_OK) {
        fat_set_error("no cubin of %s %s for %s in the database, and NVRTC is not available to compile one: %s",
                      v->tmpl, v->canon, target, fat_last_error());
        goto out;
    }
    rtc_kernel_hash(v->source, target, rtc_version(), hash);
    if (c->tuned_nvrtc != rtc_version() && db_cubin(c, hash, &k)) {   /* compiled here before */
        if ((st = load_module(c, key, k.cubin, "database", mod)) == FAT_OK) {
            *origin = "database";
            c->stats.from_db++;
            goto out;
        }
        /* Refused by the driver (a damaged row, a driver downgrade): compile afresh; the new cubin
         * replaces it in the database. */
        ctx_say(c, "fatune: the database's cubin for %s %s does not load (%s): compiling it here", v->tmpl, v->canon,
                fat_last_error());
        db_kernel_free(&k);
        st = FAT_OK;
    }
    if ((st = rtc_compile(v->source, v->tmpl, target, 0, &r)) != FAT_OK) {
        /* the whole log: its first lines are often warnings, the error comes after */
        if (st == FAT_ERR_NVRTC)
            fat_set_error("%s %s does not compile for %s with NVRTC %d:\n%s", v->tmpl, v->canon, target, rtc_version(),
                          r.log);
        goto out;
    }
    c->stats.compiled++;
    c->stats.compile_ms += r.ms;
    *origin = "compiled";
    ctx_say(c, "fatune: compiled %s %s for %s in %.0f ms%s", v->tmpl, v->canon, target, r.ms,
            c->d && c->db_writable ? ", kept in the database" : ", kept in memory");
    keep_cubin(c, hash, target, &r);
    st = load_module(c, key, r.image, "compiled", mod);
out:
    db_kernel_free(&k);
    rtc_result_free(&r);
    return st;
}

int modules_unbuildable(const fat_ctx *c, const char *key) {
    for (int i = 0; i < c->nunbuildable; i++)
        if (strcmp(c->unbuildable[i], key) == 0) return 1;
    return 0;
}

/* Remembers that the kernel of key does not compile here, so that other shapes tuned with it go to
 * the default at once instead of running NVRTC again. Out of memory: it is not remembered. */
void modules_remember_unbuildable(fat_ctx *c, const char *key) {
    char (*u)[33] = realloc(c->unbuildable, (size_t)(c->nunbuildable + 1) * sizeof *u);
    if (!u) return;
    c->unbuildable = u;
    snprintf(u[c->nunbuildable++], sizeof u[0], "%s", key);
}

void modules_unload(fat_ctx *c) {
    for (int i = 0; i < c->nmods; i++) cu.ModuleUnload(c->mods[i].mod);
    free(c->mods);
    c->mods = NULL;
    c->nmods = 0;
    free(c->unbuildable);
    c->unbuildable = NULL;
    c->nunbuildable = 0;
}
