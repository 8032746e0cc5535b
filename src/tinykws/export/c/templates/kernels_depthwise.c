/*
 * tinykws DEPTHWISE_CONV_2D kernel (see kernels.h for the arithmetic, layouts and argument
 * ranges; kernels_conv.c for the folded bias and the requantization).
 *
 * Written from tinykws's integer specification (tinykws/ir/kernels.py); the tests compare every
 * path with the specification for equality.
 */
#include "kernels_internal.h"

/* ---- depthwise --------------------------------------------------------------------------- */

/* Channels are computed four at a time; the group's weights are first copied (unpacked when
 * packed) into a local table of one word per tap (four int8 lanes), so weights need no
 * scratch and every tap's weights sit at a fixed offset. Filters of more taps than
 * TK_GROUP_TAPS run the generic kernel. */
#define TK_GROUP_TAPS 25

#if defined(__ARM_FEATURE_DSP)
/* a0..a3 += x * w lane by lane, for the four int8 lanes of words xv and wv. */
#define TK_MAC4(xv, wv)                                                             \
    do {                                                                           \
        const uint32_t xe = __sxtb16(xv), xo = sxtb16_odd(xv), we = __sxtb16(wv);  \
        const uint32_t wo = sxtb16_odd(wv);                                        \
        a0 = (uint32_t)__smlabb((int32_t)xe, (int32_t)we, (int32_t)a0);            \
        a1 = (uint32_t)__smlabb((int32_t)xo, (int32_t)wo, (int32_t)a1);            \
        a2 = (uint32_t)__smlatt((int32_t)xe, (int32_t)we, (int32_t)a2);            \
        a3 = (uint32_t)__smlatt((int32_t)xo, (int32_t)wo, (int32_t)a3);            \
    } while (0)

#if TK_WIDE_ASM
/* One tap of the 3 x 3 kernel: activation word at [x + xoff], the tap's weights at [w + woff]
 * already split into lanes 0, 2 and lanes 1, 3 (16 bits each). */
#define TK_TAP(xoff, woff)                      \
    "ldr    %[u], [%[x]" xoff "]\n\t"           \
    "ldrd   %[v], %[f], [%[w], #" woff "]\n\t"  \
    "sxtb16 %[e], %[u]\n\t"                     \
    "smlabb %[a0], %[e], %[v], %[a0]\n\t"       \
    "smlatt %[a2], %[e], %[v], %[a2]\n\t"       \
    "sxtb16 %[e], %[u], ror #8\n\t"             \
    "smlabb %[a1], %[e], %[f], %[a1]\n\t"       \
    "smlatt %[a3], %[e], %[f], %[a3]\n\t"
/* A row of three taps c1 bytes apart in the input. */
#define TK_ROW3(w0, w1, w2) TK_TAP("", w0) TK_TAP(", %[c1]", w1) TK_TAP(", %[c2]", w2)
/* acc[0..3] = t[18..21] + a 3 x 3 window of four channels: taps c1 bytes apart along a row of
 * the input, rows `row` bytes apart; t: the weights, two words per tap (lanes split as
 * tk_taps3 says), then four biases. 8 instructions per 4 MACs. */
TK_INLINE void depthwise_3x3_dsp(const int8_t *x, const uint32_t *t, int32_t c1, int32_t row,
                                 uint32_t *acc)
{
    uint32_t a0, a1, a2, a3, u, v, e, f;
    const int32_t c2 = 2 * c1;
    __asm__ volatile("ldrd   %[a0], %[a1], [%[w], #72]\n\t"
                     "ldrd   %[a2], %[a3], [%[w], #80]\n\t"
                     TK_ROW3("0", "8", "16") "add    %[x], %[x], %[row]\n\t"
                     TK_ROW3("24", "32", "40") "add    %[x], %[x], %[row]\n\t"
                     TK_ROW3("48", "56", "64")
                     : [a0] "=&r"(a0), [a1] "=&r"(a1), [a2] "=&r"(a2), [a3] "=&r"(a3),
                       [x] "+r"(x), [u] "=&r"(u), [v] "=&r"(v), [e] "=&r"(e), [f] "=&r"(f)
                     : [w] "r"(t), [c1] "r"(c1), [c2] "r"(c2), [row] "r"(row)
                     : "memory");
    acc[0] = a0, acc[1] = a1, acc[2] = a2, acc[3] = a3;
}
#endif
#endif

