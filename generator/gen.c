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
#include <sys/stat.h>

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
    int limit_hit;           /* a limit ended the current call: nothing in it may catch that */
    char limit_msg[512];
    char where[300];         /* "file:line" of the Lua code running at the last count */
    char err[4096];
    char *traceback;
    struct family_info { char name[64]; gen_family info; } *infos;
    int ninfos;
};

/* The families this build has: every template embedded in the binary (templates/NAME.lua, in name
 * order), then any other found in $FATUNE_TEMPLATES (test-only templates, new families in
 * development). What each one is for, the templates say themselves (gen_family_info). */
#define MAX_FAMILIES GEN_MAX_FAMILIES
static const char *families[MAX_FAMILIES + 1];
static char family_names[MAX_FAMILIES][64];
static pthread_once_t families_once = PTHREAD_ONCE_INIT;

static const struct gen_file *embedded(const char *path);

static int listed(int k, const char *name) {
    for (int i = 0; i < k; i++) if (strcmp(families[i], name) == 0) return 1;
    return 0;
}

/* Adds family `name` (a file name without ".lua") unless listed already. */
static void add_family(int *k, const char *name, size_t len) {
    if (*k == MAX_FAMILIES || len == 0 || len >= sizeof family_names[0]) return;
    char n[64];
    memcpy(n, name, len);
    n[len] = 0;
    if (strcmp(n, "prelude") == 0 || listed(*k, n)) return;
    memcpy(family_names[*k], n, len + 1);
    families[*k] = family_names[*k];
    (*k)++;
}

static void find_families(void) {
    int k = 0;
    /* the embedded list is sorted by path (the Makefile sorts it) */
    for (const struct gen_file *f = gen_files; f->path; f++) {
        const char *n = f->path + 10;
        if (strncmp(f->path, "templates/", 10) != 0 || strchr(n, '/')) continue;
        size_t len = strlen(n);
        if (len > 4 && strcmp(n + len - 4, ".lua") == 0) add_family(&k, n, len - 4);
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
            add_family(&k, names[i], strlen(names[i]));
            free(names[i]);
        }
    }
    families[k] = NULL;
}

