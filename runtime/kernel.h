/*
 * kernel.h: one generated kernel loaded on the current GPU, and how to launch it. Private.
 */
#ifndef FAT_KERNEL_H
#define FAT_KERNEL_H

#include "cu.h"
#include "kparams.h"

typedef struct kernel {
    CUmodule mod;
    CUfunction fn;
    size_t smem;            /* dynamic shared memory the launch asks for */
    int registers;          /* per thread, from the loaded function */
    int local_bytes;        /* local memory per thread (spills, stack) */
} kernel;

/* Loads cubin and finds `entry`; raises the dynamic shared-memory limit when smem > 48 KiB.
 * FAT_ERR_CUDA (the thread's last error says which call) when the module cannot load or the
 * shared memory is refused: the caller records that as a resource failure. */
fat_status kernel_load(const void *cubin, const char *entry, size_t smem, kernel *k);
void kernel_unload(kernel *k);                  /* accepts a zeroed kernel */

/* Fills the kernel parameter block from a call's arguments (pointers are device pointers).
 * total_q: with varlen, cu_seqlens_q[batch] (the rows of q); else ignored. */
void kernel_params(const fat_attn_args *a, void *workspace, int total_q, fat_kparams *kp);

/* Launches k on stream with grid/block and the parameter block; checks the launch. */
fat_status kernel_launch(const kernel *k, const unsigned grid[3], const unsigned block[3],
                         const fat_kparams *kp, CUstream stream);

#endif
