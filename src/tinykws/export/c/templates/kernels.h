/*
 * tinykws integer kernels: int8 activations, int8 or packed int4 / int2 weights.
 *
 * Every kernel reproduces one op of tinykws's integer specification (tinykws.ir.interpret),
 * which is TFLite Micro's reference int8 arithmetic, bit for bit:
 *   - activations are int8, asymmetric, one scale and zero point per tensor;
 *   - weights are symmetric (zero point 0) with one scale per output channel; values lie in
 *     [-127, 127] (8 bits), [-7, 7] (3-4 bits, stored as 4) or [-1, 1] (2 bits);
 *   - biases are int32 at scale s_in * s_w[c];
 *   - accumulators are int32; products are summed modulo 2^32 (in uint32_t, where overflow is
 *     defined), which is what TFLite's int32 sums give on two's-complement targets;
 *   - requantization multiplies by a Q31 multiplier and a power-of-two shift computed when the
 *     graph was built (TFLite's QuantizeMultiplier), with TFLite's double rounding:
 *     SaturatingRoundingDoublingHighMul rounds ties toward +infinity, RoundingDivideByPOT
 *     rounds ties away from zero.
 *
 * Layouts: activations NHWC; CONV_2D weights OHWI (C_out, KH, KW, C_in); DEPTHWISE_CONV_2D
 * weights (KH, KW, C_out); FULLY_CONNECTED weights (C_out, C_in). Tensors are contiguous.
 *
 * Packed weights: value i of a tensor (in the layout above) lives in byte i * bits / 8, at bit
 * (i * bits) % 8 counting from the least significant bit, as two's complement of `bits` bits:
 * two 4-bit values per byte (first in the low nibble), four 2-bit values per byte.
 *
 * Sparse weights (CONV_2D and FULLY_CONNECTED): `mask` has one bit per weight of the dense
 * (C_out, K) matrix, K = KH * KW * C_in (or C_in), row-major, bit j of byte j / 8 counting from
 * the least significant bit; set bits mark the non-zero weights, whose values are stored in
 * order, packed at `bits`. The kernels visit the rows in order, so a running count of set bits
 * finds each value; no per-row index is stored.
 *
 * Folded bias: the `bias` of CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED holds
 * bias[c] + input_offset * (sum of the weights of output channel c), wrapped to int32 (computed
 * when the C is generated), so the kernels accumulate bias + sum(x * w) and a tap in the padding
 * reads the input zero point.
 *
 * No kernel allocates memory or uses floating point. A CONV_2D with a filter larger than 1 x 1,
 * padding or a stride gathers its input windows (K values each, K = KH * KW * C_in) into the
 * scratch memory of its `scratch` field, `windows` at a time (windows * K bytes; the generator
 * gives each layer as many as fit under the arena's peak, up to 8); without it (NULL) it runs
 * its generic kernel, with the same results, slower. No other kernel needs scratch; packed and
 * sparse weights are unpacked on the stack, 64 values of two rows at a time. Stack: under 800
 * bytes per kernel call. A convolution given one window of scratch (a layer at the arena's
 * peak) gathers up to 8 at a time at the end of its output while the pixels written there come
 * later.
 * Input, output and scratch buffers must not overlap.
 */
#ifndef TINYKWS_KERNELS_H
#define TINYKWS_KERNELS_H

#include <stdint.h>

/** Dimensions of an NHWC tensor; every entry >= 1. */
typedef struct {
    int32_t n, h, w, c;
} tk_dims;

/** Sliding window geometry: strides and dilations >= 1; pads >= 0 (pixels added at the
 *  top and left; the bottom and right padding follows from the output size). */
typedef struct {
    int32_t stride_h, stride_w, dilation_h, dilation_w, pad_top, pad_left;
} tk_window;

/** Constant weights of one layer.
 *  values: dense: every weight, packed at `bits`; sparse: the non-zero weights in order.
 *  bits:   8, 4 or 2 bits per stored value.
 *  mask:   NULL for dense weights; else one bit per weight (see the file comment). */
typedef struct {
    const uint8_t *values;
    int32_t bits;
    const uint8_t *mask;
} tk_weights;

