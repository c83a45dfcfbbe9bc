/*
 * gen.c: embeds Lua 5.4 to run the kernel templates and the shapes files in a sandbox.
 *
 * The sandbox is redis's and wrk's idea: a fresh environment with the safe parts of the base,
 * string, table, math and utf8 libraries and nothing that reaches the outside (no io, os, debug,
 * load*, dofile, string.dump, math.random). `require` loads only the template modules built into
 * the binary. A count hook bounds the instructions of every call and the allocator bounds memory,
 * so an endless loop or a runaway table is an error, not a hang.
 */
#include "gen.h"
#include "embedded.h"

#include <dirent.h>
#include <errno.h>
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#define GEN_INSTR_LIMIT   200000000L     /* per protected call: ~1 s of Lua */
#define GEN_INSTR_STEP    10000
#define GEN_MEM_LIMIT     (512u << 20)

struct gen {
    lua_State *L;
    int host_ref;            /* the table host.lua returned */
    int base_ref;            /* the sandbox's read-only base environment */
    long instr;              /* instructions counted in the current call */
    size_t mem;              /* bytes the state holds */
    char err[1024];
    char *traceback;
};

/* The families in teaching order; a build lists those whose template it embeds, then any other
 * family found in $FATUNE_TEMPLATES (test-only templates, new families in development). */
static const char *const known_families[] = { "naive", "flash_v1", "flash_v2", "flash_hopper", "decode" };
#define MAX_FAMILIES 64
static const char *families[MAX_FAMILIES + 1];
static char extra_names[MAX_FAMILIES][64];
static pthread_once_t families_once = PTHREAD_ONCE_INIT;

static const struct gen_file *embedded(const char *path);

static int listed(int k, const char *name) {
    for (int i = 0; i < k; i++) if (strcmp(families[i], name) == 0) return 1;
    return 0;
}

static void find_families(void) {
    int k = 0;
    for (size_t i = 0; i < sizeof known_families / sizeof known_families[0]; i++) {
        char rel[64];
        snprintf(rel, sizeof rel, "templates/%s.lua", known_families[i]);
        if (embedded(rel)) families[k++] = known_families[i];
    }
    const char *dir = getenv("FATUNE_TEMPLATES");
    DIR *d = dir && *dir ? opendir(dir) : NULL;
    if (d) {
        char *names[MAX_FAMILIES];
        int n = 0;
        struct dirent *e;
        while ((e = readdir(d)) != NULL && n < MAX_FAMILIES) {
            size_t len = strlen(e->d_name);
            if (len < 5 || len > 60 || strcmp(e->d_name + len - 4, ".lua") != 0) continue;
            if (strcmp(e->d_name, "prelude.lua") == 0) continue;
            names[n] = strndup(e->d_name, len - 4);
            if (names[n]) n++;
        }
        closedir(d);
        /* readdir's order is the file system's: sort so runs repeat. */
        for (int i = 1; i < n; i++)
            for (int j = i; j > 0 && strcmp(names[j - 1], names[j]) > 0; j--) {
                char *t = names[j]; names[j] = names[j - 1]; names[j - 1] = t;
            }
        for (int i = 0; i < n; i++) {
            if (k < MAX_FAMILIES && !listed(k, names[i])) {
                snprintf(extra_names[k], sizeof extra_names[k], "%s", names[i]);
                families[k] = extra_names[k];
                k++;
            }
            free(names[i]);
        }
    }
    families[k] = NULL;
}

int gen_family_selected(const char *only, const char *name) {
    if (!only) return 1;
    size_t len = strlen(name);
    for (const char *p = only; *p;) {
        size_t l = strcspn(p, ",");
        if (l == len && strncmp(p, name, len) == 0) return 1;
        p += l;
        if (*p == ',') p++;
    }
    return 0;
}

const char *const *gen_families(int *n) {
    pthread_once(&families_once, find_families);
    int k = 0;
    while (families[k]) k++;
    if (n) *n = k;
    return families;
}

/* ---------------------------------------------------------------------------------------------
 * Memory and instruction limits. */

static void *lalloc(void *ud, void *ptr, size_t osize, size_t nsize) {
    gen *g = ud;
    if (!ptr) osize = 0;
    if (nsize == 0) { free(ptr); g->mem -= osize; return NULL; }
    if (nsize > osize && g->mem - osize + nsize > GEN_MEM_LIMIT) return NULL;
    void *p = realloc(ptr, nsize);
    if (p) g->mem = g->mem - osize + nsize;
    return p;
}

