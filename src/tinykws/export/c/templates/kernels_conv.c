/*
 * tinykws CONV_2D and FULLY_CONNECTED kernels (requantization constants: kernels.c tk_rq_channel,
 * shared with DEPTHWISE_CONV_2D, ADD and MUL); see kernels.h for the arithmetic, layouts and
 * argument ranges.
 *
 * Written from tinykws's integer specification (tinykws/ir/kernels.py, tinykws/ir/fixedpoint.py);
 * the tests compare every path of these kernels with the specification for equality.
 *
 * The input offset is folded into the bias when the C is generated: `bias[c]` holds
 * bias[c] + input_offset * (sum of channel c's weights), wrapped to int32, so an output is
 * bias[c] + sum(x * w) modulo 2^32. A tap in the padding reads the input zero point
 * (-input_offset), whose product cancels that tap's share of the folded term: padded pixels
 * contribute nothing, as in the specification.
 *
 * Fast paths: a convolution or fully connected layer is a matrix product of pixel rows (the
 * input pixel itself, or its window gathered into scratch) with weight rows (the int8 weights
 * themselves, or rows unpacked from 4-bit, 2-bit or sparse storage onto the stack), computed
 * two pixels by two output channels at a time in registers, requantization constants derived
 * once per pair of channels. Depthwise convolutions compute four channels at a time, without
 * per-tap bounds checks inside the image. On a Cortex-M with the DSP extension
 * (__ARM_FEATURE_DSP) int8 pairs are sign-extended with SXTB16 and multiplied with SMLAD /
 * SMLAxy (hand-scheduled inline assembly for the inner loops); elsewhere the same loops run in
 * portable C99. A convolution given no scratch for its windows, and a depthwise convolution of
 * depth multiplier above 1 or of more than 25 taps, run the generic kernel.
 */
#include "kernels_internal.h"

/* ---- int8 dot products ------------------------------------------------------------------- */


#if defined(__ARM_FEATURE_DSP)
/* acc[0..1] += dot(x, row 0), dot(x, row 1) (w, w + k) over 4 * n int8 values, n >= 1. */
static void dot_1x2_dsp(const int8_t *x, const int8_t *w, int32_t k, int32_t n, uint32_t *acc)
{
    uint32_t a0 = acc[0], a1 = acc[1], u, t, e, o;
    __asm__ volatile("1:\n\t"
                     "ldr    %[u], [%[x]], #4\n\t"
                     "sxtb16 %[e], %[u]\n\t"
                     "sxtb16 %[o], %[u], ror #8\n\t"
                     "ldr    %[u], [%[w], %[k]]\n\t"
                     "sxtb16 %[t], %[u]\n\t"
                     "smlad  %[a1], %[e], %[t], %[a1]\n\t"
                     "sxtb16 %[t], %[u], ror #8\n\t"
                     "smlad  %[a1], %[o], %[t], %[a1]\n\t"
                     "ldr    %[u], [%[w]], #4\n\t"
                     "sxtb16 %[t], %[u]\n\t"
                     "smlad  %[a0], %[e], %[t], %[a0]\n\t"
                     "sxtb16 %[t], %[u], ror #8\n\t"
                     "smlad  %[a0], %[o], %[t], %[a0]\n\t"
                     "subs   %[n], %[n], #1\n\t"
                     "bne    1b\n\t"
                     : [a0] "+r"(a0), [a1] "+r"(a1), [x] "+r"(x), [w] "+r"(w), [n] "+r"(n),
                       [u] "=&r"(u), [t] "=&r"(t), [e] "=&r"(e), [o] "=&r"(o)
                     : [k] "r"(k)
                     : "cc", "memory");
    acc[0] = a0, acc[1] = a1;
}

/* One step of dot_2x2_dsp: four int8 of rows a and b (x, x + k) times four of rows 0 and 1
 * (w, w + k): 4 loads, 8 SXTB16, 8 SMLAD for 16 multiply-accumulates. Row a's and row b's
 * words are split once, each weight word split once and used for both rows. */