/* How far the windows of an axis overhang the input (size >= 3): runs of output positions
 * [start[i], start[i + 1]) whose window's first tap lies shift[i] before the first tap of the
 * window read instead (negative: before the input, positive: past its end); the overhang
 * grows with the position, by at most 2 each way (pads of at most 2), so at most 5 runs. */
typedef struct {
    int32_t n, start[6], shift[5];
} tk_runs;

/* Where one group of four channels is computed: its weights (one word per tap), bias and
 * requantization constants (`right`: all four of rq_apply_right's kind; `full`: the clamp is
 * int8's whole range, a saturation). */
typedef struct {
    uint32_t w[TK_GROUP_TAPS];
    const int32_t *bias;
    const tk_rq *r;
    int right, full;
} tk_group;

/* rq_apply_right when the clamp is [-128, 127] (low = -128 - offset, high = 127 - offset):
 * the zero point added, then one saturation. */
TK_INLINE int8_t rq_apply_full(uint32_t acc, const tk_rq *r, int32_t offset)
{
    const int32_t x = (int32_t)acc;
    const int64_t v = r->add[(uint32_t)x >> 31] + (int64_t)x * r->multiplier;
    const int32_t q = ((int32_t)(v >> 32) >> r->right1) + offset;
#if defined(__ARM_FEATURE_SAT)
    return (int8_t)__ssat(q, 8);
#else
    return (int8_t)(q < -128 ? -128 : q > 127 ? 127 : q);
#endif
}

/* Requantizes the accumulators of a group (constants r, kinds `full` and `right` of tk_group)
 * into y[0..3]. */
TK_INLINE void store4(const uint32_t *acc, const tk_rq *r, int full, int right, int8_t *y)
{
    if (TK_DW_FULL && (!TK_DW_CLAMP || full)) { /* one zero point for the four */
        const int32_t offset = r[0].offset;
        y[0] = rq_apply_full(acc[0], &r[0], offset);
        y[1] = rq_apply_full(acc[1], &r[1], offset);
        y[2] = rq_apply_full(acc[2], &r[2], offset);
        y[3] = rq_apply_full(acc[3], &r[3], offset);
    } else if (!TK_RQ_ANY_SHIFT || right) {
        y[0] = rq_apply_right(acc[0], &r[0]);
        y[1] = rq_apply_right(acc[1], &r[1]);
        y[2] = rq_apply_right(acc[2], &r[2]);
        y[3] = rq_apply_right(acc[3], &r[3]);
    } else {
        y[0] = tk_rq_apply(acc[0], &r[0]);
        y[1] = tk_rq_apply(acc[1], &r[1]);
        y[2] = tk_rq_apply(acc[2], &r[2]);
        y[3] = tk_rq_apply(acc[3], &r[3]);
    }
}

/* Requantizes the accumulators of a group into y[0..3]. */
TK_INLINE void depthwise_store_inline(const uint32_t *acc, const tk_group *g, int8_t *y)
{
    store4(acc, g->r, g->full, g->right, y);
}

#if TK_WIDE_ASM
/* The weights and bias of a 3 x 3 window read at a shifted place: a window that overhangs the
 * image by dy rows (dx columns) is read dy rows lower (dx columns further right) inside it;
 * its weights move with it, the taps left outside get weight 0 and their zero-point product
 * joins the bias. A window inside the image: dy = dx = 0, the weights as they are. */
typedef struct {
    uint32_t w[18];  /* per tap: its lanes 0 and 2, then 1 and 3, as int16 halves (SXTB16) */
    int32_t bias[4]; /* at byte 72: depthwise_3x3_dsp reads it there */
} tk_taps3;