static void count_hook(lua_State *L, lua_Debug *ar) {
    (void)ar;
    gen *g;
    lua_getallocf(L, (void **)&g);
    g->instr += GEN_INSTR_STEP;
    if (g->instr > GEN_INSTR_LIMIT)
        luaL_error(L, "instruction limit exceeded (%d million): endless loop?", (int)(GEN_INSTR_LIMIT / 1000000));
}

/* ---------------------------------------------------------------------------------------------
 * Loading modules: the embedded files, or $FATUNE_TEMPLATES/<name>.lua for templates. */

static const struct gen_file *embedded(const char *path) {
    for (const struct gen_file *f = gen_files; f->path; f++)
        if (strcmp(f->path, path) == 0) return f;
    return NULL;
}

static char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *buf = NULL;
    size_t n = 0, cap = 0;
    for (;;) {
        if (n + 4096 + 1 > cap) {
            cap = cap ? 2 * cap : 8192;
            char *nb = realloc(buf, cap);
            if (!nb) { free(buf); fclose(f); errno = ENOMEM; return NULL; }
            buf = nb;
        }
        size_t got = fread(buf + n, 1, 4096, f);
        n += got;
        if (got < 4096) break;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) { free(buf); errno = EIO; return NULL; }
    buf[n] = 0;
    *len = n;
    return buf;
}

/* A module's environment: reads fall through to the base, writes to globals are refused. */
static int env_newindex(lua_State *L) {
    return luaL_error(L, "assignment to global '%s': templates keep no globals (use local)",
                      lua_tostring(L, 2) ? lua_tostring(L, 2) : "?");
}

static void push_module_env(lua_State *L, const gen *g) {
    lua_newtable(L);
    lua_newtable(L);
    lua_rawgeti(L, LUA_REGISTRYINDEX, g->base_ref);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, env_newindex);
    lua_setfield(L, -2, "__newindex");
    lua_setmetatable(L, -2);
}

/* Loads the chunk of module `name` ("lib.ptx" -> templates/lib/ptx.lua) onto the stack. */
static int load_module(lua_State *L, const char *name) {
    char rel[256];
    if (strcmp(name, "host") == 0) snprintf(rel, sizeof rel, "generator/host.lua");
    else {
        if (strlen(name) > 200 || strspn(name, "abcdefghijklmnopqrstuvwxyz0123456789_.") != strlen(name))
            return luaL_error(L, "module '%s': not a template module name", name);
        snprintf(rel, sizeof rel, "templates/%s.lua", name);
        for (char *c = rel + 10; *c; c++) if (*c == '.' && strcmp(c, ".lua") != 0) *c = '/';
    }
    const char *dir = getenv("FATUNE_TEMPLATES");
    if (dir && *dir && strncmp(rel, "templates/", 10) == 0) {
        char path[4096], chunk[4100];
        snprintf(path, sizeof path, "%s/%s", dir, rel + 10);
        size_t len;
        char *src = read_file(path, &len);
        if (src) {
            snprintf(chunk, sizeof chunk, "@%s", path);
            int rc = luaL_loadbufferx(L, src, len, chunk, "t");
            free(src);
            if (rc != LUA_OK) return lua_error(L);
            return 1;
        }
    }
    const struct gen_file *f = embedded(rel);
    if (!f) return luaL_error(L, "module '%s' not found (no %s in this build)", name, rel);
    char chunk[300];
    snprintf(chunk, sizeof chunk, "@%s", rel);
    if (luaL_loadbufferx(L, f->data, f->len, chunk, "t") != LUA_OK) return lua_error(L);
    return 1;
}

/* require(name): each module is loaded once per state, in its own guarded environment. */
static int sandbox_require(lua_State *L) {
    const char *name = luaL_checkstring(L, 1);
    gen *g;
    lua_getallocf(L, (void **)&g);
    lua_getfield(L, LUA_REGISTRYINDEX, "fat_loaded");
    if (lua_getfield(L, -1, name) != LUA_TNIL) return 1;
    lua_pop(L, 1);
    load_module(L, name);
    push_module_env(L, g);
    lua_setupvalue(L, -2, 1);                 /* the chunk's _ENV */
    lua_pushstring(L, name);
    lua_call(L, 1, 1);
    if (lua_isnil(L, -1)) { lua_pop(L, 1); lua_pushboolean(L, 1); }
    lua_pushvalue(L, -1);
    lua_setfield(L, -3, name);
    return 1;
}

