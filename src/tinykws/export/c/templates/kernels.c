/*
 * tinykws integer kernels (see kernels.h for the arithmetic, layouts and argument ranges).
 *
 * Written from tinykws's integer specification (tinykws/ir/kernels.py, tinykws/ir/fixedpoint.py),
 * which follows TFLite Micro's reference kernels and gemmlowp's fixed-point routines; the tests
 * compare every output of these kernels with the specification for equality.
 *
 * Portability: the code is C99 and assumes a two's-complement target whose right shift of a
 * negative integer is arithmetic and whose conversion of an out-of-range uint32_t to int32_t
 * wraps (gcc, clang and arm-none-eabi-gcc document both).
 */
#include <string.h>

#include "kernels_internal.h"

#if defined(__ARM_FEATURE_DSP)
#include <arm_acle.h>
#endif

#define TK_MIN(a, b) ((a) < (b) ? (a) : (b))
#define TK_MAX(a, b) ((a) > (b) ? (a) : (b))

/* ---- fixed-point arithmetic (gemmlowp / TFLite) ------------------------------------------ */

/* a * b / 2^31, rounded half toward +infinity; INT32_MIN * INT32_MIN saturates. gemmlowp adds
 * a nudge of 2^30 (1 - 2^30 for negative products) and divides truncating toward zero: the same
 * as adding 2^30 and shifting right (flooring), which is what this does. */
static int32_t srdhm(int32_t a, int32_t b)
{
    const int64_t high = ((int64_t)a * (int64_t)b + ((int64_t)1 << 30)) >> 31;
    return high > INT32_MAX ? INT32_MAX : (int32_t)high;
}

/* x / 2^exponent, rounded half away from zero; exponent in [0, 62]. gemmlowp compares the
 * remainder with half the divisor (plus one for negative x); adding half (minus one for
 * negative x) before a flooring shift gives the same result. */
static int32_t rdbpot(int32_t x, int32_t exponent)
{
    const int64_t half = ((int64_t)1 << exponent) >> 1;
    return (int32_t)(((int64_t)x + half - (x < 0 && exponent > 0 ? 1 : 0)) >> exponent);
}

static int32_t wrap_add(int32_t a, int32_t b)
{
    return (int32_t)((uint32_t)a + (uint32_t)b);
}

static int32_t wrap_sub(int32_t a, int32_t b)
{
    return (int32_t)((uint32_t)a - (uint32_t)b);
}

int32_t tk_multiply_by_quantized_multiplier(int32_t x, int32_t multiplier, int32_t shift)
{
    const int32_t left = shift > 0 ? shift : 0;
    const int32_t right = shift > 0 ? 0 : -shift;
    return rdbpot(srdhm((int32_t)((uint32_t)x << left), multiplier), right);
}

/* zero point added to a requantized value, clamped to [low, high]; the value is clamped to
 * +-512 first so the sum cannot overflow (the result is the same: the range is within int8). */
static int8_t clamp_offset(int32_t value, int32_t offset, int32_t low, int32_t high)
{
    value = TK_MAX(TK_MIN(value, 512), -512) + offset;
    return (int8_t)TK_MAX(TK_MIN(value, high), low);
}

/* ---- requantization ---------------------------------------------------------------------- */

tk_rq tk_rq_channel(const tk_quant *q, int32_t channel)
{
    tk_rq r;
    const int32_t shift = q->shift[channel], right = shift > 0 ? 0 : -shift;
    /* 2^30 + half * 2^31 as high and low words: half * 2^31 is 2^(right + 30) */
    const uint32_t high = right >= 2 ? 1u << (right - 2) : 0u;
    const uint32_t low = right == 1 ? 0xC0000000u : 0x40000000u;
    r.multiplier = q->multiplier[channel];
    r.left = shift > 0 ? shift : 0;
    r.right1 = right - 1;
    r.add[0] = (int64_t)(((uint64_t)high << 32) | low);
    r.add[1] = right > 0 ? r.add[0] - 0x80000000 : r.add[0];
    r.offset = q->output_offset;
    r.low = q->activation_min - q->output_offset; /* the clamp before the zero point is added */
    r.high = q->activation_max - q->output_offset;
    return r;
}

/* tk_multiply_by_quantized_multiplier(acc, multiplier, shift) + zero point, clamped: the same
 * value (see tk_rq). */
