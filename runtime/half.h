/*
 * half.h: host conversions between float and the 16-bit storage types. Private to fatune.
 *
 * Rounding is to nearest, ties to even, like the GPU's cvt.rn: overflow gives infinity, results
 * below the smallest subnormal round to a signed zero, NaN stays NaN (quieted, sign and the top
 * payload bits kept, where the GPU gives a canonical NaN). Widening to float is exact. The CPU attention loads and stores through these,
 * and the GPU tests make their inputs with them, so both sides see the same rounded values.
 */
#ifndef FAT_HALF_H
#define FAT_HALF_H

#include <stddef.h>
#include <stdint.h>

#include "fatune.h"

float fp16_to_float(uint16_t h);
uint16_t float_to_fp16(float f);
float bf16_to_float(uint16_t b);
uint16_t float_to_bf16(float f);

/* Converts n elements of type dt at src (fp16/bf16 bits or floats) to floats at dst. */
void half_decode(fat_dtype dt, const void *src, float *dst, size_t n);

/* Converts n floats at src to type dt at dst, rounding as above; fp32 is a copy. */
void half_encode(fat_dtype dt, const float *src, void *dst, size_t n);

#endif