/* The base environment: safe functions copied from the standard libraries. */
static void build_base(lua_State *L, gen *g) {
    static const char *const basefns[] = { "assert", "error", "ipairs", "next", "pairs", "pcall",
        "rawequal", "rawget", "rawlen", "rawset", "select", "setmetatable", "getmetatable",
        "tonumber", "tostring", "type", "xpcall", "_VERSION", NULL };
    static const char *const libs[] = { "string", "table", "math", "utf8", NULL };
    static const char *const banned[] = { "dump", "random", "randomseed", NULL };
    lua_newtable(L);                                        /* base */
    for (int i = 0; basefns[i]; i++) {
        lua_getglobal(L, basefns[i]);
        lua_setfield(L, -2, basefns[i]);
    }
    for (int i = 0; libs[i]; i++) {
        lua_newtable(L);
        lua_getglobal(L, libs[i]);
        lua_pushnil(L);
        while (lua_next(L, -2)) {
            int skip = 0;
            for (int b = 0; banned[b]; b++) skip |= lua_type(L, -2) == LUA_TSTRING && strcmp(lua_tostring(L, -2), banned[b]) == 0;
            if (skip) { lua_pop(L, 1); continue; }
            lua_pushvalue(L, -2);
            lua_insert(L, -2);
            lua_settable(L, -5);
        }
        lua_pop(L, 1);
        lua_setfield(L, -2, libs[i]);
    }
    lua_pushcfunction(L, sandbox_require);
    lua_setfield(L, -2, "require");
    g->base_ref = luaL_ref(L, LUA_REGISTRYINDEX);
}

/* ---------------------------------------------------------------------------------------------
 * Protected calls. */

static int msgh(lua_State *L) {
    const char *msg = lua_tostring(L, 1);
    if (!msg) msg = luaL_typename(L, 1);
    luaL_traceback(L, L, msg, 1);
    return 1;
}

/* Calls the function below nargs arguments; on error fills g->err with the first line. */
static fat_status pcall(gen *g, int nargs, int nres) {
    lua_State *L = g->L;
    int base = lua_gettop(L) - nargs;
    lua_pushcfunction(L, msgh);
    lua_insert(L, base);
    g->instr = 0;
    lua_sethook(L, count_hook, LUA_MASKCOUNT, GEN_INSTR_STEP);
    int rc = lua_pcall(L, nargs, nres, base);
    lua_sethook(L, NULL, 0, 0);
    lua_remove(L, base);
    if (rc == LUA_OK) return FAT_OK;
    const char *full = lua_tostring(L, -1);
    if (rc == LUA_ERRMEM) full = "out of memory (the generator's limit is 512 MiB)";
    free(g->traceback);
    g->traceback = strdup(full ? full : "?");
    size_t first = full ? strcspn(full, "\n") : 0;
    snprintf(g->err, sizeof g->err, "%.*s", (int)first, full ? full : "?");
    lua_pop(L, 1);
    return FAT_ERR_TEMPLATE;
}

/* Pushes host[fn] ready for a call. */
static void host_fn(gen *g, const char *fn) {
    lua_rawgeti(g->L, LUA_REGISTRYINDEX, g->host_ref);
    lua_getfield(g->L, -1, fn);
    lua_remove(g->L, -2);
}

fat_status gen_open(gen **out) {
    *out = NULL;
    gen *g = calloc(1, sizeof *g);
    if (!g) return FAT_ERR_NOMEM;
    g->L = lua_newstate(lalloc, g);
    if (!g->L) { free(g); return FAT_ERR_NOMEM; }
    lua_State *L = g->L;
    luaL_requiref(L, LUA_GNAME, luaopen_base, 1);
    luaL_requiref(L, LUA_STRLIBNAME, luaopen_string, 1);
    luaL_requiref(L, LUA_TABLIBNAME, luaopen_table, 1);
    luaL_requiref(L, LUA_MATHLIBNAME, luaopen_math, 1);
    luaL_requiref(L, LUA_UTF8LIBNAME, luaopen_utf8, 1);
    lua_pop(L, 5);
    lua_newtable(L);
    lua_setfield(L, LUA_REGISTRYINDEX, "fat_loaded");
    build_base(L, g);
    /* host.lua goes through the same require, so it too runs in the sandbox. */
    lua_pushcfunction(L, sandbox_require);
    lua_pushstring(L, "host");
    fat_status st = pcall(g, 1, 1);
    *out = g;                                    /* even on error, so gen_errmsg() can tell why */
    if (st != FAT_OK) return st;
    g->host_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    return FAT_OK;
}