int8_t tk_rq_apply(uint32_t acc, const tk_rq *r)
{
    if (!TK_RQ_ANY_SHIFT) {
        return rq_apply_right(acc, r);
    }
    const int32_t x = (int32_t)(acc << r->left);
    const int64_t v = r->add[(uint32_t)x >> 31] + (int64_t)x * r->multiplier;
    int32_t q = r->right1 >= 0 ? (int32_t)(v >> 32) >> r->right1 : (int32_t)(v >> 31);
    q = q < r->low ? r->low : q;
    q = q > r->high ? r->high : q;
    return (int8_t)(q + r->offset);
}

/* ---- pooling, mean ----------------------------------------------------------------------- */

/* In-bounds window rows [*y_lo, *y_hi) and columns [*x_lo, *x_hi) of output pixel (oy, ox). */
static void pool_bounds(const tk_pool_params *p, int32_t oy, int32_t ox, int32_t *y_lo,
                        int32_t *y_hi, int32_t *x_lo, int32_t *x_hi)
{
    const int32_t y0 = oy * p->window.stride_h - p->window.pad_top;
    const int32_t x0 = ox * p->window.stride_w - p->window.pad_left;
    *y_lo = TK_MAX(y0, 0);
    *y_hi = TK_MIN(y0 + p->filter_h, p->input.h);
    *x_lo = TK_MAX(x0, 0);
    *x_hi = TK_MIN(x0 + p->filter_w, p->input.w);
}

/* Max or mean of each output pixel's in-bounds window, per channel. The mean is the sum s over
 * n pixels divided rounding half away from zero, (s + n/2) / n for s > 0, (s - n/2) / n
 * otherwise, with C's truncating division. Inlined into each caller, so that `is_max` is a
 * constant there and each kernel compiles to its own loop nest. */
TK_INLINE void pool2d_s8(const tk_pool_params *p, const int8_t *input, int8_t *output, int is_max)
{
    const tk_dims *in = &p->input, *out = &p->output;
    int32_t b, oy, ox, c, y, x, y_lo, y_hi, x_lo, x_hi;
    for (b = 0; b < out->n; ++b) {
        for (oy = 0; oy < out->h; ++oy) {
            for (ox = 0; ox < out->w; ++ox) {
                int8_t *dst = output + ((b * out->h + oy) * out->w + ox) * out->c;
                int32_t count;
                pool_bounds(p, oy, ox, &y_lo, &y_hi, &x_lo, &x_hi);
                count = (y_hi - y_lo) * (x_hi - x_lo);
                for (c = 0; c < out->c; ++c) {
                    int32_t acc = is_max ? -128 : 0;
                    for (y = y_lo; y < y_hi; ++y) {
                        for (x = x_lo; x < x_hi; ++x) {
                            const int32_t v = input[((b * in->h + y) * in->w + x) * in->c + c];
                            acc = is_max ? TK_MAX(acc, v) : acc + v;
                        }
                    }
                    if (!is_max) {
                        acc = acc > 0 ? (acc + count / 2) / count : (acc - count / 2) / count;
                    }
                    dst[c] = (int8_t)TK_MAX(TK_MIN(acc, p->activation_max), p->activation_min);
                }
            }
        }
    }
}

void tk_max_pool2d_s8(const tk_pool_params *p, const int8_t *input, int8_t *output)
{
    pool2d_s8(p, input, output, 1);
}

void tk_avg_pool2d_s8(const tk_pool_params *p, const int8_t *input, int8_t *output)
{
    pool2d_s8(p, input, output, 0);
}

#if defined(__ARM_FEATURE_DSP)
/* sums[0..3] += the four int8 lanes of the words at x, x + stride, ... (n of them). SXTAB16 adds
 * pairs of lanes into 16-bit halves: 256 values of [-128, 127] sum to within [-32768, 32512],
 * so each run of up to 256 is exact before it is widened. */
static void sum4_s8(const int8_t *x, int32_t stride, int32_t n, int32_t *sums)
{
    while (n > 0) {
        const int32_t m = n < 256 ? n : 256;
        uint32_t even = 0, odd = 0, v;
        int32_t i;
        for (i = 0; i < m; ++i, x += stride) {
            memcpy(&v, x, 4);
            even = __sxtab16(even, v);
            __asm__("sxtab16 %0, %0, %1, ror #8" : "+r"(odd) : "r"(v));
        }
        sums[0] += (int16_t)even, sums[1] += (int16_t)odd;
        sums[2] += (int32_t)even >> 16, sums[3] += (int32_t)odd >> 16;
        n -= m;
    }
}
#endif

