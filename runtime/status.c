/*
 * status.c: names of status codes and dtypes, and the per-thread last error message.
 */
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fatune.h"
#include "status.h"

/* One message per thread, so that two threads checking arguments at once never read each other's
 * message and no lock is needed. Short messages live in a buffer of the thread; a longer one (a
 * whole NVRTC log) in a heap block that the thread's exit frees. */
static _Thread_local char short_msg[512];
static _Thread_local char *long_msg;
static _Thread_local int use_long;           /* the message is long_msg */
static pthread_key_t long_key;
static pthread_once_t long_once = PTHREAD_ONCE_INIT;

static void make_key(void) { pthread_key_create(&long_key, free); }

/* A static string for every code; "unknown error" for a value outside the enum. */
const char *fat_strerror(fat_status code)
{
    switch (code) {
    case FAT_OK:              return "not an error";
    case FAT_ERR_INVALID:     return "invalid argument";
    case FAT_ERR_UNSUPPORTED: return "not supported";
    case FAT_ERR_NO_GPU:      return "no GPU";
    case FAT_ERR_CUDA:        return "CUDA error";
    case FAT_ERR_NVRTC:       return "NVRTC error";
    case FAT_ERR_TEMPLATE:    return "template error";
    case FAT_ERR_DB:          return "database error";
    case FAT_ERR_NOMEM:       return "out of memory";
    case FAT_ERR_IO:          return "I/O error";
    case FAT_ERR_NOT_FOUND:   return "not found";
    }
    return "unknown error";
}

/* This thread's last message; "" until something failed. Successful calls leave it alone. */
const char *fat_last_error(void)
{
    return use_long ? long_msg : short_msg;
}

/* Static names, "?" for a value outside the enum. */
const char *fat_dtype_name(fat_dtype dt)
{
    switch (dt) {
    case FAT_FP16: return "fp16";
    case FAT_BF16: return "bf16";
    case FAT_FP32: return "fp32";
    }
    return "?";
}

/* Replaces this thread's message. The arguments may be the message itself (fat_last_error()): it
 * is formatted into new storage first. */
void fat_set_error(const char *fmt, ...)
{
    va_list ap, again;
    char buf[sizeof short_msg];

    va_start(ap, fmt);
    va_copy(again, ap);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (n >= 0 && (size_t)n >= sizeof buf) {
        char *big = malloc((size_t)n + 1);
        if (big) {
            vsnprintf(big, (size_t)n + 1, fmt, again);
            pthread_once(&long_once, make_key);
            free(long_msg);
            long_msg = big;
            pthread_setspecific(long_key, big);
            use_long = 1;
            va_end(again);
            return;
        }
        /* out of memory: the first part, cut */
    }
    va_end(again);
    memcpy(short_msg, buf, sizeof buf);
    use_long = 0;
}
