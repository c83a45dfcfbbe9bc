/*
 * gen.h: the generator, the only C that talks to Lua.
 *
 * A gen handle owns one sandboxed Lua 5.4 state with the templates (embedded in the binary, or read
 * from $FATUNE_TEMPLATES when set, for development) and the shapes-file environment. It is not
 * thread-safe: use one per thread. Every call is protected; errors come back as FAT_ERR_TEMPLATE
 * (or FAT_ERR_IO for unreadable files, FAT_ERR_INVALID for bad arguments) with gen_errmsg() giving
 * "file:line: message" and gen_traceback() the Lua traceback.
 */
#ifndef FAT_GEN_H
#define FAT_GEN_H

#include <stddef.h>
#include "fatune.h"

/* What a template may know of the GPU it generates for. */
typedef struct gen_device {
    char name[128];
    char arch[16];          /* "sm_90", "sm_90a", ... */
    int cc;                 /* 80, 86, 89, 90 */
    int sms, max_threads;
    long long smem_optin;   /* dynamic shared memory one block may opt in to */
    long long smem_per_sm, regs_per_sm, l2, mem;
} gen_device;

/* Fills *d with the nominal limits of an architecture, for work without a GPU. FAT_ERR_INVALID for
 * an unknown arch (the message lists the known ones). */
fat_status gen_device_for_arch(const char *arch, gen_device *d);

/* One parameter choice of a template, valid or not (then reason says why). */
typedef struct gen_choice {
    char *canon;            /* "block_m=64,warps=4": sorted names */
    int ok;
    char *reason;           /* NULL when ok */
} gen_choice;

/* One emitted variant. */
typedef struct gen_variant {
    char *tmpl;             /* template name */
    int version;            /* template version */
    char *canon, *source, *entry;
    unsigned grid[3], block[3];
    size_t smem;            /* dynamic shared memory, bytes */
    size_t workspace;       /* device scratch the launch needs, bytes */
} gen_variant;

typedef struct gen gen;

/* Opens a generator. On FAT_ERR_NOMEM *out is NULL; on other errors *out is set so that
 * gen_errmsg() can say why: close it either way. */
fat_status gen_open(gen **out);
void gen_close(gen *g);                         /* accepts NULL */
const char *gen_errmsg(const gen *g);           /* valid until the next call on g */
const char *gen_traceback(const gen *g);

/* The kernel families available, in a fixed order; borrowed, valid while the process runs. */
const char *const *gen_families(int *n);

/* Whether family `name` is in `only` ("flash_v2" or a list "naive,flash_v2"); NULL selects all. */
int gen_family_selected(const char *only, const char *name);

/* Every parameter choice of tmpl for problem p on device d, in a deterministic order. The caller
 * frees the array with gen_choices_free. */
fat_status gen_enumerate(gen *g, const char *tmpl, const fat_problem *p, const gen_device *d,
                         gen_choice **out, int *n);
void gen_choices_free(gen_choice *c, int n);

/* Emits variant `params` ("name=value,..."; unnamed parameters take their first value). The caller
 * frees *out's strings with gen_variant_free. */
fat_status gen_emit(gen *g, const char *tmpl, const char *params, const fat_problem *p,
                    const gen_device *d, gen_variant *out);
void gen_variant_free(gen_variant *v);          /* frees the strings, not v; accepts NULL */

/* Like gen_emit, without the source (out->source stays NULL): the variant is checked with valid()
 * and its entry, grid, block, shared memory and workspace for p come from the template's launch(),
 * which costs a small part of emit(). A template without launch() is emitted in full, and then
 * out->source is set. For a kernel already built, meeting a new shape: the source depends on the
 * specialisation only. */
fat_status gen_launch(gen *g, const char *tmpl, const char *params, const fat_problem *p,
                      const gen_device *d, gen_variant *out);

/* The families whose default() the runtime launches where nothing was tuned, in order: decode
 * for a few query rows per KV head (a decoding step), where it is valid; flash_v2 otherwise. The
 * tuner measures that default first, and the report sets the best beside it. */
#define GEN_DEFAULT_FAMILY "flash_v2"
#define GEN_DEFAULT_FAMILIES { "decode", GEN_DEFAULT_FAMILY }

/* The built-in default for p on d: the first of GEN_DEFAULT_FAMILIES with a valid default
 * (gen_default). *family is that family's name (a static string), out its parameters.
 * FAT_ERR_NOT_FOUND when none has one; another error as gen_default's. */
fat_status gen_builtin_default(gen *g, const fat_problem *p, const gen_device *d, const char **family, char *out,
                               size_t n);

/* The built-in default parameters of tmpl for p on d (the template's default(), else its first
 * valid choice) into out. FAT_ERR_NOT_FOUND when no choice is valid. */
fat_status gen_default(gen *g, const char *tmpl, const fat_problem *p, const gen_device *d, char *out, size_t n);

/* Reads a shapes file (path NULL: the embedded default suite). *out is malloc'ed. */
fat_status gen_shapes_file(gen *g, const char *path, fat_problem **out, int *n);
/* The same for a chunk in memory; chunkname appears in messages. */
fat_status gen_shapes_string(gen *g, const char *chunkname, const char *src, fat_problem **out, int *n);

/* A hash (32 hex digits) of everything a template's kernels depend on: its own file, the prelude
 * and the shared modules under templates/lib. A changed template gets a new hash, so its old
 * tuning rows no longer apply. FAT_ERR_NOT_FOUND for an unknown template. */
fat_status gen_template_hash(const char *tmpl, char hex[33]);

/* "bf16 b16 h16/16 s512/512 d64 causal": a short human name of a problem, into buf. */
void gen_problem_name(const fat_problem *p, char *buf, size_t n);

#endif