void tk_mean_hw_s8(const tk_mean_params *p, const int8_t *input, int8_t *output)
{
    const tk_dims *in = &p->input;
    const int32_t count = in->h * in->w;
    int32_t b, c, i, j, sums[4];
    for (b = 0; b < in->n; ++b) {
        const int8_t *image = input + b * count * in->c;
        for (c = 0; c < in->c; c += j) {
            j = 1;
            sums[0] = 0;
#if defined(__ARM_FEATURE_DSP)
            if (c + 4 <= in->c) { /* four channels at a time */
                j = 4;
                sums[1] = sums[2] = sums[3] = 0;
                sum4_s8(image + c, in->c, count, sums);
            }
#endif
            for (i = 0; j == 1 && i < count; ++i) {
                sums[0] += image[i * in->c + c];
            }
            for (i = 0; i < j; ++i) {
                const uint32_t acc = (uint32_t)(p->input_offset * count) + (uint32_t)sums[i];
                const int32_t scaled =
                    tk_multiply_by_quantized_multiplier((int32_t)acc, p->multiplier, p->shift);
                output[b * in->c + c + i] = clamp_offset(scaled, p->output_offset, -128, 127);
            }
        }
    }
}

/* ---- element-wise ------------------------------------------------------------------------ */

/* ADD and MUL rescale with the requantization of the convolutions (kernels_internal.h tk_rq):
 * SaturatingRoundingDoublingHighMul then RoundingDivideByPOT as one 64-bit multiply-add and
 * shift, constants derived once per call. TFLite's int8 ADD: each input minus its zero point,
 * times 2^left_shift, is rescaled onto a common scale (MultiplyByQuantizedMultiplier-
 * SmallerThanOneExp), the two are summed (modulo 2^32) and the sum rescaled to the output; MUL
 * rescales the product of the offset inputs (within +-2^16: no overflow). */

/* The constants of one rescaling by (multiplier, shift), shift in [-31, 30], to a value of zero
 * point `offset` clamped to [low, high]. */
static tk_rq rescaling(int32_t multiplier, int32_t shift, int32_t offset, int32_t low,
                       int32_t high)
{
    const int8_t shift8 = (int8_t)shift;
    const tk_quant q = {&multiplier, &shift8, 0, offset, low, high};
    return tk_rq_channel(&q, 0);
}

/* tk_multiply_by_quantized_multiplier(x, multiplier, shift) with r's constants (see tk_rq). */
TK_INLINE int32_t rescale(int32_t x, const tk_rq *r)
{
    int64_t v;
    x = (int32_t)((uint32_t)x << r->left);
    v = r->add[(uint32_t)x >> 31] + (int64_t)x * r->multiplier;
    return r->right1 >= 0 ? (int32_t)(v >> 32) >> r->right1 : (int32_t)(v >> 31);
}

/* The rescaled value clamped to r's range, plus its zero point. */
TK_INLINE int8_t clamp_rescaled(int32_t q, const tk_rq *r)
{
    q = q < r->low ? r->low : q;
    q = q > r->high ? r->high : q;
    return (int8_t)(q + r->offset);
}

/* The constants of an ADD: input a, input b, output. */
typedef struct {
    tk_rq a, b, out;
    int32_t a_offset, b_offset, left;
} tk_add_rq;

/* One input's share of an ADD: (x + offset) * 2^left, rescaled. */
TK_INLINE int32_t add_input(int32_t x, int32_t offset, int32_t left, const tk_rq *r)
{
    return rescale((x + offset) * (1 << left), r);
}

/* n outputs of an ADD along the last axis: a and b step by a_step / b_step (0: broadcast, its
 * share computed once). */
static void add_row(const tk_add_rq *k, const int8_t *a, int32_t a_step, const int8_t *b,
                    int32_t b_step, int32_t n, int8_t *y)
{
    const int32_t sa = add_input(*a, k->a_offset, k->left, &k->a);
    const int32_t sb = add_input(*b, k->b_offset, k->left, &k->b);
    int32_t i;
    if (a_step == 0) {
        for (i = 0; i < n; ++i, b += b_step) {
            const int32_t s = (int32_t)((uint32_t)sa + (uint32_t)add_input(*b, k->b_offset,
                                                                             k->left, &k->b));
            y[i] = clamp_rescaled(rescale(s, &k->out), &k->out);
        }
    } else if (b_step == 0) {
        for (i = 0; i < n; ++i, a += a_step) {
            const int32_t s = (int32_t)((uint32_t)add_input(*a, k->a_offset, k->left, &k->a) +
                                        (uint32_t)sb);
            y[i] = clamp_rescaled(rescale(s, &k->out), &k->out);
        }
    } else {
        for (i = 0; i < n; ++i, a += a_step, b += b_step) {
            const int32_t s = (int32_t)((uint32_t)add_input(*a, k->a_offset, k->left, &k->a) +
                                        (uint32_t)add_input(*b, k->b_offset, k->left, &k->b));
            y[i] = clamp_rescaled(rescale(s, &k->out), &k->out);
        }
    }
}