#define TK_STEP_2X2                                      \
    "ldr    %[u], [%[x], %[k]]\n\t"                      \
    "sxtb16 %[be], %[u]\n\t"                             \
    "sxtb16 %[bo], %[u], ror #8\n\t"                     \
    "ldr    %[u], [%[x]], #4\n\t"                        \
    "sxtb16 %[ae], %[u]\n\t"                             \
    "sxtb16 %[ao], %[u], ror #8\n\t"                     \
    "ldr    %[u], [%[w], %[k]]\n\t"                      \
    "sxtb16 %[t], %[u]\n\t"                              \
    "smlad  %[a1], %[ae], %[t], %[a1]\n\t"               \
    "smlad  %[b1], %[be], %[t], %[b1]\n\t"               \
    "sxtb16 %[t], %[u], ror #8\n\t"                      \
    "smlad  %[a1], %[ao], %[t], %[a1]\n\t"               \
    "smlad  %[b1], %[bo], %[t], %[b1]\n\t"               \
    "ldr    %[u], [%[w]], #4\n\t"                        \
    "sxtb16 %[t], %[u]\n\t"                              \
    "smlad  %[a0], %[ae], %[t], %[a0]\n\t"               \
    "smlad  %[b0], %[be], %[t], %[b0]\n\t"               \
    "sxtb16 %[t], %[u], ror #8\n\t"                      \
    "smlad  %[a0], %[ao], %[t], %[a0]\n\t"               \
    "smlad  %[b0], %[bo], %[t], %[b0]\n\t"

/* acc[0..3] += dot(row a, row 0), dot(a, 1), dot(b, 0), dot(b, 1) over 4 * n int8 values,
 * n >= 1: 21 instructions per 16 multiply-accumulates (two steps per loop). Hand-scheduled
 * because gcc -Os spills some of the 14 live values otherwise. */
TK_INLINE void dot_2x2_dsp_inline(const int8_t *x, const int8_t *w, int32_t k, int32_t n,
                                  uint32_t *acc)
{
#if TK_WIDE_ASM
    uint32_t a0 = acc[0], a1 = acc[1], b0 = acc[2], b1 = acc[3], u, t, ae, ao, be, bo;
    int32_t pairs = n >> 1;
    if (n & 1) {
        __asm__ volatile(TK_STEP_2X2
                         : [a0] "+r"(a0), [a1] "+r"(a1), [b0] "+r"(b0), [b1] "+r"(b1),
                           [x] "+r"(x), [w] "+r"(w), [u] "=&r"(u), [t] "=&r"(t), [ae] "=&r"(ae),
                           [ao] "=&r"(ao), [be] "=&r"(be), [bo] "=&r"(bo)
                         : [k] "r"(k)
                         : "memory");
    }
    if (pairs > 0) {
        __asm__ volatile("1:\n\t" TK_STEP_2X2 TK_STEP_2X2
                         "subs   %[n], %[n], #1\n\t"
                         "bne    1b\n\t"
                         : [a0] "+r"(a0), [a1] "+r"(a1), [b0] "+r"(b0), [b1] "+r"(b1),
                           [x] "+r"(x), [w] "+r"(w), [n] "+r"(pairs), [u] "=&r"(u), [t] "=&r"(t),
                           [ae] "=&r"(ae), [ao] "=&r"(ao), [be] "=&r"(be), [bo] "=&r"(bo)
                         : [k] "r"(k)
                         : "cc", "memory");
    }
    acc[0] = a0, acc[1] = a1, acc[2] = b0, acc[3] = b1;
#else
    dot_1x2_dsp(x, w, k, n, acc);
    dot_1x2_dsp(x + k, w, k, n, acc + 2);
#endif
}

#endif