int gen_is_op(const char *name) {
    char rel[128];
    if (strncmp(name, "ops.", 4) != 0 || strlen(name) > 100 || strchr(name + 4, '.') || strchr(name, '/')) return 0;
    snprintf(rel, sizeof rel, "templates/ops/%s.lua", name + 4);
    return embedded(rel) != NULL;
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

/* The allocator: past GEN_MEM_LIMIT it refuses, and the call ends (limit_hit) whatever the script
 * catches. The script's line is the one the count hook saw last. */
static void *lalloc(void *ud, void *ptr, size_t osize, size_t nsize) {
    gen *g = ud;
    if (!ptr) osize = 0;
    if (nsize == 0) { free(ptr); g->mem -= osize; return NULL; }
    if (nsize > osize && g->mem - osize + nsize > GEN_MEM_LIMIT) {
        if (!g->limit_hit) {
            g->limit_hit = 1;
            snprintf(g->limit_msg, sizeof g->limit_msg, "%s%smemory limit exceeded (%u MiB): a runaway table?",
                     g->where, g->where[0] ? ": " : "", GEN_MEM_LIMIT >> 20);
        }
        return NULL;
    }
    void *p = realloc(ptr, nsize);
    if (p) g->mem = g->mem - osize + nsize;
    return p;
}

/* Counts instructions, notes where the script is, and ends the call past GEN_INSTR_LIMIT. Once a
 * limit is hit it raises the error again every GEN_INSTR_STEP instructions, and the sandbox's
 * pcall raises it again too, so no script outlives a limit by catching its error. */
static void count_hook(lua_State *L, lua_Debug *ar) {
    gen *g;
    lua_getallocf(L, (void **)&g);
    g->instr += GEN_INSTR_STEP;
    if (lua_getinfo(L, "Sl", ar) && ar->currentline > 0)
        snprintf(g->where, sizeof g->where, "%s:%d", ar->short_src, ar->currentline);
    if (g->instr > GEN_INSTR_LIMIT && !g->limit_hit) {
        g->limit_hit = 1;
        snprintf(g->limit_msg, sizeof g->limit_msg, "%s%sinstruction limit exceeded (%d million): an endless loop?",
                 g->where, g->where[0] ? ": " : "", (int)(GEN_INSTR_LIMIT / 1000000));
    }
    if (g->limit_hit) {
        lua_pushstring(L, g->limit_msg);
        lua_error(L);
    }
}

/* pcall and xpcall of the sandbox: Lua's, except that an error of a limit is raised again. */
static int sandbox_pcall(lua_State *L) {
    gen *g;
    lua_getallocf(L, (void **)&g);
    luaL_checkany(L, 1);
    int st = lua_pcall(L, lua_gettop(L) - 1, LUA_MULTRET, 0);
    if (g->limit_hit) { lua_pushstring(L, g->limit_msg); return lua_error(L); }
    lua_pushboolean(L, st == LUA_OK);
    lua_insert(L, 1);
    return lua_gettop(L);
}

static int sandbox_xpcall(lua_State *L) {
    gen *g;
    lua_getallocf(L, (void **)&g);
    int n = lua_gettop(L);
    luaL_checktype(L, 2, LUA_TFUNCTION);
    lua_pushvalue(L, 1);                      /* f, handler, args..., f */
    lua_rotate(L, 3, 1);                      /* f, handler, f, args... */
    int st = lua_pcall(L, n - 2, LUA_MULTRET, 2);
    if (g->limit_hit) { lua_pushstring(L, g->limit_msg); return lua_error(L); }
    lua_pushboolean(L, st == LUA_OK);
    lua_replace(L, 1);                        /* status, handler, results... */
    lua_remove(L, 2);
    return lua_gettop(L);
}

/* ---------------------------------------------------------------------------------------------
 * Loading modules: the embedded files, or $FATUNE_TEMPLATES/<name>.lua for templates. */

static const struct gen_file *embedded(const char *path) {
    for (const struct gen_file *f = gen_files; f->path; f++)
        if (strcmp(f->path, path) == 0) return f;
    return NULL;
}

/* A text file of at most GEN_FILE_MAX bytes, NUL-terminated; NULL with errno set (EISDIR for a
 * directory, EFBIG past the cap: /dev/zero must not be read for ever). */
#define GEN_FILE_MAX (16u << 20)
static char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    struct stat sb;
    if (fstat(fileno(f), &sb) == 0 && S_ISDIR(sb.st_mode)) { fclose(f); errno = EISDIR; return NULL; }
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
        if (n > GEN_FILE_MAX) { free(buf); fclose(f); errno = EFBIG; return NULL; }
    }
    int bad = ferror(f) ? (errno ? errno : EIO) : 0;
    fclose(f);
    if (bad) { free(buf); errno = bad; return NULL; }
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
    static const char *const basefns[] = { "assert", "error", "ipairs", "next", "pairs",
        "rawequal", "rawget", "rawlen", "rawset", "select", "setmetatable", "getmetatable",
        "tonumber", "tostring", "type", "_VERSION", NULL };
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
    lua_pushcfunction(L, sandbox_pcall);
    lua_setfield(L, -2, "pcall");
    lua_pushcfunction(L, sandbox_xpcall);
    lua_setfield(L, -2, "xpcall");
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
    g->limit_hit = 0;
    g->where[0] = 0;
    lua_sethook(L, count_hook, LUA_MASKCOUNT, GEN_INSTR_STEP);
    int rc = lua_pcall(L, nargs, nres, base);
    lua_sethook(L, NULL, 0, 0);
    lua_remove(L, base);
    if (rc == LUA_OK) return FAT_OK;
    const char *full = lua_tostring(L, -1);
    if (g->limit_hit) full = g->limit_msg;
    else if (rc == LUA_ERRMEM) full = "out of memory";
    free(g->traceback);
    g->traceback = strdup(full ? full : "?");
    size_t first = full ? strcspn(full, "\n") : 0;
    snprintf(g->err, sizeof g->err, "%.*s", (int)first, full ? full : "?");
    lua_pop(L, 1);
    /* what a runaway script left must not count against the next call */
    if (g->limit_hit) lua_gc(L, LUA_GCCOLLECT);
    return FAT_ERR_TEMPLATE;
}

