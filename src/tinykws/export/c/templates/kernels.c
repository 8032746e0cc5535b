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
#include "kernels.h"

#define TK_MIN(a, b) ((a) < (b) ? (a) : (b))
#define TK_MAX(a, b) ((a) > (b) ? (a) : (b))
#define TK_DEPTHWISE_CHUNK 32 /* channels accumulated together by the depthwise kernel */

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

static int8_t requantize(uint32_t acc, int32_t channel, const tk_quant *q)
{
    const int32_t scaled = tk_multiply_by_quantized_multiplier(
        (int32_t)acc, q->multiplier[channel], q->shift[channel]);
    return clamp_offset(scaled, q->output_offset, q->activation_min, q->activation_max);
}

/* ---- weights ----------------------------------------------------------------------------- */

/* Stored value `index` of a weight tensor, sign-extended from its bit width. */
static int32_t weight_at(const tk_weights *w, uint32_t index)
{
    if (w->bits == 8) {
        return (int8_t)w->values[index];
    }
    if (w->bits == 4) {
        const uint8_t byte = w->values[index >> 1];
        return (int8_t)(uint8_t)(byte << (4 - 4 * (index & 1))) >> 4;
    }
    return (int8_t)(uint8_t)(w->values[index >> 2] << (6 - 2 * (index & 3))) >> 6;
}

/* Sum of (x[i] + offset) * w[start + i] over n dense weights. The int8 case sums x * w and w
 * apart (each product fits int16, so compilers vectorise it well) and combines them with the
 * offset at the end: the same value modulo 2^32. */
static uint32_t dot_dense(const int8_t *x, int32_t offset, const tk_weights *w, uint32_t start,
                          int32_t n)
{
    int32_t i;
    if (w->bits == 8) {
        const int8_t *wv = (const int8_t *)w->values + start;
        uint32_t xw = 0, ws = 0;
        for (i = 0; i < n; ++i) {
            xw += (uint32_t)(int32_t)(int16_t)(x[i] * wv[i]);
            ws += (uint32_t)(int32_t)wv[i];
        }
        return xw + (uint32_t)offset * ws;
    } else {
        uint32_t acc = 0;
        for (i = 0; i < n; ++i) {
            acc += (uint32_t)((x[i] + offset) * weight_at(w, start + (uint32_t)i));
        }
        return acc;
    }
}

/* The same over n weights of a sparse row, from mask bit *bit and stored value *value, both
 * advanced past the n weights. */
static uint32_t dot_sparse(const int8_t *x, int32_t offset, const tk_weights *w, uint32_t *bit,
                           uint32_t *value, int32_t n)
{
    uint32_t acc = 0, b = *bit, v = *value;
    int32_t i;
    for (i = 0; i < n; ++i, ++b) {
        if (w->mask[b >> 3] & (1u << (b & 7))) {
            acc += (uint32_t)((x[i] + offset) * weight_at(w, v));
            ++v;
        }
    }
    *bit = b;
    *value = v;
    return acc;
}

/* ---- convolutions ------------------------------------------------------------------------ */

/* Copies the window of output pixel (oy, ox) into patch (filter_h * filter_w * C_in values in
 * weight order); pixels in the padding get the input zero point, so (x + offset) is 0 there
 * and they contribute nothing, as in TFLite. */
static void gather_patch(const tk_conv_params *p, const int8_t *image, int32_t oy, int32_t ox,
                         int8_t *patch)
{
    const tk_dims *in = &p->input;
    const int8_t zero_point = (int8_t)(-p->quant.input_offset);
    int32_t ky, kx, c;
    for (ky = 0; ky < p->filter_h; ++ky) {
        const int32_t iy = oy * p->window.stride_h - p->window.pad_top + ky * p->window.dilation_h;
        for (kx = 0; kx < p->filter_w; ++kx) {
            const int32_t ix =
                ox * p->window.stride_w - p->window.pad_left + kx * p->window.dilation_w;
            const int inside = iy >= 0 && iy < in->h && ix >= 0 && ix < in->w;
            const int8_t *x = inside ? image + (iy * in->w + ix) * in->c : 0;
            for (c = 0; c < in->c; ++c) {
                *patch++ = inside ? x[c] : zero_point;
            }
        }
    }
}