/** Per-output-channel requantization of an int32 accumulator to int8.
 *  multiplier[c]: Q31 significand in [2^30, 2^31) (or 0);  shift[c]: in [-31, 30], > 0 shifts
 *  left before the multiply, < 0 shifts right (rounding half away from zero) after it.
 *  input_offset: minus the input zero point, in [-127, 128].
 *  output_offset: the output zero point, in [-128, 127].
 *  activation_min <= activation_max: the fused activation's clamp, within [-128, 127]. */
typedef struct {
    const int32_t *multiplier;
    const int8_t *shift;
    int32_t input_offset, output_offset, activation_min, activation_max;
} tk_quant;

/** CONV_2D: input (N, H, W, C_in) int8 -> output (N, OH, OW, C_out) int8.
 *  weights (C_out, filter_h, filter_w, C_in); bias int32 (C_out,) at scale s_in * s_w[c],
 *  folded (see the file comment). */
typedef struct {
    tk_dims input, output;
    int32_t filter_h, filter_w;
    tk_window window;
    tk_weights weights;
    const int32_t *bias;
    tk_quant quant;
    int8_t *scratch; /* windows * K bytes (see the file comment); NULL: the generic kernel */
    int32_t windows; /* windows gathered at a time into scratch, >= 1 */
} tk_conv_params;

/** DEPTHWISE_CONV_2D: output channel c reads input channel c / depth_multiplier;
 *  weights (filter_h, filter_w, C_out), dense; bias int32 (C_out,). */
typedef struct {
    tk_dims input, output;
    int32_t filter_h, filter_w, depth_multiplier;
    tk_window window;
    tk_weights weights;
    const int32_t *bias;
    tk_quant quant;
} tk_depthwise_params;

/** FULLY_CONNECTED: input read as `rows` rows of input_size values -> (rows, output_size).
 *  weights (output_size, input_size); bias int32 (output_size,). */
typedef struct {
    int32_t rows, input_size, output_size;
    tk_weights weights;
    const int32_t *bias;
    tk_quant quant;
} tk_fully_connected_params;

/** MAX_POOL_2D / AVERAGE_POOL_2D: (N, H, W, C) -> (N, OH, OW, C), same scale and zero point;
 *  no window lies wholly in the padding. */
typedef struct {
    tk_dims input, output;
    int32_t filter_h, filter_w;
    tk_window window;
    int32_t activation_min, activation_max;
} tk_pool_params;

/** MEAN over H and W: (N, H, W, C) -> (N, 1, 1, C). multiplier and shift include 1 / (H * W).
 *  A MEAN over W only is this kernel on (N * H, 1, W, C): the same memory, image by image. */
typedef struct {
    tk_dims input;
    int32_t input_offset, output_offset, multiplier, shift;
} tk_mean_params;

/** ADD with broadcasting: output shape (4-D, leading 1s); a_stride / b_stride: element strides
 *  of each input along each output axis (0 where the input is broadcast).
 *  a_offset, b_offset: minus the input zero points; output_offset: the output zero point.
 *  left_shift: 20; a_shift, b_shift, output_shift: <= 0. */
typedef struct {
    int32_t shape[4], a_stride[4], b_stride[4];
    int32_t a_offset, b_offset, output_offset, left_shift;
    int32_t a_multiplier, a_shift, b_multiplier, b_shift, output_multiplier, output_shift;
    int32_t activation_min, activation_max;
} tk_add_params;

/** SOFTMAX over the last axis: (rows, depth) int8 -> int8 with scale 1/256, zero point -128.
 *  input_multiplier / input_left_shift: beta * s_in in Q5.26 (TFLite's
 *  PreprocessSoftmaxScaling); diff_min: differences to the row maximum below it give -128. */
typedef struct {
    int32_t rows, depth, input_multiplier, input_left_shift, diff_min;
} tk_softmax_params;

/** QUANTIZE int8 -> int8 (new scale / zero point): size values. */
typedef struct {
    int32_t size, input_offset, output_offset, multiplier, shift;
} tk_requantize_params;

/** PAD: input (4-D, leading 1s) -> output, pad_before[d] values before axis d, filled with
 *  `value` (the zero point). */
