/*
 * example.h: what the C examples share: fp32 <-> bf16/fp16 bits, a CUDA driver call checked by
 * name, a clock. Not part of fatune (the library converts with its own code); for the examples only.
 */
#ifndef FATUNE_EXAMPLE_H
#define FATUNE_EXAMPLE_H

#include <cuda.h>
#include <fatune.h>

#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

/* fp32 <-> bf16/fp16 bits, round to nearest even (enough for an example; fatune has its own). */
static inline uint16_t to_half(float f, fat_dtype dt) {
    uint32_t x;
    memcpy(&x, &f, 4);
    if (dt == FAT_BF16) return (uint16_t)((x + 0x7fff + ((x >> 16) & 1)) >> 16);
    uint32_t sign = (x >> 16) & 0x8000, exp = (x >> 23) & 0xff, man = x & 0x7fffff;
    int e = (int)exp - 127 + 15;
    if (e >= 31) return (uint16_t)(sign | 0x7c00);
    if (e <= 0) {                                  /* subnormal or zero */
        if (e < -10) return (uint16_t)sign;
        man |= 0x800000;
        uint32_t shift = (uint32_t)(14 - e), h = man >> shift, rest = man & ((1u << shift) - 1), half = 1u << (shift - 1);
        if (rest > half || (rest == half && (h & 1))) h++;
        return (uint16_t)(sign | h);
    }
    uint32_t h = ((uint32_t)e << 10) | (man >> 13), rest = man & 0x1fff;
    if (rest > 0x1000 || (rest == 0x1000 && (h & 1))) h++;
    return (uint16_t)(sign | h);
}

static inline float from_half(uint16_t h, fat_dtype dt) {
    uint32_t x;
    if (dt == FAT_BF16) x = (uint32_t)h << 16;
    else {
        uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ff;
        if (exp == 31) x = sign | 0x7f800000 | (man << 13);
        else if (exp) x = sign | ((exp + 112) << 23) | (man << 13);
        else if (!man) x = sign;
        else {                                     /* subnormal: normalise */
            int e = -1;
            do { man <<= 1; e++; } while (!(man & 0x400));
            x = sign | ((uint32_t)(112 - e) << 23) | ((man & 0x3ff) << 13);
        }
    }
    float f;
    memcpy(&f, &x, 4);
    return f;
}

static inline int cuda_ok(CUresult r, const char *what) {
    if (r == CUDA_SUCCESS) return 1;
    const char *name = "?";
    cuGetErrorName(r, &name);
    fprintf(stderr, "%s failed: %s\n", what, name);
    return 0;
}

static inline double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

#endif
