/*
 * rtc.h: NVRTC, opened with dlopen, compiling generated CUDA to cubin (or PTX). Private to fatune.
 *
 * NVRTC is searched as $CUDA_HOME/lib64/libnvrtc.so*, then through the loader path
 * (libnvrtc.so.13, .12, .11.2, libnvrtc.so). Compilation is thread-safe: the compile pool runs many.
 */
#ifndef FAT_RTC_H
#define FAT_RTC_H

#include <stddef.h>
#include "fatune.h"

/* Opens NVRTC once. FAT_ERR_NVRTC with a message naming where it looked. */
fat_status rtc_load(void);

/* NVRTC's version as major * 1000 + minor * 10 (13000 for 13.0); 0 if not loaded. */
int rtc_version(void);

typedef struct rtc_result {
    void *image;            /* cubin (or NUL-terminated PTX when ptx was asked for); malloc'ed */
    size_t size;
    char *log;              /* NVRTC's log, always NUL-terminated; malloc'ed, may be "" */
    int registers;          /* from ptxas -v, -1 if unknown */
    int spill_bytes;        /* spill stores + loads, -1 if unknown */
    int smem_static;        /* static shared memory, bytes, -1 if unknown */
    double ms;              /* wall time of the compilation */
} rtc_result;

/* Compiles `source` for arch ("sm_90", "sm_90a", ...): cubin, or PTX when ptx is set. Returns FAT_OK,
 * FAT_ERR_NVRTC when the source does not compile (the reason is in out->log: data, not a failure of
 * fatune), FAT_ERR_INVALID for an arch NVRTC does not know, FAT_ERR_NOMEM. Free with rtc_result_free. */
fat_status rtc_compile(const char *source, const char *name, const char *arch, int ptx, rtc_result *out);
void rtc_result_free(rtc_result *r);

/* The content hash of a cubin: XXH3-128 of the source, the arch, the NVRTC version (major * 1000 +
 * minor * 10) and the compile options, as 32 hex digits into out. The tuner stores kernels under it
 * and the runtime finds them by it, so both must call this one function. Needs no NVRTC. */
void rtc_kernel_hash(const char *source, const char *arch, int nvrtc_version, char out[33]);

/* Checks an arch name: "sm_80", "sm_86", "sm_89", "sm_90", "sm_90a". */
int rtc_arch_known(const char *arch);

#endif