/* host.where(f): "file:line" where Lua function f is defined, for errors raised in a template
 * function that tail-called its way out of the stack (return P.launch(...)). Only host.lua has it. */
static int fn_where(lua_State *L) {
    lua_Debug ar;
    luaL_checktype(L, 1, LUA_TFUNCTION);
    lua_pushvalue(L, 1);
    if (!lua_getinfo(L, ">S", &ar) || ar.linedefined <= 0) { lua_pushstring(L, "?"); return 1; }
    lua_pushfstring(L, "%s:%d", ar.short_src, ar.linedefined);
    return 1;
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
    lua_pushcfunction(L, fn_where);
    lua_setfield(L, -2, "where");
    g->host_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    return FAT_OK;
}

void gen_close(gen *g) {
    if (!g) return;
    if (g->L) lua_close(g->L);
    free(g->infos);
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
    if (p->features & FAT_FEAT_PAGED) {
        lua_pushinteger(L, FAT_FEAT_PAGE_SIZE(p->features));
        lua_setfield(L, -2, "page_size");
    }
    lua_pushboolean(L, (p->features & FAT_FEAT_CACHE) != 0); lua_setfield(L, -2, "kv_cache");
    lua_pushboolean(L, (p->features & FAT_FEAT_APPEND) != 0); lua_setfield(L, -2, "append");
    lua_pushinteger(L, p->batch); lua_setfield(L, -2, "batch");
    lua_pushinteger(L, p->heads_q); lua_setfield(L, -2, "heads_q");
    lua_pushinteger(L, p->heads_kv); lua_setfield(L, -2, "heads_kv");
    lua_pushinteger(L, p->seqlen_q); lua_setfield(L, -2, "seqlen_q");
    lua_pushinteger(L, p->seqlen_k); lua_setfield(L, -2, "seqlen_k");
}

