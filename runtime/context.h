/*
 * context.h: what a fat_ctx holds, shared by the files of the runtime. Private to fatune.
 *
 *   ctx.c      fat_open, fat_close and the calls (fat_attn_fwd, fat_query): the public face
 *   rows.c     reading this GPU model's tuned rows from the database at open
 *   table.c    the lock-free table of resolved call shapes
 *   resolve.c  what a new shape runs: the lookup, the built-in default, the fallbacks
 *   modules.c  where a kernel's cubin comes from: loaded already, the database, or NVRTC
 *   launch.c   the one launcher (also the tuner's)
 */
#ifndef FAT_CONTEXT_H
#define FAT_CONTEXT_H

#include <pthread.h>
#include <stdatomic.h>

#include "ctx.h"
#include "cu.h"
#include "db.h"
#include "dispatch.h"
#include "gen.h"
#include "launch.h"
#include "status.h"

/* One resolved call shape. fn is NULL for a failure worth remembering (a kernel that does not
 * compile: trying again on every call would run NVRTC every time) and in an offline context.
 * Allocated 128-byte aligned (launch_maps holds CUtensorMaps). */
typedef struct entry {
    fat_problem key;
    int kernel;                     /* index into ctx->built: the kernel it launches (-1: none) */
    int launch_only;                /* resolved from a kernel already built (gen_launch) */
    launch_fn *fn;                  /* the function, shared with the other entries of the kernel */
    gen_launch launch;
    fat_status fail;
    char *fail_msg;
    fat_choice choice;
    launch_maps maps;               /* the launch's tensor maps, kept between calls */
    launch_fn *append_fn;           /* an append no kernel of the problem does itself: GEN_KV_APPEND's */
    gen_launch append_launch;       /* function and launch, run first (NULL offline and otherwise) */
} entry;

typedef struct table {
    size_t mask;                    /* slots - 1, slots a power of two */
    _Atomic(entry *) slot[];
} table;

/* A loaded kernel module, by the hash of its source and target (whatever NVRTC built it). */
typedef struct module_ref {
    char key[33];
    CUmodule mod;
    const char *origin;             /* "database" or "compiled" */
} module_ref;

/* A kernel this context has resolved, by what its source depends on: family, parameters and the
 * problem's specialisation (dtype, head_dim, causal, features; the sizes zeroed). A new shape of
 * the same kernel takes only its launch from the template (gen_launch), and this function. Each
 * is allocated on its own: entries point at their function. */
typedef struct built {
    char family[32], params[160], entry[64];
    fat_problem kind;
    launch_fn *fn;                  /* one of c->fns; NULL offline */
    const char *origin;
} built;

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
    launch_arena *arena;            /* scratch memory per stream */
    pthread_mutex_t lock;           /* everything below, and the generator and database */
    gen *g;
    int decoding_rows;              /* the decoding regime (gen_decoding_rows), once g is open */
    module_ref *mods;
    int nmods;
    built **built;
    int nbuilt;
    launch_fn **fns;                /* every function loaded, each with what was set on it */
    int nfns;
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

/* A log line through the context's log function, if any (under the lock or before sharing). */
void ctx_say(fat_ctx *c, const char *fmt, ...) FAT_PRINTF_LIKE(2, 3);

/* rows.c: opens the database at path (NULL: none, or $FATUNE_CACHE) and reads this device's best
 * rows into c->rows; c->summary says what was found. */
fat_status rows_open(fat_ctx *c, const char *path);

/* table.c: an empty table of the first size; the entry of p, resolving and publishing it when new
 * (a remembered failure comes back as its status and message); every entry freed. */
table *table_new(void);
fat_status table_lookup(fat_ctx *c, const fat_problem *p, entry **out);
void table_free(fat_ctx *c);

/* resolve.c: chooses, emits and loads the kernel of problem p into e (under the lock). */
fat_status resolve(fat_ctx *c, const fat_problem *p, entry *e);
/* Whether a failure is a property of the shape (remembered) rather than of the moment (retried). */
int resolve_lasting(fat_status st);

/* modules.c: the module of variant v: already loaded, a cubin from the database (the row's own
 * kernel when row_hash is set, else by the hash of v's source), or compiled now and kept. *origin
 * says which. Offline: *mod stays NULL and origin is "database" or "none". */
fat_status modules_find(fat_ctx *c, const gen_variant *v, const char *row_hash, CUmodule *mod, const char **origin);
/* The key of a loaded module: the kernel's source and target (the NVRTC that built it aside). */
void modules_key(const gen_variant *v, char out[33]);
/* Whether the kernel of key is a tuned configuration that failed to compile before; remembering it. */
int modules_unbuildable(const fat_ctx *c, const char *key);
void modules_remember_unbuildable(fat_ctx *c, const char *key);
/* Unloads every module (the context current, its work finished). */
void modules_unload(fat_ctx *c);

#endif