/* n outputs of an ADD whose one input's shares along the row are given (`shared`), the other
 * input x (steps of `step`, zero point -offset, rescaled with r) read as it goes. */
static void add_row_shared(const tk_add_rq *k, const int32_t *shared, const int8_t *x,
                           int32_t step, int32_t offset, const tk_rq *r, int32_t n, int8_t *y)
{
    int32_t i;
    for (i = 0; i < n; ++i, x += step) {
        const int32_t s =
            (int32_t)((uint32_t)shared[i] + (uint32_t)add_input(*x, offset, k->left, r));
        y[i] = clamp_rescaled(rescale(s, &k->out), &k->out);
    }
}

/* One plane of an ADD (the last two axes, shape[2] rows of shape[3]) from a and b at their
 * plane's start. An input broadcast along the rows (a row of at most TK_ADD_ROW contiguous
 * values reused for each) has its row's shares computed once. */
#define TK_ADD_ROW 64
static void add_plane(const tk_add_params *p, const tk_add_rq *k, const int8_t *a,
                      const int8_t *b, int8_t *output)
{
    const int32_t *shape = p->shape, *as = p->a_stride, *bs = p->b_stride;
    const int row = shape[2] > 1 && shape[3] <= TK_ADD_ROW;
    int32_t shared[TK_ADD_ROW], i, j;
    if (row && as[2] == 0 && as[3] == 1) {
        for (j = 0; j < shape[3]; ++j) {
            shared[j] = add_input(a[j], k->a_offset, k->left, &k->a);
        }
        for (i = 0; i < shape[2]; ++i, b += bs[2], output += shape[3]) {
            add_row_shared(k, shared, b, bs[3], k->b_offset, &k->b, shape[3], output);
        }
    } else if (row && bs[2] == 0 && bs[3] == 1) {
        for (j = 0; j < shape[3]; ++j) {
            shared[j] = add_input(b[j], k->b_offset, k->left, &k->b);
        }
        for (i = 0; i < shape[2]; ++i, a += as[2], output += shape[3]) {
            add_row_shared(k, shared, a, as[3], k->a_offset, &k->a, shape[3], output);
        }
    } else {
        for (i = 0; i < shape[2]; ++i, a += as[2], b += bs[2], output += shape[3]) {
            add_row(k, a, as[3], b, bs[3], shape[3], output);
        }
    }
}

void tk_add_s8(const tk_add_params *p, const int8_t *a, const int8_t *b, int8_t *output)
{
    const int32_t *shape = p->shape, *as = p->a_stride, *bs = p->b_stride;
    tk_add_rq k;
    int32_t i0, i1;
    k.a = rescaling(p->a_multiplier, p->a_shift, 0, 0, 0);
    k.b = rescaling(p->b_multiplier, p->b_shift, 0, 0, 0);
    k.out = rescaling(p->output_multiplier, p->output_shift, p->output_offset,
                      p->activation_min, p->activation_max);
    k.a_offset = p->a_offset, k.b_offset = p->b_offset, k.left = p->left_shift;
    for (i0 = 0; i0 < shape[0]; ++i0) {
        for (i1 = 0; i1 < shape[1]; ++i1, output += shape[2] * shape[3]) {
            add_plane(p, &k, a + i0 * as[0] + i1 * as[1], b + i0 * bs[0] + i1 * bs[1], output);
        }
    }
}

/* n outputs of a MUL along the last axis (steps as add_row). */
static void mul_row(const tk_mul_params *p, const tk_rq *r, const int8_t *a, int32_t a_step,
                    const int8_t *b, int32_t b_step, int32_t n, int8_t *y)
{
    int32_t i;
    for (i = 0; i < n; ++i, a += a_step, b += b_step) {
        const int32_t product = (*a + p->a_offset) * (*b + p->b_offset);
        y[i] = clamp_rescaled(rescale(product, r), r);
    }
}