TK_NO_MEMSET static void shift_taps(const tk_group *g, int32_t dy, int32_t dx,
                                    int32_t zero_point, tk_taps3 *t)
{
    uint32_t even = 0, odd = 0; /* lanes 0, 2 and 1, 3 of the weights left outside, summed */
    int32_t ky, kx, j;
    for (j = 0; j < 18; ++j) {
        t->w[j] = 0;
    }
    for (ky = 0; ky < 3; ++ky) {
        for (kx = 0; kx < 3; ++kx) {
            const int32_t ry = ky + dy, rx = kx + dx;
            const uint32_t w = g->w[ky * 3 + kx];
            if (ry >= 0 && ry < 3 && rx >= 0 && rx < 3) {
                t->w[2 * (ry * 3 + rx)] = __sxtb16(w);
                t->w[2 * (ry * 3 + rx) + 1] = sxtb16_odd(w);
            } else { /* at most 9 weights of [-127, 127]: 16-bit halves hold the sums */
                even = __sxtab16(even, w);
                odd = __sxtab16(odd, w >> 8);
            }
        }
    }
    t->bias[0] = (int32_t)((uint32_t)g->bias[0] + (uint32_t)(zero_point * (int16_t)even));
    t->bias[1] = (int32_t)((uint32_t)g->bias[1] + (uint32_t)(zero_point * (int16_t)odd));
    t->bias[2] = (int32_t)((uint32_t)g->bias[2] + (uint32_t)(zero_point * ((int32_t)even >> 16)));
    t->bias[3] = (int32_t)((uint32_t)g->bias[3] + (uint32_t)(zero_point * ((int32_t)odd >> 16)));
}

/* A block of output pixels, `rows` rows of `n`, of 3 x 3 windows read inside the image: the
 * first window starts at x, its taps steps[0] bytes apart along a row and its rows steps[1]
 * bytes apart; the next window of a row steps[2] bytes further, the next row's first window
 * steps[4] bytes further; outputs from y, steps[3] bytes apart along a row, steps[5] from one
 * row to the next. */
TK_NOINLINE void depthwise_block_3x3(const tk_group *g, const tk_taps3 *t, const int8_t *x,
                                     const int32_t *steps, int32_t rows, int32_t n, int8_t *y)
{
    const int32_t c1 = steps[0], row = steps[1];
    const tk_rq *r = g->r; /* read once: the loop keeps them where it can */
    const int full = g->full, right = g->right;
    uint32_t acc[4];
    int32_t i;
    for (; rows > 0; --rows, x += steps[4], y += steps[5]) {
        const int8_t *xi = x;
        int8_t *yi = y;
        for (i = n; i > 0; --i, xi += steps[2], yi += steps[3]) {
            depthwise_3x3_dsp(xi, t->w, c1, row, acc);
            store4(acc, r, full, right, yi);
        }
    }
}

static void overhang_runs(int32_t stride, int32_t pad, int32_t size, int32_t n_out, tk_runs *r)
{
    int32_t o;
    r->n = 0;
    for (o = 0; o < n_out; ++o) {
        const int32_t i = o * stride - pad;
        const int32_t shift = i < 0 ? i : i > size - 3 ? i - (size - 3) : 0;
        if (r->n == 0 || shift != r->shift[r->n - 1]) {
            r->start[r->n] = o, r->shift[r->n] = shift, ++r->n;
        }
    }
    r->start[r->n] = n_out;
}

/* Whether a layer's overhangs stay within 2 pixels (at most 5 runs along each axis). */
static int overhang_fits(const tk_depthwise_params *p)
{
    const tk_window *win = &p->window;
    const int32_t bottom = (p->output.h - 1) * win->stride_h - win->pad_top - (p->input.h - 3);
    const int32_t right = (p->output.w - 1) * win->stride_w - win->pad_left - (p->input.w - 3);
    return win->pad_top <= 2 && win->pad_left <= 2 && bottom <= 2 && right <= 2;
}

/* Whether a layer takes the 3 x 3 path (3 x 3 filter, dilation 1, input at least 3 x 3,
 * overhangs within 2 pixels); if so, its runs of equal overhang: rows, then columns. */
static int runs_3x3(const tk_depthwise_params *p, tk_runs *runs)
{
    const tk_window *win = &p->window;
    if (!TK_DW_3X3 || (TK_DW_WINDOW && !(p->filter_h == 3 && p->filter_w == 3 &&
                                         win->dilation_h == 1 && win->dilation_w == 1 &&
                                         p->input.h >= 3 && p->input.w >= 3 && overhang_fits(p)))) {
        return 0;
    }
    overhang_runs(win->stride_h, win->pad_top, p->input.h, p->output.h, &runs[0]);
    overhang_runs(win->stride_w, win->pad_left, p->input.w, p->output.w, &runs[1]);
    return 1;
}