/* acc[0..1] += dot(x, w), dot(x, w + stride) over n int8 values, modulo 2^32. */
static void dot_1x2_strided(const int8_t *x, const int8_t *w, int32_t stride, int32_t n,
                            uint32_t *acc)
{
    int32_t i = 0;
#if defined(__ARM_FEATURE_DSP)
    if (n >= 4) {
        dot_1x2_dsp(x, w, stride, n >> 2, acc);
        i = n & ~3;
    }
#endif
    for (; i < n; ++i) {
        acc[0] += (uint32_t)(x[i] * w[i]);
        acc[1] += (uint32_t)(x[i] * w[stride + i]);
    }
}

/* acc[0..3] += dot(xa, w0), dot(xa, w1), dot(xb, w0), dot(xb, w1) over values [i, k), modulo
 * 2^32, with xb = xa + k and w1 = w0 + k (rows of k values one after the other). Written as
 * four plain reductions: what compilers vectorise. */
TK_INLINE void dot_2x2_from(const int8_t *x, const int8_t *w, int32_t i, int32_t k,
                            uint32_t *acc)
{
    uint32_t a0 = acc[0], a1 = acc[1], b0 = acc[2], b1 = acc[3];
    for (; i < k; ++i) {
        a0 += (uint32_t)(x[i] * w[i]);
        a1 += (uint32_t)(x[i] * w[k + i]);
        b0 += (uint32_t)(x[k + i] * w[i]);
        b1 += (uint32_t)(x[k + i] * w[k + i]);
    }
    acc[0] = a0, acc[1] = a1, acc[2] = b0, acc[3] = b1;
}

/* ---- weight rows --------------------------------------------------------------------------- */

/* Stored value `index` of packed weights (bits 8, 4 or 2), sign-extended. */
int32_t tk_weight_at(const tk_weights *w, uint32_t index)
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

/* Sparse weights are read in row order: the next mask bit and the next stored value. */
typedef struct {
    uint32_t bit, value;
} tk_cursor;

/* Weight `index` of row `row` (k weights a row): dense, or the next one of a sparse row. */
static int32_t weight_next(const tk_weights *w, uint32_t index, tk_cursor *cursor)
{
    const uint32_t b = cursor->bit++;
    if (!TK_CONV_PACKED) {
        return (int8_t)w->values[index];
    }
    if (!w->mask) {
        return tk_weight_at(w, index);
    }
    return (w->mask[b >> 3] & (1u << (b & 7))) ? tk_weight_at(w, cursor->value++) : 0;
}

/* n int8 weights from value `start` of a layer (dense) or from the cursor (sparse) into buf. */
static void unpack_weights(const tk_weights *w, uint32_t start, int32_t n, tk_cursor *cursor,
                           int8_t *buf)
{
    int32_t i;
    if (w->bits == 4 && !w->mask && ((start | (uint32_t)n) & 1) == 0) { /* whole bytes */
        const uint8_t *bytes = w->values + start / 2;
        for (i = 0; i < n; i += 2, ++bytes) {
            buf[i] = (int8_t)(uint8_t)(*bytes << 4) >> 4; /* low nibble first */
            buf[i + 1] = (int8_t)*bytes >> 4;
        }
        return;
    }
    for (i = 0; i < n; ++i) {
        buf[i] = (int8_t)weight_next(w, start + (uint32_t)i, cursor);
    }
}

/* Row `row` of k int8 weights: the stored row itself (dense int8), or unpacked into buf. */
static const int8_t *weight_row(const tk_weights *w, int32_t row, int32_t k, tk_cursor *cursor,
                                int8_t *buf)
{
    if (w->bits == 8 && !w->mask) {
        return (const int8_t *)w->values + row * k;
    }
    unpack_weights(w, (uint32_t)(row * k), k, cursor, buf);
    return buf;
}

/* The cursor of the sparse row after the one that starts at `cursor` (k weights). */
static tk_cursor skip_row(const tk_weights *w, tk_cursor cursor, int32_t k)
{
    for (; w->mask && k > 0; --k, ++cursor.bit) {
        cursor.value += (w->mask[cursor.bit >> 3] >> (cursor.bit & 7)) & 1u;
    }
    return cursor;
}