/* The input values output pixel (oy, ox) reads, in weight order: the pixel itself for a 1 x 1
 * filter (NULL when it lies in the padding), else the patch gathered into scratch. */
static const int8_t *window_values(const tk_conv_params *p, const int8_t *image, int32_t oy,
                                   int32_t ox, int8_t *scratch)
{
    const tk_dims *in = &p->input;
    if (p->filter_h == 1 && p->filter_w == 1) {
        const int32_t iy = oy * p->window.stride_h - p->window.pad_top;
        const int32_t ix = ox * p->window.stride_w - p->window.pad_left;
        if (iy < 0 || iy >= in->h || ix < 0 || ix >= in->w) {
            return 0;
        }
        return image + (iy * in->w + ix) * in->c;
    }
    gather_patch(p, image, oy, ox, scratch);
    return scratch;
}

void tk_conv2d_s8(const tk_conv_params *p, const int8_t *input, int8_t *output, int8_t *scratch)
{
    const tk_dims *in = &p->input, *out = &p->output;
    const tk_weights *w = &p->weights;
    const int32_t depth = p->filter_h * p->filter_w * in->c; /* weights per output channel */
    int32_t b, oy, ox, oc;
    for (b = 0; b < out->n; ++b) {
        const int8_t *image = input + b * in->h * in->w * in->c;
        for (oy = 0; oy < out->h; ++oy) {
            for (ox = 0; ox < out->w; ++ox) {
                const int8_t *x = window_values(p, image, oy, ox, scratch);
                int8_t *dst = output + ((b * out->h + oy) * out->w + ox) * out->c;
                uint32_t bit = 0, value = 0; /* sparse weights: cursors over the rows */
                for (oc = 0; oc < out->c; ++oc) {
                    uint32_t acc = (uint32_t)p->bias[oc];
                    if (x != 0 && w->mask) {
                        acc += dot_sparse(x, p->quant.input_offset, w, &bit, &value, depth);
                    } else if (x != 0) {
                        acc += dot_dense(x, p->quant.input_offset, w, (uint32_t)(oc * depth),
                                         depth);
                    }
                    dst[oc] = requantize(acc, oc, &p->quant);
                }
            }
        }
    }
}

/* Adds tap (ky, kx)'s contribution to channels [c0, c0 + n) of one depthwise output pixel:
 * xw[i] += x * w and ws[i] += w (int8 weights; the offset is applied once, at the end), or
 * xw[i] += (x + offset) * w directly (packed weights, depth multiplier > 1). */
static void depthwise_tap(const tk_depthwise_params *p, const int8_t *x, int32_t tap, int32_t c0,
                          int32_t n, uint32_t *xw, uint32_t *ws)
{
    const int32_t offset = p->quant.input_offset, m = p->depth_multiplier;
    const uint32_t start = (uint32_t)(tap * p->output.c + c0);
    int32_t i;
    if (m == 1 && p->weights.bits == 8) {
        const int8_t *wv = (const int8_t *)p->weights.values + start;
        for (i = 0; i < n; ++i) {
            xw[i] += (uint32_t)(int32_t)(int16_t)(x[c0 + i] * wv[i]);
            ws[i] += (uint32_t)(int32_t)wv[i];
        }
        return;
    }
    for (i = 0; i < n; ++i) {
        xw[i] += (uint32_t)((x[(c0 + i) / m] + offset) * weight_at(&p->weights, start + i));
    }
}