/* Channels [0, 4) of a group (image and out start at its first channel), 3 x 3 filter,
 * dilation 1, input at least 3 x 3, overhangs within 2 pixels: output pixels in blocks of equal
 * overhang (rows x columns; the inside block is most of them), each block with its shifted
 * weights in one call. */
static void depthwise_group_3x3(const tk_depthwise_params *p, const tk_group *g,
                                const tk_runs *rows, const tk_runs *cols, const int8_t *image,
                                int8_t *out)
{
    const tk_window *win = &p->window;
    const int32_t c = p->input.c, w = p->input.w, ow = p->output.w, oc = p->output.c;
    const int32_t steps[6] = {c, w * c, win->stride_w * c, oc, win->stride_h * w * c, ow * oc};
    const int32_t column_steps[6] = {c, w * c, win->stride_h * w * c, ow * oc, 0, 0};
    int32_t i, j;
    tk_taps3 t;
    for (i = 0; i < rows->n; ++i) {
        const int32_t y0 = rows->start[i], dy = rows->shift[i];
        const int32_t iy = y0 * win->stride_h - win->pad_top - dy;
        for (j = 0; j < cols->n; ++j) {
            const int32_t x0 = cols->start[j], dx = cols->shift[j];
            const int32_t ix = x0 * win->stride_w - win->pad_left - dx;
            const int32_t n_rows = rows->start[i + 1] - y0, n_cols = cols->start[j + 1] - x0;
            shift_taps(g, dy, dx, -p->quant.input_offset, &t);
            if (n_cols == 1) { /* a column: one run down it */
                depthwise_block_3x3(g, &t, image + (iy * w + ix) * c, column_steps, 1, n_rows,
                                    out + (y0 * ow + x0) * oc);
                continue;
            }
            depthwise_block_3x3(g, &t, image + (iy * w + ix) * c, steps, n_rows, n_cols,
                                out + (y0 * ow + x0) * oc);
        }
    }
}
#endif

/* acc[0..3] = bias + the window at x (its first tap, at input position (iy, ix)) of one output
 * pixel; taps outside the image read the zero point. */
static void depthwise_window(const tk_depthwise_params *p, const tk_group *g, const int8_t *x,
                             int32_t iy, int32_t ix, uint32_t *acc)
{
    const int8_t zero[4] = {(int8_t)-p->quant.input_offset, (int8_t)-p->quant.input_offset,
                            (int8_t)-p->quant.input_offset, (int8_t)-p->quant.input_offset};
    const int32_t dy = p->window.dilation_h, dx = p->window.dilation_w, c = p->input.c;
    uint32_t a0 = (uint32_t)g->bias[0], a1 = (uint32_t)g->bias[1];
    uint32_t a2 = (uint32_t)g->bias[2], a3 = (uint32_t)g->bias[3];
    const int inside = iy >= 0 && iy + (p->filter_h - 1) * dy < p->input.h && ix >= 0 &&
                       ix + (p->filter_w - 1) * dx < p->input.w;
    int32_t ky, kx;
    for (ky = 0; ky < p->filter_h; ++ky) {
        const int row_in = inside || (iy + ky * dy >= 0 && iy + ky * dy < p->input.h);
        for (kx = 0; kx < p->filter_w; ++kx) {
            const int in = inside || (row_in && ix + kx * dx >= 0 && ix + kx * dx < p->input.w);
            const int8_t *xp = in ? x + (ky * dy * p->input.w + kx * dx) * c : zero;
#if defined(__ARM_FEATURE_DSP)
            const uint32_t xv = load4(xp), wv = g->w[ky * p->filter_w + kx];
            TK_MAC4(xv, wv);
#else
            const int8_t *wp = (const int8_t *)&g->w[ky * p->filter_w + kx];
            a0 += (uint32_t)(xp[0] * wp[0]), a1 += (uint32_t)(xp[1] * wp[1]);
            a2 += (uint32_t)(xp[2] * wp[2]), a3 += (uint32_t)(xp[3] * wp[3]);
#endif
        }
    }
    acc[0] = a0, acc[1] = a1, acc[2] = a2, acc[3] = a3;
}

