/*
 * launch.h: the one launcher. A variant's launch description (gen_launch, what its template's
 * launch() returned) and an attention call become one cuLaunchKernelEx: the parameter array in the
 * order the template declared (the fat_kparams block, tensor maps encoded on the host, pointers to
 * scratch memory of the call's stream), the function's attributes set once, the cluster as a launch
 * attribute. The runtime (runtime/ctx.c) and the tuner's worker (tuner/bench.c) both launch through
 * it. Private to fatune.
 */
#ifndef FAT_LAUNCH_H
#define FAT_LAUNCH_H

#include <stdatomic.h>

#include "cu.h"
#include "gen.h"
#include "kparams.h"

/* A loaded kernel function and what has been set on it. */
typedef struct launch_fn {
    CUmodule mod;           /* the module when launch_load made it, else NULL (not owned) */
    CUfunction fn;
    int registers;          /* per thread, from the loaded function */
    int local_bytes;        /* local memory per thread (spills, stack) */
    unsigned smem_allowed;  /* the dynamic shared memory limit set on fn so far (only raised) */
    int nonportable;        /* the non-portable cluster size is allowed on fn */
} launch_fn;

/* Loads cubin and finds `entry` into *f. FAT_ERR_CUDA (the thread's last error says which call)
 * when the module cannot load. */
fat_status launch_load(const void *cubin, const char *entry, launch_fn *f);
void launch_unload(launch_fn *f);               /* accepts a zeroed launch_fn */

/* Sets on f what launches of l need (the dynamic shared memory limit when above 48 KiB, raised
 * only; the non-portable cluster size), doing nothing that was done before. FAT_ERR_CUDA when the
 * driver refuses (the caller records a resource failure). Not thread-safe: call it where f is set
 * up, before f is shared. */
fat_status launch_prepare(launch_fn *f, const gen_launch *l);

/* Scratch memory per stream: one buffer per stream, grown when a launch needs more and then
 * reused, so that no call allocates once its stream has seen its size. Buffers replaced by larger
 * ones are kept until launch_arena_free (a kernel on the stream may still use them). Lookups are
 * lock-free; growth takes the arena's mutex. */
typedef struct launch_arena launch_arena;

fat_status launch_arena_new(launch_arena **out);
/* Frees every buffer; no kernel may still be running on them (synchronise first). Accepts NULL. */
void launch_arena_free(launch_arena *a);

/* The tensor maps of one resolved launch, kept between calls and encoded again only when what
 * they were made from changed (only the address, when only it moved). Zero-initialise, and
 * allocate 128-byte aligned (CUtensorMap's alignment). Used by one call at a time: a call that
 * finds it busy encodes its own maps on the stack. */
typedef struct launch_maps {
    atomic_flag busy;
    const void *ptr[GEN_MAX_ARGS];
    int64_t key[GEN_MAX_ARGS][8];   /* the spec, dtype, rows, strides and batch the map was made from;
                                       all zero: no map yet */
    CUtensorMap map[GEN_MAX_ARGS];
} launch_maps;

/* Fills the parameter block of call a (device pointers). ws: the workspace, or NULL. */
void launch_params(const fat_attn_args *a, void *ws, fat_kparams *kp);

/* Launches f as l says for call a on stream s: kp is the call's parameter block (launch_params,
 * with the caller's adjustments; its ws is set here when l has a workspace), maps the launch's
 * cache (NULL: encoded every call), arena the scratch (needed when l asks for any).
 * FAT_ERR_INVALID when a tensor cannot be described by a tensor map (a stride or a pointer not a
 * multiple of 16 bytes; the message names the tensor), FAT_ERR_UNSUPPORTED when the driver lacks
 * what l needs, FAT_ERR_CUDA when the launch fails. */
fat_status launch_run(const launch_fn *f, const gen_launch *l, const fat_attn_args *a, fat_kparams *kp,
                      launch_maps *maps, launch_arena *arena, CUstream s);

#endif
