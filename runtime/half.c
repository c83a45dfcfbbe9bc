/*
 * half.c: float <-> fp16 and float <-> bf16 on the host, bit exact (see half.h for the rules).
 *
 * Written on the bit patterns rather than with _Float16 or compiler intrinsics so that it builds the
 * same with any C11 compiler on any host and rounds exactly like the GPU's cvt.rn.
 */
#include <string.h>

#include "half.h"

static uint32_t float_bits(float f)
{
    uint32_t x;

    memcpy(&x, &f, sizeof x);
    return x;
}

static float bits_float(uint32_t x)
{
    float f;

    memcpy(&f, &x, sizeof f);
    return f;
}

/* Drops the low `shift` bits of m, rounding to nearest with ties to the even result. */
static uint32_t round_shift(uint32_t m, int shift)
{
    uint32_t r = m >> shift;
    uint32_t rest = m & ((1u << shift) - 1);
    uint32_t half = 1u << (shift - 1);

    if (rest > half || (rest == half && (r & 1)))
        r++;
    return r;
}

float fp16_to_float(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f;
    uint32_t mant = h & 0x3ff;
    float mag;

    if (exp == 0x1f)                    /* inf, or NaN with its payload */
        return bits_float(sign | 0x7f800000u | (mant << 13));
    if (exp == 0) {
        /* zero or subnormal: mant * 2^-24, exact in float */
        mag = (float)mant * 0x1p-24f;
        return bits_float(sign | float_bits(mag));
    }
    /* rebias the exponent from 15 to 127 */
    return bits_float(sign | ((exp + 112) << 23) | (mant << 13));
}

uint16_t float_to_fp16(float f)
{
    uint32_t x = float_bits(f);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000);
    uint32_t e;

    x &= 0x7fffffffu;
    if (x > 0x7f800000u)                /* NaN: keep the top payload bits, force quiet */
        return (uint16_t)(sign | 0x7e00 | ((x >> 13) & 0x3ff));
    if (x >= 0x477ff000u)               /* >= 65520, halfway above the largest half 65504: inf */
        return (uint16_t)(sign | 0x7c00);
    if (x >= 0x38800000u)               /* >= 2^-14: normal; rebias 127 -> 15, carry may bump e */
        return (uint16_t)(sign | round_shift(x - 0x38000000u, 13));
    e = x >> 23;
    if (e < 102)                        /* below 2^-25, half the smallest subnormal: zero */
        return sign;
    /* subnormal result: the 24-bit significand in units of 2^-24; 0x400 is the smallest normal */
    return (uint16_t)(sign | round_shift((x & 0x7fffffu) | 0x800000u, (int)(126 - e)));
}

float bf16_to_float(uint16_t b)
{
    return bits_float((uint32_t)b << 16);
}

uint16_t float_to_bf16(float f)
{
    uint32_t x = float_bits(f);

    if ((x & 0x7fffffffu) > 0x7f800000u)    /* NaN: truncating could leave an inf; force quiet */
        return (uint16_t)((x >> 16) | 0x40);
    /* bf16 is the top half of a float, so rounding is one carry into the kept bits: it runs into
     * inf on overflow and through the subnormals the same way */
    return (uint16_t)round_shift(x, 16);
}

void half_decode(fat_dtype dt, const void *src, float *dst, size_t n)
{
    const uint16_t *h = src;

    switch (dt) {
    case FAT_FP16:
        for (size_t i = 0; i < n; i++)
            dst[i] = fp16_to_float(h[i]);
        break;
    case FAT_BF16:
        for (size_t i = 0; i < n; i++)
            dst[i] = bf16_to_float(h[i]);
        break;
    case FAT_FP32:
        memcpy(dst, src, n * sizeof *dst);
        break;
    }
}

void half_encode(fat_dtype dt, const float *src, void *dst, size_t n)
{
    uint16_t *h = dst;

    switch (dt) {
    case FAT_FP16:
        for (size_t i = 0; i < n; i++)
            h[i] = float_to_fp16(src[i]);
        break;
    case FAT_BF16:
        for (size_t i = 0; i < n; i++)
            h[i] = float_to_bf16(src[i]);
        break;
    case FAT_FP32:
        memcpy(dst, src, n * sizeof *src);
        break;
    }
}