/* Channels [0, 4) of a group (image and out start at its first channel), any filter of at
 * most TK_GROUP_TAPS taps: one output pixel at a time. */
static void depthwise_group_any(const tk_depthwise_params *p, const tk_group *g,
                                const int8_t *image, int8_t *out)
{
    const tk_window *win = &p->window;
    int32_t oy, ox;
    uint32_t acc[4];
    for (oy = 0; oy < p->output.h; ++oy) {
        const int32_t iy = oy * win->stride_h - win->pad_top;
        for (ox = 0; ox < p->output.w; ++ox) {
            const int32_t ix = ox * win->stride_w - win->pad_left;
            depthwise_window(p, g, image + (iy * p->input.w + ix) * p->input.c, iy, ix, acc);
            depthwise_store_inline(acc, g, out + (oy * p->output.w + ox) * p->output.c);
        }
    }
}

/* The group's weights, one word per tap (channels c .. c + 3 in its lanes). */
static void group_weights(const tk_depthwise_params *p, int32_t c, uint32_t *w)
{
    const int32_t taps = p->filter_h * p->filter_w, n = p->output.c;
    int8_t lanes[4];
    int32_t t, j;
    for (t = 0; t < taps; ++t) {
        const uint32_t at = (uint32_t)(t * n + c);
        if (!TK_DW_PACKED || p->weights.bits == 8) {
            w[t] = load4((const int8_t *)p->weights.values + at);
            continue;
        }
        for (j = 0; j < 4; ++j) {
            lanes[j] = (int8_t)tk_weight_at(&p->weights, at + (uint32_t)j);
        }
        memcpy(&w[t], lanes, 4); /* in memory order, as load4 reads int8 weights */
    }
}

/* Channels [c, c + 4) of every output pixel of one image (depth multiplier 1): weights and
 * requantization constants prepared once; 3 x 3 filters (dilation 1, input at least 3 x 3)
 * through depthwise_group_3x3. */
static void depthwise_channels(const tk_depthwise_params *p, const tk_runs *runs,
                               const int8_t *image, int32_t c, int8_t *out)
{
    const tk_quant *q = &p->quant;
    int32_t j;
    tk_rq r[4];
    tk_group g;
    for (j = 0; j < 4; ++j) {
        r[j] = tk_rq_channel(q, c + j);
    }
    group_weights(p, c, g.w);
    g.bias = p->bias + c, g.r = r, g.right = rq_all_right(r, 4);
    g.full = g.right && q->activation_min == -128 && q->activation_max == 127;
#if TK_WIDE_ASM
    if (TK_DW_3X3 && (!TK_DW_WINDOW || runs)) { /* runs: given whenever the path applies */
        depthwise_group_3x3(p, &g, &runs[0], &runs[1], image + c, out + c);
        return;
    }
#else
    (void)runs;
#endif
    depthwise_group_any(p, &g, image + c, out + c);
}

/* Output channel c of output pixel (oy, ox), any depth multiplier, weights read where stored;
 * taps outside the image read the zero point. */
static int8_t depthwise_one(const tk_depthwise_params *p, const int8_t *image, int32_t oy,
                            int32_t ox, int32_t c)
{
    const tk_window *win = &p->window;
    const int32_t iy0 = oy * win->stride_h - win->pad_top, ix0 = ox * win->stride_w - win->pad_left;
    uint32_t acc = (uint32_t)p->bias[c];
    int32_t ky, kx;
    tk_rq r;
    for (ky = 0; ky < p->filter_h; ++ky) {
        const int32_t iy = iy0 + ky * win->dilation_h;
        for (kx = 0; kx < p->filter_w; ++kx) {
            const int32_t ix = ix0 + kx * win->dilation_w;
            const uint32_t tap = (uint32_t)((ky * p->filter_w + kx) * p->output.c + c);
            int32_t x = -p->quant.input_offset;
            if (iy >= 0 && iy < p->input.h && ix >= 0 && ix < p->input.w) {
                x = image[(iy * p->input.w + ix) * p->input.c + c / p->depth_multiplier];
            }
            acc += (uint32_t)(x * tk_weight_at(&p->weights, tap));
        }
    }
    r = tk_rq_channel(&p->quant, c);
    return tk_rq_apply(acc, &r);
}

