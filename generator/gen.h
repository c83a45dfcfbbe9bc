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
#include <stdint.h>
#include "fatune.h"

/* What a template may know of the GPU it generates for (the Lua table `dev`). */
#define GEN_MAX_TARGETS 4
typedef struct gen_device {
    char name[128];
    char arch[16];          /* the plain architecture, "sm_90": what a variant targets by default */
    int cc;                 /* 80, 86, 89, 90 */
    int sms, max_threads;
    long long smem_optin;   /* dynamic shared memory one block may opt in to */
    long long smem_per_sm, regs_per_sm, l2, mem;
    int max_cluster;        /* CTAs a thread-block cluster may hold portably (8 on sm_90; 1: none) */
    int max_cluster_np;     /* ... with the non-portable cluster size allowed (16 on an H100/H200) */
    char targets[GEN_MAX_TARGETS][16];   /* compile targets whose cubins run here, the plain arch
                                            first: "sm_90", "sm_90a"; "sm_86", "sm_80" */
    int ntargets;
    int driver_version;     /* cuDriverGetVersion, 13000; 0 without a GPU */
    int nvrtc_version;      /* major * 1000 + minor * 10; 0 when NVRTC is not loaded */
} gen_device;

/* Fills *d with the nominal limits of an architecture ("sm_80", "sm_86", "sm_89", "sm_90"; "sm_90a"
 * names the same GPU as "sm_90"), for work without a GPU. FAT_ERR_INVALID for another. */
fat_status gen_device_for_arch(const char *arch, gen_device *d);

/* Sets d->arch ("sm_90") and d->targets from d->cc and d->nvrtc_version: the plain target, the
 * arch-specific one (sm_90a, when NVRTC has it), then older plain targets of the same major. */
void gen_device_targets(gen_device *d);

/* Whether a cubin compiled for target ("sm_80", "sm_90a") runs on a GPU of compute capability cc:
 * an arch-specific target on exactly its cc, a plain one on its major's later minors (sm_80 on
 * 8.0, 8.6, 8.9; never across majors). */
int gen_target_runs_on(const char *target, int cc);

/* One parameter choice of a template, valid or not (then reason says why). */
typedef struct gen_choice {
    char *canon;            /* "block_m=64,warps=4": sorted names */
    int ok;
    char *reason;           /* NULL when ok */
} gen_choice;

/*
 * How a variant is launched for one problem: what a template's launch() (and emit()) returns by
 * name, checked in Lua (templates/prelude.lua, P.launch) and read into this struct by name. Plain
 * data without pointers, so that it crosses the tuner's worker pipe as it is. The launcher
 * (runtime/launch.h) turns it into one cuLaunchKernelEx.
 */
#define GEN_MAX_ARGS 8
typedef enum gen_arg_kind {
    GEN_ARG_PARAMS = 1,     /* the fat_kparams block, by value */
    GEN_ARG_TMA,            /* a CUtensorMap of one of the call's tensors, encoded on the host */
    GEN_ARG_SCRATCH         /* a device pointer to scratch memory of the call's stream */
} gen_arg_kind;

/* A tensor map over tensor q, k, v or o, [batch, rows, heads, head_dim] with the call's strides:
 * slabs == 1: rank 4, dims {head_dim, rows, heads, batch}, box {box_cols, box_rows, 1, 1};
 * slabs > 1: rank 5, dims {box_cols, rows, head_dim / box_cols, heads, batch}, box {box_cols,
 * box_rows, slabs, 1, 1} (shared memory gets [slab][row][col]). Out-of-bounds elements read 0. A
 * paged cache's k and v: rows are a page's, batch the pages. */
typedef struct gen_tma {
    char tensor;            /* 'q', 'k', 'v' or 'o' */
    unsigned box_cols, box_rows, slabs;
    int swizzle;            /* 0 none, 1 32B, 2 64B, 3 128B (CUtensorMapSwizzle) */
    int l2;                 /* L2 promotion: 0 none, 1 64B, 2 128B, 3 256B (CUtensorMapL2promotion) */
} gen_tma;

typedef struct gen_arg {
    gen_arg_kind kind;
    gen_tma tma;            /* GEN_ARG_TMA */
    uint64_t bytes;         /* GEN_ARG_SCRATCH: its size */
    int zero;               /* GEN_ARG_SCRATCH: set to zero before every launch */
} gen_arg;

