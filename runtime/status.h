/*
 * status.h: the per-thread error message behind fat_last_error(). Private to fatune.
 *
 * Functions that fail without a context (argument checks, the CPU attention) describe the failure
 * here; the caller returns the fat_status code and the user reads the words with fat_last_error().
 */
#ifndef FAT_STATUS_H
#define FAT_STATUS_H

#include "fatune.h"

#if defined(__GNUC__)
#define FAT_PRINTF_LIKE(fmt, first) __attribute__((format(printf, fmt, first)))
#else
#define FAT_PRINTF_LIKE(fmt, first)
#endif

/* Formats the calling thread's last error message (printf rules, any length: a whole NVRTC log is
 * kept). It replaces the previous message, which may be among the arguments, and is what
 * fat_last_error() returns on this thread until the next call. */
void fat_set_error(const char *fmt, ...) FAT_PRINTF_LIKE(1, 2);

/* fat_attn_check(a, 1) (args.c) for the runtime's calls: a call whose sizes, strides and mask
 * equal the thread's last checked call has only its pointers checked. */
fat_status args_check_gpu(const fat_attn_args *a);

#endif