void gen_close(gen *g) {
    if (!g) return;
    if (g->L) lua_close(g->L);
    free(g->traceback);
    free(g);
}

const char *gen_errmsg(const gen *g) { return g ? g->err : "no generator"; }
const char *gen_traceback(const gen *g) { return g && g->traceback ? g->traceback : ""; }

/* ---------------------------------------------------------------------------------------------
 * Tables to and from C. */

static void push_problem(lua_State *L, const fat_problem *p) {
    lua_createtable(L, 0, 11);
    lua_pushstring(L, fat_dtype_name(p->dtype)); lua_setfield(L, -2, "dtype");
    lua_pushinteger(L, p->head_dim); lua_setfield(L, -2, "head_dim");
    lua_pushboolean(L, p->causal); lua_setfield(L, -2, "causal");
    lua_pushboolean(L, (p->features & FAT_FEAT_WINDOW) != 0); lua_setfield(L, -2, "window");
    lua_pushboolean(L, (p->features & FAT_FEAT_SOFTCAP) != 0); lua_setfield(L, -2, "softcap");
    lua_pushboolean(L, (p->features & FAT_FEAT_VARLEN) != 0); lua_setfield(L, -2, "varlen");
    lua_pushinteger(L, p->batch); lua_setfield(L, -2, "batch");
    lua_pushinteger(L, p->heads_q); lua_setfield(L, -2, "heads_q");
    lua_pushinteger(L, p->heads_kv); lua_setfield(L, -2, "heads_kv");
    lua_pushinteger(L, p->seqlen_q); lua_setfield(L, -2, "seqlen_q");
    lua_pushinteger(L, p->seqlen_k); lua_setfield(L, -2, "seqlen_k");
}

static void push_device(lua_State *L, const gen_device *d) {
    lua_createtable(L, 0, 11);
    lua_pushstring(L, d->name); lua_setfield(L, -2, "name");
    lua_pushstring(L, d->arch); lua_setfield(L, -2, "arch");
    lua_pushinteger(L, d->cc); lua_setfield(L, -2, "cc");
    lua_pushinteger(L, d->sms); lua_setfield(L, -2, "sms");
    lua_pushinteger(L, d->max_threads); lua_setfield(L, -2, "max_threads");
    lua_pushinteger(L, d->smem_optin); lua_setfield(L, -2, "smem_optin");
    lua_pushinteger(L, d->smem_per_sm); lua_setfield(L, -2, "smem_per_sm");
    lua_pushinteger(L, d->regs_per_sm); lua_setfield(L, -2, "regs_per_sm");
    lua_pushinteger(L, d->l2); lua_setfield(L, -2, "l2");
    lua_pushinteger(L, d->mem); lua_setfield(L, -2, "mem");
}

static char *dup_field(lua_State *L, int idx, const char *k) {
    lua_getfield(L, idx, k);
    const char *s = lua_tostring(L, -1);
    char *r = s ? strdup(s) : NULL;
    lua_pop(L, 1);
    return r;
}

static long long int_field(lua_State *L, int idx, const char *k) {
    lua_getfield(L, idx, k);
    long long v = lua_tointeger(L, -1);
    lua_pop(L, 1);
    return v;
}

static int bool_field(lua_State *L, int idx, const char *k) {
    lua_getfield(L, idx, k);
    int v = lua_toboolean(L, -1);
    lua_pop(L, 1);
    return v;
}

/* ---------------------------------------------------------------------------------------------
 * The public calls. */

/* Calls H[fn](tmpl, [params,] problem, device) in the sandbox with nres results left on the stack
 * (params is pushed when not NULL). */
static fat_status call_family(gen *g, const char *fn, const char *tmpl, const char *params,
                              const fat_problem *p, const gen_device *d, int nres) {
    lua_State *L = g->L;
    host_fn(g, fn);
    lua_pushstring(L, tmpl);
    if (params) lua_pushstring(L, params);
    push_problem(L, p);
    push_device(L, d);
    return pcall(g, params ? 4 : 3, nres);
}