/* ---- matrix products (convolutions, fully connected) -------------------------------------- */

/* Where the rows of a matrix product come from: `conv` NULL: rows of k contiguous values from
 * `input`; else the input windows of the convolution's output pixels. */
typedef struct {
    const tk_conv_params *conv;
    const int8_t *input;
    int32_t k;
} tk_rows;

/* Whether output pixels read a gathered window: a filter larger than 1 x 1, padding, or a
 * stride (the rows of a 1 x 1 convolution are the input pixels only when it keeps the size). */
static int conv_gathers(const tk_conv_params *p)
{
    return p->filter_h * p->filter_w > 1 || p->window.pad_top > 0 || p->window.pad_left > 0 ||
           p->output.h != p->input.h || p->output.w != p->input.w;
}

TK_INLINE void copy_bytes(int8_t *dst, const int8_t *src, int32_t n)
{
    for (; n >= 4; n -= 4, dst += 4, src += 4) {
        memcpy(dst, src, 4); /* word copies: a window row is often 4 or more bytes */
    }
    for (; n > 0; --n) {
        *dst++ = *src++;
    }
}

/* Copies the window of output pixel `pixel` into patch in weight order (KH, KW, C_in); pixels
 * in the padding get the input zero point. A window row wholly inside the image with
 * dilation_w 1 is one contiguous run of filter_w * C_in bytes. */
TK_NO_MEMSET static void gather_patch(const tk_conv_params *p, const int8_t *input, int32_t pixel,
                         int8_t *patch)
{
    const tk_dims *in = &p->input, *out = &p->output;
    const tk_window *win = &p->window;
    const int8_t zero_point = (int8_t)(-p->quant.input_offset);
    const int32_t ox = pixel % out->w, rest = pixel / out->w, oy = rest % out->h;
    const int32_t iy0 = oy * win->stride_h - win->pad_top, ix0 = ox * win->stride_w - win->pad_left;
    const int32_t c_in = in->c, run = p->filter_w * c_in, tap = win->dilation_w * c_in;
    const int whole = ix0 >= 0 && ix0 + (p->filter_w - 1) * win->dilation_w < in->w &&
                      win->dilation_w == 1;
    const int8_t *image = input + rest / out->h * in->h * in->w * c_in;
    int32_t ky, kx, c;
    for (ky = 0; ky < p->filter_h; ++ky, patch += run) {
        const int32_t iy = iy0 + ky * win->dilation_h;
        const int8_t *x = image + (iy * in->w + ix0) * c_in;
        if (iy < 0 || iy >= in->h) {
            for (c = 0; c < run; ++c) {
                patch[c] = zero_point;
            }
        } else if (whole) {
            copy_bytes(patch, x, run);
        } else {
            for (kx = 0; kx < p->filter_w; ++kx, x += tap) {
                const int32_t ix = ix0 + kx * win->dilation_w;
                for (c = 0; c < c_in; ++c) {
                    patch[kx * c_in + c] = ix >= 0 && ix < in->w ? x[c] : zero_point;
                }
            }
        }
    }
}

/* One matrix product: n_pixels rows times the weight rows, requantized per channel. */
typedef struct {
    const tk_rows *rows;
    int32_t n_pixels, n_out;
    const tk_weights *weights;
    const int32_t *bias;
    const tk_quant *quant;
} tk_gemm;

/* Output pixel `pixel` x channels (c, c + 1) from row x and weight rows w, w + k, requantized
 * with r[0..1]; `two_channels` 0: channel c only (w + k is read, its results dropped). */
static void gemm_one(const tk_gemm *g, const int8_t *x, const int8_t *w, const tk_rq *r,
                     int32_t c, int two_channels, int8_t *y)
{
    uint32_t acc[2];
    acc[0] = (uint32_t)g->bias[c];
    acc[1] = (uint32_t)g->bias[c + two_channels];
    dot_1x2_strided(x, w, g->rows->k, g->rows->k, acc);
    y[c] = tk_rq_apply(acc[0], &r[0]);
    if (two_channels) {
        y[c + 1] = tk_rq_apply(acc[1], &r[1]);
    }
}