/* Output channels [c0, c0 + n) of the depthwise output pixel (b, oy, ox). */
static void depthwise_pixel(const tk_depthwise_params *p, const int8_t *image, int32_t oy,
                            int32_t ox, int32_t c0, int32_t n, int8_t *dst)
{
    const tk_dims *in = &p->input;
    uint32_t xw[TK_DEPTHWISE_CHUNK], ws[TK_DEPTHWISE_CHUNK];
    int32_t i, ky, kx;
    for (i = 0; i < n; ++i) {
        xw[i] = (uint32_t)p->bias[c0 + i];
        ws[i] = 0;
    }
    for (ky = 0; ky < p->filter_h; ++ky) {
        const int32_t iy = oy * p->window.stride_h - p->window.pad_top + ky * p->window.dilation_h;
        for (kx = 0; kx < p->filter_w; ++kx) {
            const int32_t ix =
                ox * p->window.stride_w - p->window.pad_left + kx * p->window.dilation_w;
            if (iy >= 0 && iy < in->h && ix >= 0 && ix < in->w) {
                const int8_t *x = image + (iy * in->w + ix) * in->c;
                depthwise_tap(p, x, ky * p->filter_w + kx, c0, n, xw, ws);
            }
        }
    }
    for (i = 0; i < n; ++i) {
        const uint32_t acc = xw[i] + (uint32_t)p->quant.input_offset * ws[i];
        dst[c0 + i] = requantize(acc, c0 + i, &p->quant);
    }
}

void tk_depthwise_conv2d_s8(const tk_depthwise_params *p, const int8_t *input, int8_t *output)
{
    const tk_dims *in = &p->input, *out = &p->output;
    int32_t b, oy, ox, c0;
    for (b = 0; b < out->n; ++b) {
        const int8_t *image = input + b * in->h * in->w * in->c;
        for (oy = 0; oy < out->h; ++oy) {
            for (ox = 0; ox < out->w; ++ox) {
                int8_t *dst = output + ((b * out->h + oy) * out->w + ox) * out->c;
                for (c0 = 0; c0 < out->c; c0 += TK_DEPTHWISE_CHUNK) {
                    const int32_t n = TK_MIN(TK_DEPTHWISE_CHUNK, out->c - c0);
                    depthwise_pixel(p, image, oy, ox, c0, n, dst);
                }
            }
        }
    }
}

void tk_fully_connected_s8(const tk_fully_connected_params *p, const int8_t *input,
                           int8_t *output)
{
    const tk_weights *w = &p->weights;
    const int32_t offset = p->quant.input_offset;
    int32_t r, oc;
    for (r = 0; r < p->rows; ++r) {
        const int8_t *x = input + r * p->input_size;
        uint32_t bit = 0, value = 0; /* sparse weights: cursors over the rows, in order */
        for (oc = 0; oc < p->output_size; ++oc) {
            uint32_t acc = (uint32_t)p->bias[oc];
            if (w->mask) {
                acc += dot_sparse(x, offset, w, &bit, &value, p->input_size);
            } else {
                acc += dot_dense(x, offset, w, (uint32_t)(oc * p->input_size), p->input_size);
            }
            output[r * p->output_size + oc] = requantize(acc, oc, &p->quant);
        }
    }
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

void tk_max_pool2d_s8(const tk_pool_params *p, const int8_t *input, int8_t *output)
{
    const tk_dims *in = &p->input, *out = &p->output;
    int32_t b, oy, ox, c, y, x, y_lo, y_hi, x_lo, x_hi;
    for (b = 0; b < out->n; ++b) {
        for (oy = 0; oy < out->h; ++oy) {
            for (ox = 0; ox < out->w; ++ox) {
                int8_t *dst = output + ((b * out->h + oy) * out->w + ox) * out->c;
                pool_bounds(p, oy, ox, &y_lo, &y_hi, &x_lo, &x_hi);
                for (c = 0; c < out->c; ++c) {
                    int32_t best = -128;
                    for (y = y_lo; y < y_hi; ++y) {
                        for (x = x_lo; x < x_hi; ++x) {
                            best = TK_MAX(best, input[((b * in->h + y) * in->w + x) * in->c + c]);
                        }
                    }
                    dst[c] = (int8_t)TK_MAX(TK_MIN(best, p->activation_max), p->activation_min);
                }
            }
        }
    }
}

/* Mean of the in-bounds pixels: the sum s over n pixels divided rounding half away from zero,
 * (s + n/2) / n for s > 0, (s - n/2) / n otherwise, with C's truncating division. */
void tk_avg_pool2d_s8(const tk_pool_params *p, const int8_t *input, int8_t *output)
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
                    int32_t sum = 0, mean;
                    for (y = y_lo; y < y_hi; ++y) {
                        for (x = x_lo; x < x_hi; ++x) {
                            sum += input[((b * in->h + y) * in->w + x) * in->c + c];
                        }
                    }
                    mean = sum > 0 ? (sum + count / 2) / count : (sum - count / 2) / count;
                    dst[c] = (int8_t)TK_MAX(TK_MIN(mean, p->activation_max), p->activation_min);
                }
            }
        }
    }
}