#if !defined(__ARM_FEATURE_DSP)
/* Without the DSP extension (a host): int8 weights, depth multiplier 1, channels [c0, c0 + n)
 * (n <= TK_HOST_RUN) of every output pixel of one image, as loops over runs of channels that
 * compilers vectorise; taps outside the image read the zero point. */
#define TK_HOST_RUN 32
static void depthwise_run_host(const tk_depthwise_params *p, const int8_t *image, int32_t c0,
                               int32_t n, int8_t *out)
{
    const tk_window *win = &p->window;
    const int8_t *weights = (const int8_t *)p->weights.values + c0;
    const int32_t zero_point = -p->quant.input_offset, oc = p->output.c;
    uint32_t acc[TK_HOST_RUN];
    tk_rq r[TK_HOST_RUN];
    int32_t oy, ox, ky, kx, j, right;
    int8_t *y;
    for (j = 0; j < n; ++j) {
        r[j] = tk_rq_channel(&p->quant, c0 + j);
    }
    right = rq_all_right(r, n);
    for (oy = 0; oy < p->output.h; ++oy) {
        for (ox = 0; ox < p->output.w; ++ox) {
            for (j = 0; j < n; ++j) {
                acc[j] = (uint32_t)p->bias[c0 + j];
            }
            for (ky = 0; ky < p->filter_h; ++ky) {
                const int32_t iy = oy * win->stride_h - win->pad_top + ky * win->dilation_h;
                for (kx = 0; kx < p->filter_w; ++kx) {
                    const int32_t ix = ox * win->stride_w - win->pad_left + kx * win->dilation_w;
                    const int8_t *w = weights + (ky * p->filter_w + kx) * oc;
                    const int8_t *x = image + (iy * p->input.w + ix) * p->input.c + c0;
                    if (iy >= 0 && iy < p->input.h && ix >= 0 && ix < p->input.w) {
                        for (j = 0; j < n; ++j) {
                            acc[j] += (uint32_t)(x[j] * w[j]);
                        }
                    } else {
                        for (j = 0; j < n; ++j) {
                            acc[j] += (uint32_t)(zero_point * w[j]);
                        }
                    }
                }
            }
            y = out + (oy * p->output.w + ox) * oc + c0;
            for (j = 0; right && j < n; ++j) {
                y[j] = rq_apply_right(acc[j], &r[j]);
            }
            for (j = 0; !right && j < n; ++j) {
                y[j] = tk_rq_apply(acc[j], &r[j]);
            }
        }
    }
}
#endif

void tk_depthwise_conv2d_s8(const tk_depthwise_params *p, const int8_t *input, int8_t *output)
{
    const tk_dims *in = &p->input, *out = &p->output;
    const int grouped = !TK_DW_GENERIC ||
                        (p->depth_multiplier == 1 && p->filter_h * p->filter_w <= TK_GROUP_TAPS);
    const int32_t fast = grouped ? out->c / 4 * 4 : 0;
    tk_runs runs[2];
    int32_t b, oy, ox, c;
#if TK_WIDE_ASM
    const int three = fast > 0 && runs_3x3(p, runs);
#else
    const int three = 0;
#endif
    for (b = 0; b < out->n; ++b) {
        const int8_t *image = input + b * in->h * in->w * in->c;
        int8_t *out_image = output + b * out->h * out->w * out->c;
#if !defined(__ARM_FEATURE_DSP)
        if (p->depth_multiplier == 1 && p->weights.bits == 8) {
            for (c = 0; c < out->c; c += TK_HOST_RUN) {
                const int32_t n = out->c - c < TK_HOST_RUN ? out->c - c : TK_HOST_RUN;
                depthwise_run_host(p, image, c, n, out_image);
            }
            continue;
        }
#endif
        for (c = 0; c < fast; c += 4) {
            depthwise_channels(p, three ? runs : 0, image, c, out_image);
        }
        for (oy = 0; TK_DW_GENERIC && oy < out->h && fast < out->c; ++oy) {
            for (ox = 0; ox < out->w; ++ox) {
                for (c = fast; c < out->c; ++c) {
                    out_image[(oy * out->w + ox) * out->c + c] = depthwise_one(p, image, oy, ox, c);
                }
            }
        }
    }
}