fat_status gen_enumerate(gen *g, const char *tmpl, const fat_problem *p, const gen_device *d,
                         gen_choice **out, int *n) {
    *out = NULL;
    *n = 0;
    lua_State *L = g->L;
    fat_status st = call_family(g, "enumerate", tmpl, NULL, p, d, 1);
    if (st != FAT_OK) return st;
    int cnt = (int)lua_rawlen(L, -1);
    gen_choice *c = calloc(cnt ? (size_t)cnt : 1, sizeof *c);
    if (!c) { lua_pop(L, 1); return FAT_ERR_NOMEM; }
    for (int i = 0; i < cnt; i++) {
        lua_rawgeti(L, -1, i + 1);
        c[i].canon = dup_field(L, -1, "canon");
        c[i].ok = bool_field(L, -1, "ok");
        c[i].reason = dup_field(L, -1, "reason");
        lua_pop(L, 1);
        if (!c[i].canon) { gen_choices_free(c, i + 1); lua_pop(L, 1); return FAT_ERR_NOMEM; }
    }
    lua_pop(L, 1);
    *out = c;
    *n = cnt;
    return FAT_OK;
}

void gen_choices_free(gen_choice *c, int n) {
    if (!c) return;
    for (int i = 0; i < n; i++) { free(c[i].canon); free(c[i].reason); }
    free(c);
}

/* H.emit or H.launch (fn) into out; launch leaves out->source NULL. */
static fat_status variant(gen *g, const char *fn, const char *tmpl, const char *params, const fat_problem *p,
                          const gen_device *d, gen_variant *out) {
    memset(out, 0, sizeof *out);
    lua_State *L = g->L;
    fat_status st = call_family(g, fn, tmpl, params ? params : "", p, d, 8);
    if (st != FAT_OK) return st;
    /* canon, source (nil from launch), entry, grid, block, smem, workspace, version */
    int with_source = !lua_isnil(L, -7);
    out->tmpl = strdup(tmpl);
    out->canon = strdup(lua_tostring(L, -8));
    out->source = with_source ? strdup(lua_tostring(L, -7)) : NULL;
    out->entry = strdup(lua_tostring(L, -6));
    for (int i = 0; i < 3; i++) {
        lua_rawgeti(L, -5, i + 1); out->grid[i] = (unsigned)lua_tointeger(L, -1); lua_pop(L, 1);
        lua_rawgeti(L, -4, i + 1); out->block[i] = (unsigned)lua_tointeger(L, -1); lua_pop(L, 1);
    }
    out->smem = (size_t)lua_tointeger(L, -3);
    out->workspace = (size_t)lua_tointeger(L, -2);
    out->version = (int)lua_tointeger(L, -1);
    lua_pop(L, 8);
    if (!out->tmpl || !out->canon || (with_source && !out->source) || !out->entry) {
        gen_variant_free(out);
        return FAT_ERR_NOMEM;
    }
    return FAT_OK;
}

fat_status gen_emit(gen *g, const char *tmpl, const char *params, const fat_problem *p,
                    const gen_device *d, gen_variant *out) {
    return variant(g, "emit", tmpl, params, p, d, out);
}

fat_status gen_launch(gen *g, const char *tmpl, const char *params, const fat_problem *p,
                      const gen_device *d, gen_variant *out) {
    return variant(g, "launch", tmpl, params, p, d, out);
}

fat_status gen_default(gen *g, const char *tmpl, const fat_problem *p, const gen_device *d, char *out, size_t n) {
    lua_State *L = g->L;
    fat_status st = call_family(g, "default", tmpl, NULL, p, d, 1);
    if (st != FAT_OK) return st;
    const char *s = lua_tostring(L, -1);
    if (!s) {
        snprintf(g->err, sizeof g->err, "%s: no valid configuration for this problem", tmpl);
        lua_pop(L, 1);
        return FAT_ERR_NOT_FOUND;
    }
    snprintf(out, n, "%s", s);
    lua_pop(L, 1);
    return FAT_OK;
}

