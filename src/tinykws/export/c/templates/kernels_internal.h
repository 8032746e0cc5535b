/*
 * What kernels.c, kernels_conv.c and kernels_depthwise.c share: requantization constants and
 * helpers, word loads, the inline-assembly switch and the kernel paths a model uses
 * (tk_config.h, generated with it; every path when it is absent). Not part of the kernels'
 * interface (kernels.h).
 */
#ifndef TINYKWS_KERNELS_INTERNAL_H
#define TINYKWS_KERNELS_INTERNAL_H

#include <string.h>

#include "kernels.h"
#if defined(__has_include)
#if __has_include("tk_config.h")
#include "tk_config.h"
#endif
#else
#include "tk_config.h"
#endif

/* Paths the generated tk_config.h does not turn off are built (tinykws/export/c/kconfig.py);
 * a path turned off is one no layer of the model takes. */
#ifndef TK_CONV_PACKED
#define TK_CONV_PACKED 1 /* packed or sparse CONV_2D / FULLY_CONNECTED weights */
#endif
#ifndef TK_CONV_TAIL
#define TK_CONV_TAIL 1 /* a CONV_2D given one window: more at the end of its output */
#endif
#ifndef TK_CONV_GENERIC
#define TK_CONV_GENERIC 1 /* a CONV_2D without scratch for its windows */
#endif
#ifndef TK_DW_PACKED
#define TK_DW_PACKED 1 /* packed depthwise weights */
#endif
#ifndef TK_DW_3X3
#define TK_DW_3X3 1 /* 3 x 3 depthwise filters, in blocks of equal overhang */
#endif
#ifndef TK_DW_WINDOW
#define TK_DW_WINDOW 1 /* depthwise windows with bounds checks (dilation, small inputs) */
#endif
#ifndef TK_DW_GENERIC
#define TK_DW_GENERIC 1 /* the generic depthwise kernel */
#endif
#ifndef TK_DW_FULL
#define TK_DW_FULL 1 /* depthwise outputs clamped to int8's range only */
#endif
#ifndef TK_DW_CLAMP
#define TK_DW_CLAMP 1 /* depthwise outputs clamped to a narrower range, or shifts >= 0 */
#endif
#ifndef TK_RQ_ANY_SHIFT
#define TK_RQ_ANY_SHIFT 1 /* requantization shifts >= 0 */
#endif

#if defined(__ARM_FEATURE_DSP)
#include <arm_acle.h>
#endif

/* The inline assembly of the 2 x 2 dot product and of the 3 x 3 depthwise window keeps 13 or 14
 * values in registers, which an unoptimised build (its frame pointer reserves r7) cannot give:
 * there (or with TK_NO_WIDE_ASM defined) two 1 x 2 products and the C depthwise loops run. */
#if defined(__ARM_FEATURE_DSP) && defined(__OPTIMIZE__) && !defined(TK_NO_WIDE_ASM)
#define TK_WIDE_ASM 1
#else
#define TK_WIDE_ASM 0
#endif

#if defined(__GNUC__)
#define TK_INLINE static inline __attribute__((always_inline))
#define TK_NOINLINE static __attribute__((noinline))
#else
#define TK_INLINE static inline
#define TK_NOINLINE static
#endif

/* A short fill loop stays a loop: gcc would call memset (linked in for this alone). */
#if defined(__GNUC__) && !defined(__clang__)
#define TK_NO_MEMSET __attribute__((optimize("no-tree-loop-distribute-patterns")))
#else
#define TK_NO_MEMSET
#endif

/* ---- requantization ---------------------------------------------------------------------- */

/* One channel's requantization constants, derived once from its multiplier and shift.
 *
 * tk_multiply_by_quantized_multiplier rounds twice: s = (x * M + 2^30) >> 31 (x = acc << left),
 * then q = (s + half - [s < 0]) >> right with half = 2^right / 2 (the correction only for
 * right > 0). For right > 0 both roundings fold into one 64-bit sum, exactly:
 * q = (x * M + 2^30 + (half - [x < 0]) * 2^31) >> (31 + right) -- floor(floor(a / m) / n) is
 * floor(a / (m * n)), and s < 0 exactly when x < 0 and s != 0, where the correction changes
 * nothing (x * M > -2^30 gives s = 0, and (half - 1) >> right == half >> right == 0). The sum
 * cannot overflow 64 bits, and its high word shifted right by right - 1 is q. For right = 0,
 * q = s. add[0] is the addend for x >= 0, add[1] for x < 0. */
typedef struct {
    int64_t add[2];
    int32_t multiplier, left, right1, low, high, offset;
} tk_rq;

/* One channel's constants (kernels.c). */
tk_rq tk_rq_channel(const tk_quant *q, int32_t channel);

/* tk_multiply_by_quantized_multiplier(acc, multiplier, shift) + zero point, clamped (see tk_rq;
 * kernels.c). */
int8_t tk_rq_apply(uint32_t acc, const tk_rq *r);

/* Stored value `index` of packed weights (bits 8, 4 or 2), sign-extended (kernels_conv.c). */
int32_t tk_weight_at(const tk_weights *w, uint32_t index);

/* rq_apply for a channel whose shift is negative (left 0, right >= 1: the usual case). */
TK_INLINE int8_t rq_apply_right(uint32_t acc, const tk_rq *r)
{
    const int32_t x = (int32_t)acc;
    const int64_t v = r->add[(uint32_t)x >> 31] + (int64_t)x * r->multiplier;
    int32_t q = (int32_t)(v >> 32) >> r->right1;
    q = q < r->low ? r->low : q;
    q = q > r->high ? r->high : q;
    return (int8_t)(q + r->offset);
}

/* Whether rq_apply_right applies to every one of n channels. */
TK_INLINE int rq_all_right(const tk_rq *r, int32_t n)
{
    int32_t j, all = 1;
    for (j = 0; TK_RQ_ANY_SHIFT && j < n; ++j) {
        all &= r[j].left == 0 && r[j].right1 >= 0;
    }
    return all;
}

/* ---- loads ------------------------------------------------------------------------------ */

TK_INLINE uint32_t load4(const int8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4); /* an unaligned word load on Cortex-M4 */
    return v;
}

#if defined(__ARM_FEATURE_DSP)
/* Bytes 1 and 3 sign-extended to two int16 lanes (bytes 0 and 2: __sxtb16). */
TK_INLINE uint32_t sxtb16_odd(uint32_t x)
{
    uint32_t r;
    __asm__("sxtb16 %0, %1, ror #8" : "=r"(r) : "r"(x));
    return r;
}

/* acc += the dot product of four int8 lanes of x (split into even lanes e and odd lanes o)
 * with the four int8 lanes of word u: both operands are split the same way, so lanes pair. */
#define TK_SMLAD4(acc, e, o, u) \
    ((acc) = __smlad((e), __sxtb16(u), (acc)), (acc) = __smlad((o), sxtb16_odd(u), (acc)))
#endif

#endif /* TINYKWS_KERNELS_INTERNAL_H */
