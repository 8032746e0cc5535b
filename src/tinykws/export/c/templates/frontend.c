/* ---- the front end (tinykws.features.FrontEnd) ---------------------------------------------
 *
 * Per frame t (samples [t * hop, t * hop + window), no padding of the clip):
 *   1. multiply by the periodic window, zero-pad to FE_N_FFT;
 *   2. power spectrum |rfft|^2: a complex FFT of FE_N_FFT / 2 points (even samples as real
 *      parts, odd samples as imaginary parts), radix 2, then the split into the real spectrum;
 *   3. triangular filterbank (each band's non-zero weights), log(band + FE_LOG_OFFSET);
 *   4. MFCC only: orthonormal DCT-II, the first FE_RAW_BINS coefficients.
 * Then, when configured, a bilinear resize (half-pixel centres) to FE_FRAMES x FE_BINS, and for
 * the network input the normalisation (x - mean) / std and the input quantization
 * round(x / scale) + zero point (roundf: half away from zero), clamped to int8, all in float32
 * exactly as tinykws does in Python. Compile without floating-point contraction
 * (-ffp-contract=off, the default of -std=c99) so those last steps round as Python's do.
 *
 * Steps 1-2 run in fe_fft_t: double where the target has double-precision floating point
 * (hosts, Cortex-M7 with a double FPU), float on single-precision FPUs (Cortex-M4F, M33) and
 * FPU-less cores. Define TINYKWS_FFT_DOUBLE as 0 or 1 to choose. In float32 the FFT's rounding
 * error in every bin is ~1e-7 of the frame's norm, which log(band + offset) amplifies in a
 * nearly empty band beside a loud one (up to ~3e-3 on real speech, on ~1 % of clips); in
 * double the C features stay within 1e-4 of tinykws's float64-FFT reference. Steps 3-4 are
 * float32, as in Python. (fe_fft_t and the window and twiddle tables are defined above.)
 */

static fe_fft_t fe_buffer[FE_N_FFT];         /* windowed frame, then FE_N_FFT / 2 complex values */
static float fe_power[FE_N_FFT / 2 + 1];     /* power spectrum of one frame */
static float fe_bands[FE_N_BANDS];           /* log band energies of one frame */
#if FE_RESIZE
static float fe_raw[FE_RAW_FRAMES * FE_RAW_BINS]; /* features before resizing */
#else
static float fe_row[FE_BINS];                /* one frame's features */
#endif

const int32_t tinykws_clip_samples = TINYKWS_CLIP_SAMPLES;
const int32_t tinykws_feature_frames = TINYKWS_FEATURE_FRAMES;
const int32_t tinykws_feature_bins = TINYKWS_FEATURE_BINS;

/* In-place radix-2 decimation-in-time FFT of n complex values (re, im interleaved); the twiddle
 * exp(-2 pi i k / len) is entry k * FE_N_FFT / len of the FE_N_FFT-point tables. */
static void fft_complex(fe_fft_t *z, int32_t n)
{
    int32_t i, j = 0, len, k;
    for (i = 1; i < n; ++i) { /* bit-reversal permutation */
        int32_t bit = n >> 1;
        for (; j & bit; bit >>= 1) {
            j ^= bit;
        }
        j ^= bit;
        if (i < j) {
            const fe_fft_t re = z[2 * i], im = z[2 * i + 1];
            z[2 * i] = z[2 * j];
            z[2 * i + 1] = z[2 * j + 1];
            z[2 * j] = re;
            z[2 * j + 1] = im;
        }
    }
    for (len = 2; len <= n; len <<= 1) {
        const int32_t half = len >> 1, step = FE_N_FFT / len;
        for (i = 0; i < n; i += len) {
            for (k = 0; k < half; ++k) {
                const fe_fft_t wr = fe_cos[k * step], wi = -fe_sin[k * step];
                fe_fft_t *a = z + 2 * (i + k), *b = z + 2 * (i + k + half);
                const fe_fft_t tr = b[0] * wr - b[1] * wi, ti = b[0] * wi + b[1] * wr;
                b[0] = a[0] - tr;
                b[1] = a[1] - ti;
                a[0] += tr;
                a[1] += ti;
            }
        }
    }
}

/* |X[k]|^2, k = 0 .. FE_N_FFT / 2, of the real frame in fe_buffer (destroyed). */
static void power_spectrum(void)
{
    const int32_t m = FE_N_FFT / 2;
    int32_t k;
    fft_complex(fe_buffer, m);
    fe_power[0] = (float)((fe_buffer[0] + fe_buffer[1]) * (fe_buffer[0] + fe_buffer[1]));
    fe_power[m] = (float)((fe_buffer[0] - fe_buffer[1]) * (fe_buffer[0] - fe_buffer[1]));
    for (k = 1; k < m; ++k) {
        /* E = (Z[k] + conj Z[m-k]) / 2, O = (Z[k] - conj Z[m-k]) / 2i, X = E + W^k O */
        const fe_fft_t zr = fe_buffer[2 * k], zi = fe_buffer[2 * k + 1];
        const fe_fft_t cr = fe_buffer[2 * (m - k)], ci = -fe_buffer[2 * (m - k) + 1];
        const fe_fft_t er = 0.5f * (zr + cr), ei = 0.5f * (zi + ci);
        const fe_fft_t or_ = 0.5f * (zi - ci), oi = -0.5f * (zr - cr);
        const fe_fft_t wr = fe_cos[k], wi = -fe_sin[k];
        const fe_fft_t xr = er + wr * or_ - wi * oi, xi = ei + wr * oi + wi * or_;
        fe_power[k] = (float)(xr * xr + xi * xi);
    }
}