void tk_mul_s8(const tk_mul_params *p, const int8_t *a, const int8_t *b, int8_t *output)
{
    const int32_t *shape = p->shape, *as = p->a_stride, *bs = p->b_stride;
    const tk_rq r = rescaling(p->multiplier, p->shift, p->output_offset, p->activation_min,
                              p->activation_max);
    int32_t i0, i1, i2;
    for (i0 = 0; i0 < shape[0]; ++i0) {
        for (i1 = 0; i1 < shape[1]; ++i1) {
            for (i2 = 0; i2 < shape[2]; ++i2, output += shape[3]) {
                const int32_t ia = i0 * as[0] + i1 * as[1] + i2 * as[2];
                const int32_t ib = i0 * bs[0] + i1 * bs[1] + i2 * bs[2];
                mul_row(p, &r, a + ia, as[3], b + ib, bs[3], shape[3], output);
            }
        }
    }
}

void tk_logistic_s8(const tk_logistic_params *p, const int8_t *input, int8_t *output)
{
    int32_t i;
    for (i = 0; i < p->size; ++i) {
        output[i] = p->table[input[i] + 128];
    }
}

void tk_requantize_s8(const tk_requantize_params *p, const int8_t *input, int8_t *output)
{
    int32_t i;
    for (i = 0; i < p->size; ++i) {
        const int32_t scaled =
            tk_multiply_by_quantized_multiplier(input[i] + p->input_offset, p->multiplier,
                                                p->shift);
        output[i] = clamp_offset(scaled, p->output_offset, -128, 127);
    }
}

void tk_pad_s8(const tk_pad_params *p, const int8_t *input, int8_t *output)
{
    const int32_t *is = p->input_shape, *os = p->output_shape, *pb = p->pad_before;
    int32_t i0, i1, i2, i3, k = 0;
    for (i0 = 0; i0 < os[0]; ++i0) {
        for (i1 = 0; i1 < os[1]; ++i1) {
            for (i2 = 0; i2 < os[2]; ++i2) {
                const int32_t j0 = i0 - pb[0], j1 = i1 - pb[1], j2 = i2 - pb[2];
                const int inside = j0 >= 0 && j0 < is[0] && j1 >= 0 && j1 < is[1] && j2 >= 0 &&
                                   j2 < is[2];
                for (i3 = 0; i3 < os[3]; ++i3) {
                    const int32_t j3 = i3 - pb[3];
                    output[k++] = inside && j3 >= 0 && j3 < is[3]
                                      ? input[((j0 * is[1] + j1) * is[2] + j2) * is[3] + j3]
                                      : (int8_t)p->value;
                }
            }
        }
    }
}

void tk_slice_s8(const tk_slice_params *p, const int8_t *input, int8_t *output)
{
    const int32_t *is = p->input_shape, *begin = p->begin, *size = p->size;
    int32_t i0, i1, i2, i3;
    for (i0 = 0; i0 < size[0]; ++i0) {
        for (i1 = 0; i1 < size[1]; ++i1) {
            for (i2 = 0; i2 < size[2]; ++i2) {
                const int8_t *row =
                    input + (((i0 + begin[0]) * is[1] + i1 + begin[1]) * is[2] + i2 + begin[2]) *
                                is[3] +
                    begin[3];
                for (i3 = 0; i3 < size[3]; ++i3) {
                    *output++ = row[i3];
                }
            }
        }
    }
}

void tk_concatenation_s8(const tk_concatenation_params *p, const int8_t *const *inputs,
                         int8_t *output)
{
    int32_t b, k, i;
    for (b = 0; b < p->outer; ++b) {
        for (k = 0; k < p->n_inputs; ++k) {
            const int32_t n = p->input_block[k];
            const int8_t *block = inputs[k] + b * n;
            for (i = 0; i < n; ++i) {
                *output++ = block[i];
            }
        }
    }
}

void tk_copy_s8(const int8_t *input, int8_t *output, int32_t size)
{
    int32_t i;
    for (i = 0; i < size; ++i) {
        output[i] = input[i];
    }
}

/* ---- softmax (gemmlowp fixed point, as TFLite's reference int8 softmax) ------------------ */

/* x * 2^exponent, saturating for exponent > 0, rounding half away from zero for < 0. */
static int32_t saturating_multiply_by_pot(int32_t x, int32_t exponent)
{
    int32_t threshold;
    if (exponent <= 0) {
        return rdbpot(x, -exponent);
    }
    threshold = (int32_t)(((int64_t)1 << (31 - exponent)) - 1);
    if (x > threshold) {
        return INT32_MAX;
    }
    if (x < -threshold) {
        return INT32_MIN;
    }
    return (int32_t)((uint32_t)x << exponent);
}