fat_status gen_builtin_default(gen *g, const fat_problem *p, const gen_device *d, const char **family, char *out,
                               size_t n) {
    static const char *const order[] = GEN_DEFAULT_FAMILIES;
    fat_status st = FAT_ERR_NOT_FOUND;
    int nf;
    const char *const *fams = gen_families(&nf);
    for (size_t i = 0; i < sizeof order / sizeof order[0]; i++) {
        int have = 0;
        for (int f = 0; f < nf; f++) have |= strcmp(fams[f], order[i]) == 0;
        if (!have) continue;                       /* a build without the family */
        st = gen_default(g, order[i], p, d, out, n);
        if (st == FAT_OK) { *family = order[i]; return FAT_OK; }
        if (st != FAT_ERR_NOT_FOUND) return st;
    }
    return st;
}

void gen_variant_free(gen_variant *v) {
    if (!v) return;
    free(v->tmpl); free(v->canon); free(v->source); free(v->entry);
    memset(v, 0, sizeof *v);
}

/* Runs a loaded shapes chunk (on the stack) and converts its list. */
static fat_status run_shapes(gen *g, const char *chunkname, fat_problem **out, int *n) {
    lua_State *L = g->L;
    host_fn(g, "shapes_env");                    /* chunk, shapes_env */
    lua_rawgeti(L, LUA_REGISTRYINDEX, g->base_ref);
    fat_status st = pcall(g, 1, 1);              /* chunk, env */
    if (st != FAT_OK) { lua_pop(L, 1); return st; }
    lua_setupvalue(L, -2, 1);
    st = pcall(g, 0, 1);                         /* the chunk's result */
    if (st != FAT_OK) return st;
    host_fn(g, "shapes_list");
    lua_insert(L, -2);
    lua_pushstring(L, chunkname);
    lua_insert(L, -2);
    st = pcall(g, 2, 1);
    if (st != FAT_OK) return st;
    int cnt = (int)lua_rawlen(L, -1);
    fat_problem *p = calloc((size_t)cnt, sizeof *p);
    if (!p) { lua_pop(L, 1); return FAT_ERR_NOMEM; }
    for (int i = 0; i < cnt; i++) {
        lua_rawgeti(L, -1, i + 1);
        const char *dt = (lua_getfield(L, -1, "dtype"), lua_tostring(L, -1));
        p[i].dtype = strcmp(dt, "fp16") == 0 ? FAT_FP16 : FAT_BF16;
        lua_pop(L, 1);
        p[i].head_dim = (int)int_field(L, -1, "head_dim");
        p[i].causal = bool_field(L, -1, "causal");
        p[i].features = (bool_field(L, -1, "window") ? FAT_FEAT_WINDOW : 0) |
                        (bool_field(L, -1, "softcap") ? FAT_FEAT_SOFTCAP : 0) |
                        (bool_field(L, -1, "varlen") ? FAT_FEAT_VARLEN : 0);
        p[i].batch = (int)int_field(L, -1, "batch");
        p[i].heads_q = (int)int_field(L, -1, "heads_q");
        p[i].heads_kv = (int)int_field(L, -1, "heads_kv");
        p[i].seqlen_q = (int)int_field(L, -1, "seqlen_q");
        p[i].seqlen_k = (int)int_field(L, -1, "seqlen_k");
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    *out = p;
    *n = cnt;
    return FAT_OK;
}

fat_status gen_shapes_string(gen *g, const char *chunkname, const char *src, fat_problem **out, int *n) {
    *out = NULL;
    *n = 0;
    char name[1100];
    snprintf(name, sizeof name, "@%s", chunkname);
    /* Text only: precompiled bytecode can break the sandbox. */
    if (luaL_loadbufferx(g->L, src, strlen(src), name, "t") != LUA_OK) {
        snprintf(g->err, sizeof g->err, "%s", lua_tostring(g->L, -1));
        free(g->traceback);
        g->traceback = strdup(g->err);
        lua_pop(g->L, 1);
        return FAT_ERR_TEMPLATE;
    }
    return run_shapes(g, chunkname, out, n);
}

fat_status gen_shapes_file(gen *g, const char *path, fat_problem **out, int *n) {
    *out = NULL;
    *n = 0;
    if (!path) {
        const struct gen_file *f = embedded("generator/default_shapes.lua");
        if (!f) { snprintf(g->err, sizeof g->err, "no default suite in this build"); return FAT_ERR_NOT_FOUND; }
        return gen_shapes_string(g, "default suite", f->data, out, n);
    }
    size_t len;
    char *src = read_file(path, &len);
    if (!src) {
        snprintf(g->err, sizeof g->err, "%s: cannot read: %s", path, strerror(errno));
        return FAT_ERR_IO;
    }
    if (strlen(src) != len) {
        free(src);
        snprintf(g->err, sizeof g->err, "%s: not a text file (contains a NUL byte)", path);
        return FAT_ERR_TEMPLATE;
    }
    fat_status st = gen_shapes_string(g, path, src, out, n);
    free(src);
    return st;
}

void gen_problem_name(const fat_problem *p, char *buf, size_t n) {
    snprintf(buf, n, "%s b%d h%d/%d s%d/%d d%d%s%s%s%s", fat_dtype_name(p->dtype), p->batch,
             p->heads_q, p->heads_kv, p->seqlen_q, p->seqlen_k, p->head_dim, p->causal ? " causal" : "",
             (p->features & FAT_FEAT_WINDOW) ? " window" : "", (p->features & FAT_FEAT_SOFTCAP) ? " softcap" : "",
             (p->features & FAT_FEAT_VARLEN) ? " varlen" : "");
}

/* ---------------------------------------------------------------------------------------------
 * Nominal device limits per architecture, for generating without a GPU. */

fat_status gen_device_for_arch(const char *arch, gen_device *d) {
    static const struct { const char *arch; int cc, sms; long long optin, per_sm, l2, mem; } t[] = {
        { "sm_80", 80, 108, 166912, 167936, 40LL << 20, 80LL << 30 },
        { "sm_86", 86, 84, 101376, 102400, 6LL << 20, 24LL << 30 },
        { "sm_89", 89, 128, 101376, 102400, 72LL << 20, 24LL << 30 },
        { "sm_90", 90, 132, 232448, 233472, 50LL << 20, 80LL << 30 },
        { "sm_90a", 90, 132, 232448, 233472, 50LL << 20, 80LL << 30 },
    };
    memset(d, 0, sizeof *d);
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        if (strcmp(arch, t[i].arch) != 0) continue;
        snprintf(d->name, sizeof d->name, "nominal %s", arch);
        snprintf(d->arch, sizeof d->arch, "%s", arch);
        d->cc = t[i].cc;
        d->sms = t[i].sms;
        d->max_threads = 1024;
        d->smem_optin = t[i].optin;
        d->smem_per_sm = t[i].per_sm;
        d->regs_per_sm = 65536;
        d->l2 = t[i].l2;
        d->mem = t[i].mem;
        return FAT_OK;
    }
    return FAT_ERR_INVALID;
}