typedef struct gen_launch {
    char entry[64];         /* the kernel's extern "C" name */
    char target[16];        /* the compile target, "sm_90" or "sm_90a" (one of the device's targets) */
    unsigned grid[3], block[3];
    unsigned cluster[3];    /* CTAs per cluster, {1, 1, 1}: no cluster launch */
    uint64_t smem;          /* dynamic shared memory, bytes */
    uint64_t workspace;     /* scratch bytes passed as fat_kparams.ws (not zeroed) */
    int nonportable_cluster;/* the cluster may exceed the portable size (a function attribute) */
    int nargs;
    gen_arg args[GEN_MAX_ARGS];   /* the kernel's parameters, in order */
} gen_launch;

/* A launch in words ("entry fat_x, target sm_90a, grid (1,2,3), block (256,1,1), ... args: params,
 * tma k 64x128 x2 128B"), into buf. */
void gen_launch_describe(const gen_launch *l, char *buf, size_t n);

/* The scratch bytes one launch uses: the workspace and every scratch argument, each rounded up to
 * 256 bytes. */
uint64_t gen_launch_scratch(const gen_launch *l);

/* One emitted variant. */
typedef struct gen_variant {
    char *tmpl;             /* template name */
    int version;            /* template version */
    char *canon, *source;   /* source: NULL from gen_launch */
    gen_launch launch;
} gen_variant;

typedef struct gen gen;

/* Opens a generator. On FAT_ERR_NOMEM *out is NULL; on other errors *out is set so that
 * gen_errmsg() can say why: close it either way. */
fat_status gen_open(gen **out);
void gen_close(gen *g);                         /* accepts NULL */
const char *gen_errmsg(const gen *g);           /* valid until the next call on g */
const char *gen_traceback(const gen *g);

/* The kernel families this build has: every embedded template (templates/NAME.lua) by name, then
 * any other in $FATUNE_TEMPLATES. Borrowed, valid while the process runs. */
#define GEN_MAX_FAMILIES 64
const char *const *gen_families(int *n);

/* Kernels that are not attention families (templates/ops/NAME.lua, named "ops.NAME"): not tuned,
 * not in gen_families, emitted by name (gen_emit). GEN_KV_APPEND copies k_new and v_new into a KV
 * cache before an attention kernel that does not append (runtime/resolve.c). gen_is_op says
 * whether name is one this build has. */
#define GEN_KV_APPEND "ops.kv_append"
int gen_is_op(const char *name);

/* What a family's template says of itself (templates/prelude.lua lists the fields). */
typedef struct gen_family {
    int tuned;              /* tuned by default (false: only when --only names it; naive) */
    int default_rank;       /* > 0: offers the built-in default; lower ranks are asked first */
    int decoding_rows;      /* > 0: serves the decoding regime, up to this many query rows per KV head */
} gen_family;

/* Fills *out for family (its template is loaded once per generator). FAT_ERR_TEMPLATE when the
 * template does not load or a field has the wrong type (gen_errmsg says which). */
fat_status gen_family_info(gen *g, const char *family, gen_family *out);

/* The families that offer a built-in default, in the order they are asked (default_rank, lowest
 * first); out has room for GEN_MAX_FAMILIES names, borrowed as gen_families's. */
fat_status gen_default_families(gen *g, const char **out, int *n);

/* The decoding regime of this build: the largest decoding_rows a family declares (0: none). A
 * problem with at most that many query rows per KV head is a decoding step (dispatch.h). */
fat_status gen_decoding_rows(gen *g, int *rows);

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
 * and its launch for p comes from the template's launch(), which costs a small part of emit().
 * For a kernel already built, meeting a new shape: the source depends on the specialisation only. */
fat_status gen_launch_only(gen *g, const char *tmpl, const char *params, const fat_problem *p,
                      const gen_device *d, gen_variant *out);

/* The built-in default for p on d: the default (gen_default) of the first family of
 * gen_default_families that has one for p: decode's for a decoding step, flash_v2's for prefill.
 * The runtime launches it where nothing was tuned, the tuner measures it first, the report sets
 * the best beside it. *family is that family's name (borrowed as gen_families's), out its
 * parameters. FAT_ERR_NOT_FOUND when none has one; another error as gen_default's. */
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
/* The feature words of a problem name: " window softcap varlen paged16 cache append" (those set;
 * "" when none), as gen_problem_name and `fatune check`'s kinds print them. */
void gen_features_text(unsigned features, char *buf, size_t n);

#endif