void tk_mean_hw_s8(const tk_mean_params *p, const int8_t *input, int8_t *output)
{
    const tk_dims *in = &p->input;
    const int32_t count = in->h * in->w;
    int32_t b, c, i;
    for (b = 0; b < in->n; ++b) {
        const int8_t *image = input + b * count * in->c;
        for (c = 0; c < in->c; ++c) {
            uint32_t acc = (uint32_t)(p->input_offset * count);
            int32_t scaled;
            for (i = 0; i < count; ++i) {
                acc += (uint32_t)(int32_t)image[i * in->c + c];
            }
            scaled = tk_multiply_by_quantized_multiplier((int32_t)acc, p->multiplier, p->shift);
            output[b * in->c + c] = clamp_offset(scaled, p->output_offset, -128, 127);
        }
    }
}

/* ---- element-wise ------------------------------------------------------------------------ */

/* Calls one(params, a, b) for every output element, in order, with the broadcast inputs:
 * shape is the output's (4-D); a_stride / b_stride step through each input (0 on an axis it is
 * broadcast along). */
typedef int8_t (*binary_one)(const void *params, int32_t a, int32_t b);

static void broadcast_binary(const int32_t *shape, const int32_t *a_stride,
                             const int32_t *b_stride, const int8_t *a, const int8_t *b,
                             int8_t *output, binary_one one, const void *params)
{
    int32_t i0, i1, i2, i3, k = 0;
    for (i0 = 0; i0 < shape[0]; ++i0) {
        for (i1 = 0; i1 < shape[1]; ++i1) {
            for (i2 = 0; i2 < shape[2]; ++i2) {
                const int32_t ia = i0 * a_stride[0] + i1 * a_stride[1] + i2 * a_stride[2];
                const int32_t ib = i0 * b_stride[0] + i1 * b_stride[1] + i2 * b_stride[2];
                for (i3 = 0; i3 < shape[3]; ++i3) {
                    output[k++] = one(params, a[ia + i3 * a_stride[3]], b[ib + i3 * b_stride[3]]);
                }
            }
        }
    }
}

/* TFLite's int8 ADD: each input minus its zero point is scaled by 2^left_shift, rescaled onto
 * a common scale (MultiplyByQuantizedMultiplierSmallerThanOneExp), summed, and rescaled. */
static int8_t add_one(const void *params, int32_t a, int32_t b)
{
    const tk_add_params *p = (const tk_add_params *)params;
    const int32_t sa = rdbpot(srdhm((a + p->a_offset) * (1 << p->left_shift), p->a_multiplier),
                              -p->a_shift);
    const int32_t sb = rdbpot(srdhm((b + p->b_offset) * (1 << p->left_shift), p->b_multiplier),
                              -p->b_shift);
    const int32_t raw = rdbpot(srdhm(wrap_add(sa, sb), p->output_multiplier), -p->output_shift);
    return clamp_offset(raw, p->output_offset, p->activation_min, p->activation_max);
}

void tk_add_s8(const tk_add_params *p, const int8_t *a, const int8_t *b, int8_t *output)
{
    broadcast_binary(p->shape, p->a_stride, p->b_stride, a, b, output, add_one, p);
}

/* TFLite's int8 MUL: the product of the offset inputs (within +-2^16: no overflow) is
 * requantized like a convolution's accumulator. */
static int8_t mul_one(const void *params, int32_t a, int32_t b)
{
    const tk_mul_params *p = (const tk_mul_params *)params;
    const int32_t product = (a + p->a_offset) * (b + p->b_offset);
    const int32_t scaled = tk_multiply_by_quantized_multiplier(product, p->multiplier, p->shift);
    return clamp_offset(scaled, p->output_offset, p->activation_min, p->activation_max);
}

void tk_mul_s8(const tk_mul_params *p, const int8_t *a, const int8_t *b, int8_t *output)
{
    broadcast_binary(p->shape, p->a_stride, p->b_stride, a, b, output, mul_one, p);
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