/* n pixel pairs (rows x, x + k, x + 2k, ...) x channels (c, c + 1) (`two_channels` 0: channel
 * c only, w + k read and dropped), requantized with r[0..1]: the inner loop of every layer. */
TK_NOINLINE void gemm_pairs(const tk_gemm *g, const int8_t *x, const int8_t *w, const tk_rq *r,
                            int32_t c, int two_channels, int32_t n, int8_t *y)
{
    const int32_t k = g->rows->k, n_out = g->n_out;
    const uint32_t bias0 = (uint32_t)g->bias[c], bias1 = (uint32_t)g->bias[c + two_channels];
    const int right = rq_all_right(r, 2);
    uint32_t acc[4];
    for (y += c; n > 0; --n, x += 2 * k, y += 2 * n_out) {
        acc[0] = acc[2] = bias0;
        acc[1] = acc[3] = bias1;
#if defined(__ARM_FEATURE_DSP)
        dot_2x2_dsp_inline(x, w, k, k >> 2, acc);
        if (k & 3) {
            dot_2x2_from(x, w, k & ~3, k, acc);
        }
#else
        dot_2x2_from(x, w, 0, k, acc);
#endif
        if (!TK_RQ_ANY_SHIFT || right) {
            y[0] = rq_apply_right(acc[0], &r[0]);
            y[n_out] = rq_apply_right(acc[2], &r[0]);
            if (two_channels) {
                y[1] = rq_apply_right(acc[1], &r[1]);
                y[n_out + 1] = rq_apply_right(acc[3], &r[1]);
            }
        } else {
            y[0] = tk_rq_apply(acc[0], &r[0]);
            y[n_out] = tk_rq_apply(acc[2], &r[0]);
            if (two_channels) {
                y[1] = tk_rq_apply(acc[1], &r[1]);
                y[n_out + 1] = tk_rq_apply(acc[3], &r[1]);
            }
        }
    }
}

/* Packed or sparse weight rows are unpacked onto the stack: two whole rows when k is at most
 * TK_STACK_ROW (gemm_fast), else runs of TK_STACK_ROW values of two rows (gemm_chunked). */
#define TK_STACK_ROW 64

#if !defined(__ARM_FEATURE_DSP)
/* Without the DSP extension (a host), rows of up to TK_HOST_K values are widened to int16 once,
 * TK_HOST_PIXELS pixels at a time: dot products of int16 arrays accumulated in int32 are what
 * compilers turn into multiply-add vector instructions (SSE2 pmaddwd, NEON smlal). A sum of
 * TK_HOST_K products of two int8 values stays far from int32's range. */
#define TK_HOST_K 512
#define TK_HOST_PIXELS 8

/* y[0..n) = x[0..n) widened; y[n..n_padded) = 0. */
static void widen(const int8_t *x, int16_t *y, int32_t n, int32_t n_padded)
{
    int32_t i;
    for (i = 0; i < n; ++i) {
        y[i] = x[i];
    }
    for (; i < n_padded; ++i) {
        y[i] = 0;
    }
}

/* acc[0..3] += dot(xa, w0), dot(xa, w1), dot(xb, w0), dot(xb, w1): int16 rows of k values,
 * xb = xa + k, w1 = w0 + k, k <= TK_HOST_K. */
static void dot16_2x2(const int16_t *x, const int16_t *w, int32_t k, uint32_t *acc)
{
    int32_t a0 = 0, a1 = 0, b0 = 0, b1 = 0, i;
    for (i = 0; i < k; ++i) {
        a0 += x[i] * w[i];
        a1 += x[i] * w[k + i];
        b0 += x[k + i] * w[i];
        b1 += x[k + i] * w[k + i];
    }
    acc[0] += (uint32_t)a0, acc[1] += (uint32_t)a1, acc[2] += (uint32_t)b0, acc[3] += (uint32_t)b1;
}

