/*
 * ctx.h: the runtime's private entry points, for tests. Private to fatune.
 */
#ifndef FAT_CTX_H
#define FAT_CTX_H

#include "fatune.h"
#include "gen.h"

/* Opens a context without a GPU for device *dev (its name and cc select the database rows, its
 * arch the cubins): fat_query resolves shapes all the way to the kernel's cubin hash and says
 * whether the database holds it ("database") or it would have to be compiled ("none"), but
 * nothing is loaded or compiled, and fat_attn_fwd returns FAT_ERR_NO_GPU. Same codes as fat_open
 * (an architecture fatune does not know included). */
fat_status ctx_open_offline(const char *db_path, const gen_device *dev, fat_ctx **out);

/* The key a call is cached and dispatched under: its problem, with a variable-length call's
 * seqlen bounds rounded up to a power of two (any bound is valid for varlen, and rounding keeps the
 * number of distinct shapes small in serving). */
void ctx_call_problem(const fat_attn_args *a, fat_problem *p);

/* How fat_attn_fwd would launch a (resolving it as fat_query does). */
typedef struct ctx_launch {
    gen_launch launch;      /* what the template's launch() said for the call's shape */
    int kernel;             /* which kernel the context built: equal for calls of one kernel, -1: none */
    int launch_only;        /* resolved from a kernel built for another shape (only its launch asked) */
} ctx_launch;

/* Fills *out for call a. Same codes as fat_query. */
fat_status ctx_launch_of(fat_ctx *c, const fat_attn_args *a, ctx_launch *out);

#endif