/* The FE_RAW_BINS features of frame t of the clip. */
static void frame_features(const float *samples, int32_t t, float *row)
{
    const float *frame = samples + t * FE_HOP_SAMPLES;
    int32_t i, b;
    for (i = 0; i < FE_WINDOW_SAMPLES; ++i) {
        fe_buffer[i] = (fe_fft_t)frame[i] * fe_window[i];
    }
    for (; i < FE_N_FFT; ++i) {
        fe_buffer[i] = 0;
    }
    power_spectrum();
    for (b = 0; b < FE_N_BANDS; ++b) {
        const float *weights = fe_band_weights + fe_band_offset[b];
        const float *power = fe_power + fe_band_first[b];
        float energy = 0.0f;
        for (i = 0; i < fe_band_count[b]; ++i) {
            energy += weights[i] * power[i];
        }
        fe_bands[b] = FE_LOG(energy + FE_LOG_OFFSET);
    }
#if FE_MFCC
    for (i = 0; i < FE_RAW_BINS; ++i) {
        const float *basis = fe_dct + i * FE_N_BANDS;
        float sum = 0.0f;
        for (b = 0; b < FE_N_BANDS; ++b) {
            sum += basis[b] * fe_bands[b];
        }
        row[i] = sum;
    }
#else
    for (b = 0; b < FE_N_BANDS; ++b) {
        row[b] = fe_bands[b];
    }
#endif
}

static int8_t quantize_feature(float value, int32_t bin)
{
    const float normalised = (value - fe_mean[bin]) / fe_std[bin];
    float q = roundf(normalised / FE_INPUT_SCALE);
    int32_t v;
    q = q > 512.0f ? 512.0f : (q < -512.0f ? -512.0f : q); /* NaN-free: inputs are finite */
    v = (int32_t)q + FE_INPUT_ZERO_POINT;
    return (int8_t)(v > 127 ? 127 : (v < -128 ? -128 : v));
}

#if FE_RESIZE
/* Feature (i, j) of the resized map: bilinear between the two nearest rows and columns. */
static float resized(int32_t i, int32_t j)
{
    const float *low = fe_raw + fe_row_low[i] * FE_RAW_BINS;
    const float *high = fe_raw + fe_row_high[i] * FE_RAW_BINS;
    const int32_t cl = fe_col_low[j], ch = fe_col_high[j];
    const float fr = fe_row_frac[i], fc = fe_col_frac[j];
    const float top = (1.0f - fc) * low[cl] + fc * low[ch];
    const float bottom = (1.0f - fc) * high[cl] + fc * high[ch];
    return (1.0f - fr) * top + fr * bottom;
}
#endif

int tinykws_frontend_features(const float *samples, float *features)
{
    int32_t t;
    if (samples == 0 || features == 0) {
        return -1;
    }
#if FE_RESIZE
    {
        int32_t j;
        for (t = 0; t < FE_RAW_FRAMES; ++t) {
            frame_features(samples, t, fe_raw + t * FE_RAW_BINS);
        }
        for (t = 0; t < FE_FRAMES; ++t) {
            for (j = 0; j < FE_BINS; ++j) {
                features[t * FE_BINS + j] = resized(t, j);
            }
        }
    }
#else
    for (t = 0; t < FE_FRAMES; ++t) {
        frame_features(samples, t, features + t * FE_BINS);
    }
#endif
    return 0;
}

void tinykws_frontend_quantize(const float *features, int8_t *input)
{
    int32_t i;
    for (i = 0; i < FE_FRAMES * FE_BINS; ++i) {
        input[i] = quantize_feature(features[i], i % FE_BINS);
    }
}

int tinykws_frontend_input(const float *samples, int8_t *input)
{
    int32_t t, j;
    if (samples == 0 || input == 0) {
        return -1;
    }
#if FE_RESIZE
    for (t = 0; t < FE_RAW_FRAMES; ++t) {
        frame_features(samples, t, fe_raw + t * FE_RAW_BINS);
    }
    for (t = 0; t < FE_FRAMES; ++t) {
        for (j = 0; j < FE_BINS; ++j) {
            input[t * FE_BINS + j] = quantize_feature(resized(t, j), j);
        }
    }
#else
    for (t = 0; t < FE_FRAMES; ++t) { /* frame by frame: no float feature map is stored */
        frame_features(samples, t, fe_row);
        for (j = 0; j < FE_BINS; ++j) {
            input[t * FE_BINS + j] = quantize_feature(fe_row[j], j);
        }
    }
#endif
    return 0;
}

#if !FE_RESIZE
/* One frame of FE_WINDOW_SAMPLES samples to its FE_BINS int8 network inputs (streaming). */
void tinykws_frontend_frame_input(const float *frame, int8_t *input_row);
void tinykws_frontend_frame_input(const float *frame, int8_t *input_row)
{
    int32_t j;
    frame_features(frame, 0, fe_row);
    for (j = 0; j < FE_BINS; ++j) {
        input_row[j] = quantize_feature(fe_row[j], j);
    }
}
#endif