/* exp(a) for a in [-1/4, 0), Q0.31 in and out: Taylor expansion around -1/8. */
static int32_t exp_on_interval(int32_t a)
{
    const int32_t constant_term = 1895147668, constant_1_over_3 = 715827883;
    const int32_t x = wrap_add(a, 1 << 28);
    const int32_t x2 = srdhm(x, x), x3 = srdhm(x2, x), x4 = srdhm(x2, x2);
    const int32_t x4_over_4 = rdbpot(x4, 2);
    const int32_t poly =
        rdbpot(wrap_add(srdhm(wrap_add(x4_over_4, x3), constant_1_over_3), x2), 1);
    return wrap_add(constant_term, srdhm(constant_term, wrap_add(x, poly)));
}

/* exp(a) for a <= 0 in Q5.26; result Q0.31 (gemmlowp exp_on_negative_values<5>). */
static int32_t exp_on_negative_values(int32_t a)
{
    static const int32_t barrel[7] = {1672461947, 1302514674, 790015084, 290630308,
                                      39332535,   720401,     242};
    const int32_t one_quarter = 1 << 24;
    const int32_t a_mod_quarter_minus_one_quarter = (a & (one_quarter - 1)) - one_quarter;
    const int32_t remainder = wrap_sub(a_mod_quarter_minus_one_quarter, a);
    int32_t result = exp_on_interval(saturating_multiply_by_pot(a_mod_quarter_minus_one_quarter, 5));
    int32_t k;
    for (k = 0; k < 7; ++k) { /* exp(-2^(k-2)) for each set bit of the remainder */
        if (remainder & (1 << (24 + k))) {
            result = srdhm(result, barrel[k]);
        }
    }
    return a == 0 ? INT32_MAX : result;
}

/* 1 / (1 + a) for a in [0, 1), Q0.31 in and out (Newton-Raphson). */
static int32_t one_over_one_plus_x(int32_t a)
{
    const int64_t total = (int64_t)a + INT32_MAX;
    const int32_t half_denominator = (int32_t)((total + (total >= 0 ? 1 : -1)) / 2);
    const int32_t one_q2 = 1 << 29;
    int32_t x = wrap_add(1515870810, srdhm(half_denominator, -1010580540));
    int k;
    for (k = 0; k < 3; ++k) {
        const int32_t residual = wrap_sub(one_q2, srdhm(half_denominator, x));
        x = wrap_add(x, saturating_multiply_by_pot(srdhm(x, residual), 2));
    }
    return saturating_multiply_by_pot(x, 1);
}

static int32_t leading_zeros(uint32_t x)
{
    int32_t n = 0;
    while (n < 32 && !(x & 0x80000000u)) {
        x <<= 1;
        ++n;
    }
    return n;
}

static void softmax_row(const tk_softmax_params *p, const int8_t *x, int8_t *y)
{
    int32_t i, max = -128, sum = 0, headroom, reciprocal, exponent;
    for (i = 0; i < p->depth; ++i) {
        max = TK_MAX(max, x[i]);
    }
    for (i = 0; i < p->depth; ++i) {
        const int32_t diff = x[i] - max;
        if (diff >= p->diff_min) {
            const int32_t scaled = srdhm((int32_t)((uint32_t)diff << p->input_left_shift),
                                         p->input_multiplier);
            sum = wrap_add(sum, rdbpot(exp_on_negative_values(scaled), 12));
        }
    }
    headroom = leading_zeros((uint32_t)sum);
    reciprocal = one_over_one_plus_x((int32_t)(((uint32_t)sum << headroom) - 0x80000000u));
    exponent = (12 - headroom) + 31 - 8;
    for (i = 0; i < p->depth; ++i) {
        const int32_t diff = x[i] - max;
        int32_t out = -128;
        if (diff >= p->diff_min) {
            const int32_t scaled = srdhm((int32_t)((uint32_t)diff << p->input_left_shift),
                                         p->input_multiplier);
            const int32_t product = srdhm(reciprocal, exp_on_negative_values(scaled));
            out = TK_MAX(TK_MIN(rdbpot(product, exponent) - 128, 127), -128);
        }
        y[i] = (int8_t)out;
    }
}

void tk_softmax_s8(const tk_softmax_params *p, const int8_t *input, int8_t *output)
{
    int32_t r;
    for (r = 0; r < p->rows; ++r) {
        softmax_row(p, input + r * p->depth, output + r * p->depth);
    }
}