/* nb pixel rows widened in x16 (a zero row after them when nb is odd) x channels (c, c + 1)
 * (`two` 0: channel c only) from int8 weight rows w, w + k; outputs from y. */
static void gemm_host(const tk_gemm *g, const int16_t *x16, int32_t nb, const int8_t *w,
                      const tk_rq *r, int32_t c, int two, int8_t *y)
{
    const int32_t k = g->rows->k, n_out = g->n_out;
    int16_t w16[2 * TK_HOST_K];
    uint32_t acc[4];
    int32_t i;
    widen(w, w16, two ? 2 * k : k, 2 * k);
    for (i = 0, y += c; i < nb; i += 2, x16 += 2 * k, y += 2 * n_out) {
        acc[0] = acc[2] = (uint32_t)g->bias[c];
        acc[1] = acc[3] = (uint32_t)g->bias[c + two];
        dot16_2x2(x16, w16, k, acc);
        y[0] = tk_rq_apply(acc[0], &r[0]);
        if (two) {
            y[1] = tk_rq_apply(acc[1], &r[1]);
        }
        if (i + 1 < nb) {
            y[n_out] = tk_rq_apply(acc[2], &r[0]);
        }
        if (i + 1 < nb && two) {
            y[n_out + 1] = tk_rq_apply(acc[3], &r[1]);
        }
    }
}
#define TK_HOST_ROWS(k) ((k) <= TK_HOST_K)
#else
#define TK_HOST_PIXELS 1
#define TK_HOST_ROWS(k) 0
#endif

/* Where the windows of the block of pixels from p0 are gathered, and how many (*nb, at most
 * `block`): the layer's scratch; or, when that holds one window (a layer at the arena's peak),
 * the end of the output, whose pixels are written after the block's: up to 8 windows of
 * TK_WINDOW_BYTES in all while they fit there. */
#define TK_WINDOW_BYTES 512
static int8_t *window_room(const tk_gemm *g, int32_t p0, int32_t block, int8_t *output,
                           int8_t *scratch, int32_t *nb)
{
    const int32_t k = g->rows->k, size = g->n_pixels * g->n_out, left = g->n_pixels - p0;
    int32_t m = TK_WINDOW_BYTES / k;
    m = m < 2 ? 2 : m > 8 ? 8 : m;
    while (TK_CONV_TAIL && block == 1 && m >= 2 && (p0 + m) * g->n_out > size - m * k) {
        --m; /* the block's outputs would reach the windows */
    }
    if (TK_CONV_TAIL && block == 1 && m >= 2) {
        *nb = m < left ? m : left;
        return output + size - m * k;
    }
    *nb = block < left ? block : left;
    return scratch;
}

/* The input rows of the block of pixels from p0 and their count (*nb, at most `block`): the
 * layer's input read in place, or the block's windows gathered (see window_room). */
static const int8_t *block_rows(const tk_gemm *g, int32_t p0, int32_t block, int gathers,
                                int8_t *output, int8_t *scratch, int32_t *nb)
{
    const int32_t k = g->rows->k;
    int8_t *room;
    int32_t i;
    if (!gathers) {
        *nb = g->n_pixels - p0 < block ? g->n_pixels - p0 : block;
        return g->rows->input + p0 * k;
    }
    room = window_room(g, p0, block, output, scratch, nb);
    for (i = 0; i < *nb; ++i) {
        gather_patch(g->rows->conv, g->rows->input, p0 + i, room + i * k);
    }
    return room;
}

/* The fast path. Pixels go in blocks (all of them when their rows are read in place; the
 * layer's `windows` gathered into scratch otherwise, see window_room); for each block, output channels two at a
 * time, their requantization constants derived and their weight rows unpacked (packed or
 * sparse weights, onto the stack) once per block; then two pixels at a time. */