/* The text of templates/<rel>, from $FATUNE_TEMPLATES when it has the file, else embedded. */
static char *template_text(const char *rel, size_t *len) {
    const char *dir = getenv("FATUNE_TEMPLATES");
    if (dir && *dir) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, rel + 10);
        char *s = read_file(path, len);
        if (s) return s;
    }
    const struct gen_file *f = embedded(rel);
    if (!f) return NULL;
    char *s = malloc(f->len + 1);
    if (s) { memcpy(s, f->data, f->len + 1); *len = f->len; }
    return s;
}

fat_status gen_template_hash(const char *tmpl, char hex[33]) {
    char rel[256];
    size_t len;
    snprintf(rel, sizeof rel, "templates/%s.lua", tmpl);
    char *own = template_text(rel, &len);
    if (!own) return FAT_ERR_NOT_FOUND;
    XXH3_state_t *h = XXH3_createState();
    if (!h) { free(own); return FAT_ERR_NOMEM; }
    XXH3_128bits_reset(h);
    XXH3_128bits_update(h, own, len);
    free(own);
    /* Shared modules in path order: the embedded list is sorted by the build. */
    for (const struct gen_file *f = gen_files; f->path; f++) {
        if (strcmp(f->path, "templates/prelude.lua") != 0 && strncmp(f->path, "templates/lib/", 14) != 0) continue;
        char *s = template_text(f->path, &len);
        if (!s) continue;
        XXH3_128bits_update(h, f->path, strlen(f->path));
        XXH3_128bits_update(h, s, len);
        free(s);
    }
    XXH128_hash_t r = XXH3_128bits_digest(h);
    XXH3_freeState(h);
    snprintf(hex, 33, "%016llx%016llx", (unsigned long long)r.high64, (unsigned long long)r.low64);
    return FAT_OK;
}