typedef struct {
    int32_t input_shape[4], output_shape[4], pad_before[4];
    int32_t value;
} tk_pad_params;

/** MUL with broadcasting: shape, a_stride, b_stride as in tk_add_params.
 *  a_offset, b_offset: minus the input zero points, in [-127, 128], so the product
 *  (a + a_offset) * (b + b_offset) lies in [-2^16, 2^16] and fits int32; output_offset: the
 *  output zero point. multiplier (Q31) and shift ([-31, 30]) rescale the product by
 *  s_a * s_b / s_out (tk_multiply_by_quantized_multiplier), then activation_min / _max clamp. */
typedef struct {
    int32_t shape[4], a_stride[4], b_stride[4];
    int32_t a_offset, b_offset, output_offset, multiplier, shift;
    int32_t activation_min, activation_max;
} tk_mul_params;

/** LOGISTIC: size int8 values -> int8 at scale 1/256, zero point -128, by table lookup:
 *  output = table[input + 128]. table: 256 int8 values, the sigmoid of every input value
 *  (TFLite's lookup table, computed in float32 and rounded half away from zero when the graph
 *  was built). */
typedef struct {
    int32_t size;
    const int8_t *table;
} tk_logistic_params;

/** SLICE: input (4-D, leading 1s) -> output of shape size[0..3], the box starting at begin[d]
 *  along each axis d; 0 <= begin[d], begin[d] + size[d] <= input_shape[d]. A copy: the output
 *  keeps the input's scale and zero point. */
typedef struct {
    int32_t input_shape[4], begin[4], size[4];
} tk_slice_params;

/** CONCATENATION of n_inputs tensors along one axis (any rank); every input shares the
 *  output's scale and zero point, so this is a copy. Each tensor is read as `outer` blocks
 *  (outer: the product of the dimensions before the axis); input k's blocks hold
 *  input_block[k] values (its dimensions from the axis on, multiplied), and output block b is
 *  block b of input 0, then of input 1, ... */
typedef struct {
    int32_t n_inputs, outer;
    const int32_t *input_block;
} tk_concatenation_params;

/** TFLite's MultiplyByQuantizedMultiplier: round(x * multiplier / 2^31 * 2^shift), double
 *  rounding (see the file comment). x: any int32; shift in [-31, 30]. */
int32_t tk_multiply_by_quantized_multiplier(int32_t x, int32_t multiplier, int32_t shift);

void tk_conv2d_s8(const tk_conv_params *p, const int8_t *input, int8_t *output);
void tk_depthwise_conv2d_s8(const tk_depthwise_params *p, const int8_t *input, int8_t *output);
void tk_fully_connected_s8(const tk_fully_connected_params *p, const int8_t *input,
                           int8_t *output);
void tk_max_pool2d_s8(const tk_pool_params *p, const int8_t *input, int8_t *output);
void tk_avg_pool2d_s8(const tk_pool_params *p, const int8_t *input, int8_t *output);
void tk_mean_hw_s8(const tk_mean_params *p, const int8_t *input, int8_t *output);
void tk_add_s8(const tk_add_params *p, const int8_t *a, const int8_t *b, int8_t *output);
void tk_softmax_s8(const tk_softmax_params *p, const int8_t *input, int8_t *output);
void tk_requantize_s8(const tk_requantize_params *p, const int8_t *input, int8_t *output);
void tk_pad_s8(const tk_pad_params *p, const int8_t *input, int8_t *output);
void tk_mul_s8(const tk_mul_params *p, const int8_t *a, const int8_t *b, int8_t *output);
void tk_logistic_s8(const tk_logistic_params *p, const int8_t *input, int8_t *output);
void tk_slice_s8(const tk_slice_params *p, const int8_t *input, int8_t *output);
/** inputs: n_inputs pointers, one per input tensor, in the graph's order. */
void tk_concatenation_s8(const tk_concatenation_params *p, const int8_t *const *inputs,
                         int8_t *output);
/** Copy `size` int8 values (graph inputs in, outputs out). */
void tk_copy_s8(const int8_t *input, int8_t *output, int32_t size);

#endif /* TINYKWS_KERNELS_H */