static void gemm_fast(const tk_gemm *g, int8_t *output, int8_t *scratch, int gathers)
{
    const int32_t k = g->rows->k, n_out = g->n_out;
    const int32_t block = gathers           ? g->rows->conv->windows
                          : TK_HOST_ROWS(k) ? TK_HOST_PIXELS
                                            : g->n_pixels;
    const int in_place = !TK_CONV_PACKED || (g->weights->bits == 8 && !g->weights->mask);
    int8_t unpacked[2 * TK_STACK_ROW]; /* gemm_run: packed rows here are this short */
#if !defined(__ARM_FEATURE_DSP)
    int16_t x16[(TK_HOST_PIXELS + 1) * TK_HOST_K];
#endif
    tk_rq r[2];
    int32_t p0, c, nb;
    for (p0 = 0; p0 < g->n_pixels; p0 += nb) {
        const int8_t *x = block_rows(g, p0, block, gathers, output, scratch, &nb);
        tk_cursor cursor = {0, 0};
#if !defined(__ARM_FEATURE_DSP)
        if (TK_HOST_ROWS(k)) {
            widen(x, x16, nb * k, (nb + 1) / 2 * 2 * k);
        }
#endif
        for (c = 0; c < n_out; c += 2) {
            const int two = c + 1 < n_out;
            const int8_t *rows = (const int8_t *)g->weights->values + c * k;
            r[0] = tk_rq_channel(g->quant, c);
            r[1] = tk_rq_channel(g->quant, c + two);
            if (!in_place) {
                (void)weight_row(g->weights, c, k, &cursor, unpacked);
                if (two) {
                    (void)weight_row(g->weights, c + 1, k, &cursor, unpacked + k);
                }
                rows = unpacked;
            }
#if !defined(__ARM_FEATURE_DSP)
            if (TK_HOST_ROWS(k)) {
                gemm_host(g, x16, nb, rows, r, c, two, output + p0 * n_out);
                continue;
            }
#endif
            if (nb >= 2) {
                gemm_pairs(g, x, rows, r, c, two, nb >> 1, output + p0 * n_out);
            }
            if (nb & 1) {
                gemm_one(g, x + (nb - 1) * k, rows, r, c, two, output + (p0 + nb - 1) * n_out);
            }
        }
    }
}

/* Packed or sparse rows longer than TK_STACK_ROW: pixels in blocks of up to TK_BLOCK_PIXELS
 * (gathered windows, or rows read in place), two output channels at a time, their rows unpacked
 * TK_STACK_ROW values at a time onto the stack, each run used by every pixel of the block. */
#define TK_BLOCK_PIXELS 8
static void gemm_chunked(const tk_gemm *g, int8_t *output, int8_t *scratch, int gathers)
{
    const int32_t k = g->rows->k, n_out = g->n_out;
    const int32_t block = gathers ? g->rows->conv->windows : TK_BLOCK_PIXELS;
    int8_t run[2 * TK_STACK_ROW];
    uint32_t acc[TK_BLOCK_PIXELS][2];
    tk_rq r[2];
    int32_t p0, i, c, s, n, nb;
    for (p0 = 0; p0 < g->n_pixels; p0 += nb) {
        const int8_t *x = block_rows(g, p0, block, gathers, output, scratch, &nb);
        tk_cursor next = {0, 0};
        for (c = 0; c < n_out; c += 2) {
            const int two = c + 1 < n_out;
            tk_cursor row0 = next, row1 = skip_row(g->weights, next, k);
            next = two ? skip_row(g->weights, row1, k) : row1;
            r[0] = tk_rq_channel(g->quant, c);
            r[1] = tk_rq_channel(g->quant, c + two);
            for (i = 0; i < nb; ++i) {
                acc[i][0] = (uint32_t)g->bias[c], acc[i][1] = (uint32_t)g->bias[c + two];
            }
            for (s = 0; s < k; s += n) {
                n = k - s < TK_STACK_ROW ? k - s : TK_STACK_ROW;
                unpack_weights(g->weights, (uint32_t)(c * k + s), n, &row0, run);
                unpack_weights(g->weights, (uint32_t)((c + two) * k + s), n, &row1,
                               run + TK_STACK_ROW);
                for (i = 0; i < nb; ++i) {
                    dot_1x2_strided(x + i * k + s, run, TK_STACK_ROW, n, acc[i]);
                }
            }
            for (i = 0; i < nb; ++i) {
                output[(p0 + i) * n_out + c] = tk_rq_apply(acc[i][0], &r[0]);
                if (two) {
                    output[(p0 + i) * n_out + c + 1] = tk_rq_apply(acc[i][1], &r[1]);
                }
            }
        }
    }
}