static void push_device(lua_State *L, const gen_device *d) {
    lua_createtable(L, 0, 16);
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
    lua_pushinteger(L, d->max_cluster > 0 ? d->max_cluster : 1); lua_setfield(L, -2, "max_cluster");
    lua_pushinteger(L, d->max_cluster_np > d->max_cluster ? d->max_cluster_np : (d->max_cluster > 0 ? d->max_cluster : 1));
    lua_setfield(L, -2, "max_cluster_np");
    lua_createtable(L, d->ntargets, 0);
    for (int i = 0; i < d->ntargets; i++) { lua_pushstring(L, d->targets[i]); lua_rawseti(L, -2, i + 1); }
    if (d->ntargets == 0) { lua_pushstring(L, d->arch); lua_rawseti(L, -2, 1); }
    lua_setfield(L, -2, "targets");
    lua_pushinteger(L, d->driver_version); lua_setfield(L, -2, "driver");
    lua_pushinteger(L, d->nvrtc_version); lua_setfield(L, -2, "nvrtc");
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
    if (!c) { lua_pop(L, 1); snprintf(g->err, sizeof g->err, "out of memory"); return FAT_ERR_NOMEM; }
    for (int i = 0; i < cnt; i++) {
        lua_rawgeti(L, -1, i + 1);
        c[i].canon = dup_field(L, -1, "canon");
        c[i].ok = bool_field(L, -1, "ok");
        c[i].reason = dup_field(L, -1, "reason");
        lua_pop(L, 1);
        if (!c[i].canon) { gen_choices_free(c, i + 1); lua_pop(L, 1); snprintf(g->err, sizeof g->err, "out of memory"); return FAT_ERR_NOMEM; }
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

/* Copies string field k of the table at idx into buf (n bytes); 0 when it is not a string that fits. */
static int str_field(lua_State *L, int idx, const char *k, char *buf, size_t n) {
    lua_getfield(L, idx, k);
    size_t len = 0;
    const char *v = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &len) : NULL;
    int ok = v && len < n;
    if (ok) memcpy(buf, v, len + 1);
    lua_pop(L, 1);
    return ok;
}

static void dim3_field(lua_State *L, int idx, const char *k, unsigned out[3]) {
    lua_getfield(L, idx, k);
    for (int i = 0; i < 3; i++) {
        lua_rawgeti(L, -1, i + 1);
        out[i] = (unsigned)lua_tointeger(L, -1);
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
}

/* Reads the launch table at the top of the stack (made and checked by P.launch) by name. */
static fat_status read_launch(gen *g, const char *tmpl, gen_launch *l) {
    lua_State *L = g->L;
    int t = lua_gettop(L);
    memset(l, 0, sizeof *l);
    if (!str_field(L, t, "entry", l->entry, sizeof l->entry) || !str_field(L, t, "target", l->target, sizeof l->target)) {
        snprintf(g->err, sizeof g->err, "%s: the launch table's entry or target is missing or too long", tmpl);
        return FAT_ERR_TEMPLATE;
    }
    dim3_field(L, t, "grid", l->grid);
    dim3_field(L, t, "block", l->block);
    dim3_field(L, t, "cluster", l->cluster);
    l->smem = (uint64_t)int_field(L, t, "smem");
    l->workspace = (uint64_t)int_field(L, t, "workspace");
    l->nonportable_cluster = bool_field(L, t, "nonportable_cluster");
    lua_getfield(L, t, "args");
    l->nargs = (int)lua_rawlen(L, -1);
    if (l->nargs > GEN_MAX_ARGS) {
        lua_settop(L, t);
        snprintf(g->err, sizeof g->err, "%s: more than %d kernel arguments", tmpl, GEN_MAX_ARGS);
        return FAT_ERR_TEMPLATE;
    }
    for (int i = 0; i < l->nargs; i++) {
        gen_arg *a = &l->args[i];
        char kind[16] = "", tensor[4] = "";
        lua_rawgeti(L, -1, i + 1);
        int ai = lua_gettop(L);
        str_field(L, ai, "kind", kind, sizeof kind);
        if (strcmp(kind, "params") == 0) {
            a->kind = GEN_ARG_PARAMS;
        } else if (strcmp(kind, "tma") == 0) {
            a->kind = GEN_ARG_TMA;
            str_field(L, ai, "tensor", tensor, sizeof tensor);
            a->tma.tensor = tensor[0];
            a->tma.box_cols = (unsigned)int_field(L, ai, "box_cols");
            a->tma.box_rows = (unsigned)int_field(L, ai, "box_rows");
            a->tma.slabs = (unsigned)int_field(L, ai, "slabs");
            a->tma.swizzle = (int)int_field(L, ai, "swizzle");
            a->tma.l2 = (int)int_field(L, ai, "l2");
        } else if (strcmp(kind, "scratch") == 0) {
            a->kind = GEN_ARG_SCRATCH;
            a->bytes = (uint64_t)int_field(L, ai, "bytes");
            a->zero = bool_field(L, ai, "zero");
        } else {
            lua_settop(L, t);
            snprintf(g->err, sizeof g->err, "%s: kernel argument %d is of no known kind ('%s')", tmpl, i + 1, kind);
            return FAT_ERR_TEMPLATE;
        }
        lua_pop(L, 1);
    }
    lua_settop(L, t);
    return FAT_OK;
}

/* H.emit or H.launch (fn) into out; launch leaves out->source NULL. */
static fat_status variant(gen *g, const char *fn, const char *tmpl, const char *params, const fat_problem *p,
                          const gen_device *d, gen_variant *out) {
    memset(out, 0, sizeof *out);
    lua_State *L = g->L;
    fat_status st = call_family(g, fn, tmpl, params ? params : "", p, d, 4);
    if (st != FAT_OK) return st;
    /* canon, source (nil from launch), the launch table, version */
    int with_source = !lua_isnil(L, -3);
    out->version = (int)lua_tointeger(L, -1);
    lua_pop(L, 1);
    st = read_launch(g, tmpl, &out->launch);
    lua_pop(L, 1);
    if (st != FAT_OK) { lua_pop(L, 2); return st; }
    out->tmpl = strdup(tmpl);
    out->canon = strdup(lua_tostring(L, -2));
    out->source = with_source ? strdup(lua_tostring(L, -1)) : NULL;
    lua_pop(L, 2);
    if (!out->tmpl || !out->canon || (with_source && !out->source)) {
        gen_variant_free(out);
        snprintf(g->err, sizeof g->err, "out of memory");
        return FAT_ERR_NOMEM;
    }
    return FAT_OK;
}

void gen_launch_describe(const gen_launch *l, char *buf, size_t n) {
    static const char *const sw[] = { "none", "32B", "64B", "128B" };
    size_t k = 0;
#define PUT(...) do { int w_ = snprintf(buf + k, k < n ? n - k : 0, __VA_ARGS__); if (w_ > 0) k += (size_t)w_; } while (0)
    PUT("entry %s, target %s, grid (%u,%u,%u), block (%u,%u,%u)", l->entry, l->target, l->grid[0], l->grid[1],
        l->grid[2], l->block[0], l->block[1], l->block[2]);
    if (l->cluster[0] * l->cluster[1] * l->cluster[2] > 1)
        PUT(", cluster (%u,%u,%u)%s", l->cluster[0], l->cluster[1], l->cluster[2], l->nonportable_cluster ? " non-portable" : "");
    PUT(", dynamic smem %llu bytes", (unsigned long long)l->smem);
    if (l->workspace) PUT(", workspace %llu bytes", (unsigned long long)l->workspace);
    PUT(", args:");
    for (int i = 0; i < l->nargs; i++) {
        const gen_arg *a = &l->args[i];
        if (a->kind == GEN_ARG_PARAMS) PUT(" params");
        else if (a->kind == GEN_ARG_TMA)
            PUT(" tma %c %ux%u%s%.0u swizzle %s", a->tma.tensor, a->tma.box_cols, a->tma.box_rows,
                a->tma.slabs > 1 ? " x" : "", a->tma.slabs > 1 ? a->tma.slabs : 0,
                sw[a->tma.swizzle & 3]);
        else PUT(" scratch %llu bytes%s", (unsigned long long)a->bytes, a->zero ? " zeroed" : "");
        if (i + 1 < l->nargs) PUT(",");
    }
#undef PUT
}

uint64_t gen_launch_scratch(const gen_launch *l) {
    uint64_t n = (l->workspace + 255) & ~(uint64_t)255;
    for (int i = 0; i < l->nargs; i++)
        if (l->args[i].kind == GEN_ARG_SCRATCH) n += (l->args[i].bytes + 255) & ~(uint64_t)255;
    return n;
}

fat_status gen_emit(gen *g, const char *tmpl, const char *params, const fat_problem *p,
                    const gen_device *d, gen_variant *out) {
    return variant(g, "emit", tmpl, params, p, d, out);
}

fat_status gen_launch_only(gen *g, const char *tmpl, const char *params, const fat_problem *p,
                      const gen_device *d, gen_variant *out) {
    return variant(g, "launch", tmpl, params, p, d, out);
}

fat_status gen_default(gen *g, const char *tmpl, const fat_problem *p, const gen_device *d, char *out, size_t n) {
    lua_State *L = g->L;
    fat_status st = call_family(g, "default", tmpl, NULL, p, d, 2);
    if (st != FAT_OK) return st;
    const char *s = lua_tostring(L, -2);
    if (!s) {
        const char *why = lua_tostring(L, -1);
        snprintf(g->err, sizeof g->err, "%s: %s", tmpl, why ? why : "no valid configuration for this problem");
        lua_pop(L, 2);
        return FAT_ERR_NOT_FOUND;
    }
    snprintf(out, n, "%s", s);
    lua_pop(L, 2);
    return FAT_OK;
}

fat_status gen_family_info(gen *g, const char *family, gen_family *out) {
    for (int i = 0; i < g->ninfos; i++)
        if (strcmp(g->infos[i].name, family) == 0) { *out = g->infos[i].info; return FAT_OK; }
    lua_State *L = g->L;
    host_fn(g, "info");
    lua_pushstring(L, family);
    fat_status st = pcall(g, 1, 3);
    if (st != FAT_OK) return st;
    gen_family info = { lua_toboolean(L, -3), (int)lua_tointeger(L, -2), (int)lua_tointeger(L, -1) };
    lua_pop(L, 3);
    if (strlen(family) < sizeof g->infos->name) {
        struct family_info *n = realloc(g->infos, (size_t)(g->ninfos + 1) * sizeof *n);
        if (n) {
            g->infos = n;
            snprintf(n[g->ninfos].name, sizeof n->name, "%s", family);
            n[g->ninfos++].info = info;
        }
    }
    *out = info;
    return FAT_OK;
}

fat_status gen_default_families(gen *g, const char **out, int *n) {
    int nf, ranks[MAX_FAMILIES];
    const char *const *fams = gen_families(&nf);
    *n = 0;
    for (int f = 0; f < nf; f++) {
        gen_family info;
        fat_status st = gen_family_info(g, fams[f], &info);
        if (st != FAT_OK) return st;
        if (info.default_rank <= 0) continue;
        int k = (*n)++;
        for (; k > 0 && ranks[k - 1] > info.default_rank; k--) { ranks[k] = ranks[k - 1]; out[k] = out[k - 1]; }
        ranks[k] = info.default_rank;
        out[k] = fams[f];
    }
    return FAT_OK;
}

fat_status gen_builtin_default(gen *g, const fat_problem *p, const gen_device *d, const char **family, char *out,
                               size_t n) {
    const char *order[MAX_FAMILIES];
    int nd;
    fat_status st = gen_default_families(g, order, &nd);
    if (st != FAT_OK) return st;
    st = FAT_ERR_NOT_FOUND;
    /* every family's reason, "decode: ...; flash_hopper: ...", so that the refusal says why */
    char why[sizeof g->err] = "no family of this build offers a built-in default";
    size_t used = 0;
    for (int i = 0; i < nd; i++) {
        st = gen_default(g, order[i], p, d, out, n);
        if (st == FAT_OK) { *family = order[i]; return FAT_OK; }
        if (st != FAT_ERR_NOT_FOUND) return st;
        int w = snprintf(why + used, sizeof why - used, "%s%s", used ? "; " : "", g->err);
        if (w > 0) used = used + (size_t)w < sizeof why ? used + (size_t)w : sizeof why - 1;
    }
    snprintf(g->err, sizeof g->err, "%s", why);
    return st;
}

fat_status gen_decoding_rows(gen *g, int *rows) {
    int nf;
    const char *const *fams = gen_families(&nf);
    *rows = 0;
    for (int f = 0; f < nf; f++) {
        gen_family info;
        fat_status st = gen_family_info(g, fams[f], &info);
        if (st != FAT_OK) return st;
        if (info.decoding_rows > *rows) *rows = info.decoding_rows;
    }
    return FAT_OK;
}

void gen_variant_free(gen_variant *v) {
    if (!v) return;
    free(v->tmpl); free(v->canon); free(v->source);
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
    if (!p) { lua_pop(L, 1); snprintf(g->err, sizeof g->err, "out of memory"); return FAT_ERR_NOMEM; }
    for (int i = 0; i < cnt; i++) {
        lua_rawgeti(L, -1, i + 1);
        const char *dt = (lua_getfield(L, -1, "dtype"), lua_tostring(L, -1));
        p[i].dtype = strcmp(dt, "fp16") == 0 ? FAT_FP16 : FAT_BF16;
        lua_pop(L, 1);
        p[i].head_dim = (int)int_field(L, -1, "head_dim");
        p[i].causal = bool_field(L, -1, "causal");
        p[i].features = (bool_field(L, -1, "window") ? FAT_FEAT_WINDOW : 0) |
                        (bool_field(L, -1, "softcap") ? FAT_FEAT_SOFTCAP : 0) |
                        (bool_field(L, -1, "varlen") ? FAT_FEAT_VARLEN : 0) |
                        (bool_field(L, -1, "kv_cache") ? FAT_FEAT_CACHE : 0) |
                        (bool_field(L, -1, "append") ? FAT_FEAT_APPEND : 0);
        long long page = int_field(L, -1, "page_size");   /* 0: absent (not paged) */
        if (page > 0) p[i].features |= FAT_FEAT_PAGED | ((unsigned)page << FAT_FEAT_PAGE_SHIFT);
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
        if (errno == EFBIG)
            snprintf(g->err, sizeof g->err, "%s: larger than %u MiB: not a shapes file", path, GEN_FILE_MAX >> 20);
        else
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

void gen_features_text(unsigned f, char *buf, size_t n) {
    char paged[24] = "";
    if (f & FAT_FEAT_PAGED) snprintf(paged, sizeof paged, " paged%d", FAT_FEAT_PAGE_SIZE(f));
    snprintf(buf, n, "%s%s%s%s%s%s", (f & FAT_FEAT_WINDOW) ? " window" : "", (f & FAT_FEAT_SOFTCAP) ? " softcap" : "",
             (f & FAT_FEAT_VARLEN) ? " varlen" : "", paged, (f & FAT_FEAT_CACHE) ? " cache" : "",
             (f & FAT_FEAT_APPEND) ? " append" : "");
}

void gen_problem_name(const fat_problem *p, char *buf, size_t n) {
    char feat[48];   /* " window softcap varlen paged256 cache append": 44 */
    gen_features_text(p->features, feat, sizeof feat);
    snprintf(buf, n, "%s b%d h%d/%d s%d/%d d%d%s%s", fat_dtype_name(p->dtype), p->batch, p->heads_q, p->heads_kv,
             p->seqlen_q, p->seqlen_k, p->head_dim, p->causal ? " causal" : "", feat);
}

/* ---------------------------------------------------------------------------------------------
 * Nominal device limits per architecture, for generating without a GPU. */

/* Compute capability of "sm_XY" or "sm_XYa" (0 when it is neither) and whether it is arch-specific. */
static int target_cc(const char *t, int *specific) {
    int cc = 0, n = 0;
    *specific = 0;
    if (sscanf(t, "sm_%d%n", &cc, &n) != 1 || cc < 10 || cc > 999) return 0;
    if (t[n] == 'a' && t[n + 1] == 0) *specific = 1;
    else if (t[n] != 0) return 0;
    return cc;
}

int gen_target_runs_on(const char *target, int cc) {
    int specific, t = target_cc(target, &specific);
    if (!t) return 0;
    if (specific) return t == cc;
    return t / 10 == cc / 10 && t <= cc;    /* SASS runs on later minor versions of its major only */
}

void gen_device_targets(gen_device *d) {
    static const int plain[] = { 90, 89, 86, 80 };      /* what fatune compiles for, newest first */
    int n = 0;
    snprintf(d->arch, sizeof d->arch, "sm_%d", d->cc);
    snprintf(d->targets[n++], sizeof d->targets[0], "sm_%d", d->cc);
    /* wgmma and setmaxnreg need the arch-specific target, which NVRTC knows from 12.0 */
    if (d->cc == 90 && (d->nvrtc_version == 0 || d->nvrtc_version >= 12000))
        snprintf(d->targets[n++], sizeof d->targets[0], "sm_90a");
    for (size_t i = 0; i < sizeof plain / sizeof plain[0] && n < GEN_MAX_TARGETS; i++)
        if (plain[i] != d->cc && plain[i] / 10 == d->cc / 10 && plain[i] < d->cc)
            snprintf(d->targets[n++], sizeof d->targets[0], "sm_%d", plain[i]);
    d->ntargets = n;
}

fat_status gen_device_for_arch(const char *arch, gen_device *d) {
    static const struct { const char *arch; int cc, sms, cluster, cluster_np; long long optin, per_sm, l2, mem; } t[] = {
        { "sm_80", 80, 108, 1, 1, 166912, 167936, 40LL << 20, 80LL << 30 },
        { "sm_86", 86, 84, 1, 1, 101376, 102400, 6LL << 20, 24LL << 30 },
        { "sm_89", 89, 128, 1, 1, 101376, 102400, 72LL << 20, 24LL << 30 },
        { "sm_90", 90, 132, 8, 16, 232448, 233472, 50LL << 20, 80LL << 30 },
        { "sm_90a", 90, 132, 8, 16, 232448, 233472, 50LL << 20, 80LL << 30 },   /* the same GPU */
    };
    memset(d, 0, sizeof *d);
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        if (strcmp(arch, t[i].arch) != 0) continue;
        d->cc = t[i].cc;
        snprintf(d->name, sizeof d->name, "nominal sm_%d", d->cc);
        d->sms = t[i].sms;
        d->max_threads = 1024;
        d->smem_optin = t[i].optin;
        d->smem_per_sm = t[i].per_sm;
        d->regs_per_sm = 65536;
        d->l2 = t[i].l2;
        d->mem = t[i].mem;
        d->max_cluster = t[i].cluster;
        d->max_cluster_np = t[i].cluster_np;
        gen_device_targets(d);
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
