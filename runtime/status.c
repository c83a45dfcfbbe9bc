/*
 * status.c: names of status codes and dtypes, and the per-thread last error message.
 */
#include <stdarg.h>
#include <stdio.h>

#include "fatune.h"
#include "status.h"

/* One buffer per thread, so that two threads checking arguments at once never read each other's
 * message and no lock is needed. */
static _Thread_local char last_error[512];

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
    return last_error;
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

/* Replaces this thread's message; vsnprintf cuts it to the buffer. */
void fat_set_error(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
}