/* Value i of the input row of output pixel `pixel` (the zero point in the padding). */
TK_NOINLINE int32_t input_value(const tk_rows *rows, int32_t pixel, int32_t i)
{
    const tk_conv_params *p = rows->conv;
    int32_t c_in, tap, ox, rest, iy, ix;
    if (p == 0) {
        return rows->input[pixel * rows->k + i];
    }
    c_in = p->input.c, tap = i / c_in, ox = pixel % p->output.w, rest = pixel / p->output.w;
    iy = rest % p->output.h * p->window.stride_h - p->window.pad_top +
         tap / p->filter_w * p->window.dilation_h;
    ix = ox * p->window.stride_w - p->window.pad_left + tap % p->filter_w * p->window.dilation_w;
    if (iy < 0 || iy >= p->input.h || ix < 0 || ix >= p->input.w) {
        return -p->quant.input_offset;
    }
    return rows->input[((rest / p->output.h * p->input.h + iy) * p->input.w + ix) * c_in +
                       i % c_in];
}

/* The generic kernel: one output at a time, every weight through weight_next, padded taps
 * read as the zero point; no scratch. */
static void gemm_generic(const tk_gemm *g, int8_t *output)
{
    const int32_t k = g->rows->k;
    int32_t pixel, c, i;
    for (pixel = 0; pixel < g->n_pixels; ++pixel) {
        tk_cursor cursor = {0, 0};
        for (c = 0; c < g->n_out; ++c) {
            uint32_t acc = (uint32_t)g->bias[c];
            const tk_rq r = tk_rq_channel(g->quant, c);
            for (i = 0; i < k; ++i) {
                const int32_t w = weight_next(g->weights, (uint32_t)(c * k + i), &cursor);
                acc += (uint32_t)(input_value(g->rows, pixel, i) * w);
            }
            output[pixel * g->n_out + c] = tk_rq_apply(acc, &r);
        }
    }
}

/* Runs a matrix product on its fast path when the scratch it needs (gathered windows) was
 * given; packed or sparse rows longer than TK_STACK_ROW are unpacked in runs on the stack. */
static void gemm_run(const tk_gemm *g, int gathers, int8_t *output, int8_t *scratch)
{
    const int in_place = !TK_CONV_PACKED || (g->weights->bits == 8 && !g->weights->mask);
    if (TK_CONV_GENERIC && gathers && scratch == 0) {
        gemm_generic(g, output);
    } else if (!in_place && g->rows->k > TK_STACK_ROW) {
        gemm_chunked(g, output, scratch, gathers);
    } else {
        gemm_fast(g, output, scratch, gathers);
    }
}

void tk_conv2d_s8(const tk_conv_params *p, const int8_t *input, int8_t *output)
{
    const int gathers = conv_gathers(p);
    const tk_rows rows = {gathers ? p : 0, input, p->filter_h * p->filter_w * p->input.c};
    const tk_gemm g = {&rows,     p->output.n * p->output.h * p->output.w, p->output.c,
                       &p->weights, p->bias,                                &p->quant};
    gemm_run(&g, gathers, output, p->scratch);
}

void tk_fully_connected_s8(const tk_fully_connected_params *p, const int8_t *input,
                           int8_t *output)
{
    const tk_rows rows = {0, input, p->input_size};
    const tk_gemm g = {&rows, p->rows, p->output_size, &p->weights, p->bias, &p->quant};
    gemm_run(&g, 0, output, 0);
}

