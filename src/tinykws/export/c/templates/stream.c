/* ---- streaming detection (tinykws.stream) ---------------------------------------------------
 *
 * Samples collect in st_frame until a front-end frame is complete; its int8 network inputs go
 * into a ring of TINYKWS_FEATURE_FRAMES rows, and the frame's samples shift by one front-end
 * hop. Every TINYKWS_STREAM_HOP_FRAMES frames (once the ring is full) the rows, oldest first,
 * are the network input. The int8 scores are dequantized (float32, as tinykws's DEQUANTIZE),
 * turned into probabilities in double (exp of logit - max, summed over classes in order) and
 * kept with their time in a ring of the last TINYKWS_STREAM_HISTORY results. Results older
 * than TINYKWS_STREAM_WINDOW_SAMPLES are dropped; the rest are averaged (summed oldest first,
 * in double), and the best class is a detection when it is a keyword, its average is above
 * the threshold, there are at least TINYKWS_STREAM_MIN_COUNT results spanning a quarter of the
 * window or more, and it is not the keyword detected last within
 * TINYKWS_STREAM_SUPPRESSION_SAMPLES. Each step is tinykws/stream/recognize.py's, in the same
 * order of floating-point operations.
 */
#include <math.h>
#include <string.h>

#include "frontend.h"
#include "model.h"
#include "stream.h"

@TABLES@
double tinykws_stream_threshold = TINYKWS_STREAM_THRESHOLD;

static float st_frame[TINYKWS_STREAM_FE_WINDOW];           /* samples of the next frame */
static int32_t st_filled;                                   /* samples in st_frame */
static int8_t st_rows[TINYKWS_FEATURE_FRAMES * TINYKWS_FEATURE_BINS]; /* ring of input rows */
static int8_t st_input[TINYKWS_FEATURE_FRAMES * TINYKWS_FEATURE_BINS];
static int8_t st_scores[TINYKWS_OUTPUT_SIZE];
static int64_t st_frames;                                   /* frames since the reset */
static int64_t st_times[TINYKWS_STREAM_HISTORY];            /* ring of results: times */
static double st_probs[TINYKWS_STREAM_HISTORY][TINYKWS_OUTPUT_SIZE]; /* and probabilities */
static int32_t st_first, st_count;                          /* oldest result, results held */
static int32_t st_last_top = -1;
static int64_t st_last_time;
static tinykws_stream_event_fn st_on_event;
static tinykws_stream_hop_fn st_on_hop;
static void *st_user;

void tinykws_stream_reset(tinykws_stream_event_fn on_event, tinykws_stream_hop_fn on_hop,
                          void *user)
{
    st_filled = 0;
    st_frames = 0;
    st_first = st_count = 0;
    st_last_top = -1;
    st_last_time = 0;
    st_on_event = on_event;
    st_on_hop = on_hop;
    st_user = user;
}

/* Softmax of the dequantized scores into the newest result slot. */
static void add_result(int64_t time)
{
    double *p;
    double z[TINYKWS_OUTPUT_SIZE], total = 0.0, top;
    int32_t c;
    if (st_count == TINYKWS_STREAM_HISTORY) { /* cannot happen: the window holds fewer */
        st_first = (st_first + 1) % TINYKWS_STREAM_HISTORY;
        --st_count;
    }
    p = st_probs[(st_first + st_count) % TINYKWS_STREAM_HISTORY];
    st_times[(st_first + st_count) % TINYKWS_STREAM_HISTORY] = time;
    ++st_count;
    for (c = 0; c < TINYKWS_OUTPUT_SIZE; ++c) {
        const float logit = (float)((double)TINYKWS_OUTPUT_SCALE *
                                    (double)(st_scores[c] - TINYKWS_OUTPUT_ZERO_POINT));
        z[c] = (double)logit;
    }
    top = z[0];
    for (c = 1; c < TINYKWS_OUTPUT_SIZE; ++c) {
        top = z[c] > top ? z[c] : top;
    }
    for (c = 0; c < TINYKWS_OUTPUT_SIZE; ++c) {
        z[c] = exp(z[c] - top);
        total = total + z[c];
    }
    for (c = 0; c < TINYKWS_OUTPUT_SIZE; ++c) {
        p[c] = z[c] / total;
    }
}

/* Average the results of the window and decide; returns 1 for a detection. */
static int32_t recognize(int64_t time)
{
    double average[TINYKWS_OUTPUT_SIZE];
    int32_t i, c, top = 0;
    while (st_count > 0 && st_times[st_first] < time - TINYKWS_STREAM_WINDOW_SAMPLES) {
        st_first = (st_first + 1) % TINYKWS_STREAM_HISTORY;
        --st_count;
    }
    if (st_count < TINYKWS_STREAM_MIN_COUNT ||
        4 * (time - st_times[st_first]) < TINYKWS_STREAM_WINDOW_SAMPLES) {
        return 0;
    }
    for (c = 0; c < TINYKWS_OUTPUT_SIZE; ++c) {
        average[c] = 0.0;
    }
    for (i = 0; i < st_count; ++i) { /* oldest first */
        const double *p = st_probs[(st_first + i) % TINYKWS_STREAM_HISTORY];
        for (c = 0; c < TINYKWS_OUTPUT_SIZE; ++c) {
            average[c] += p[c];
        }
    }
    for (c = 0; c < TINYKWS_OUTPUT_SIZE; ++c) {
        average[c] = average[c] / (double)st_count;
        if (average[c] > average[top]) {
            top = c;
        }
    }
    if (!(average[top] > tinykws_stream_threshold) || !tinykws_stream_keyword[top] ||
        (top == st_last_top && time - st_last_time <= TINYKWS_STREAM_SUPPRESSION_SAMPLES)) {
        return 0;
    }
    st_last_top = top;
    st_last_time = time;
    if (st_on_event) {
        st_on_event(time, top, average[top], st_user);
    }
    return 1;
}

/* The frame in st_frame is complete: store its row; at a hop, run the network and decide. */
static int32_t frame_done(void)
{
    const int32_t row = (int32_t)(st_frames % TINYKWS_FEATURE_FRAMES);
    int64_t extra, time;
    int32_t i;
    tinykws_frontend_frame_input(st_frame, st_rows + row * TINYKWS_FEATURE_BINS);
    ++st_frames;
    extra = st_frames - TINYKWS_FEATURE_FRAMES;
    if (extra < 0 || extra % TINYKWS_STREAM_HOP_FRAMES != 0) {
        return 0;
    }
    for (i = 0; i < TINYKWS_FEATURE_FRAMES; ++i) { /* oldest row first */
        const int32_t from = (int32_t)((st_frames + i) % TINYKWS_FEATURE_FRAMES);
        memcpy(st_input + i * TINYKWS_FEATURE_BINS, st_rows + from * TINYKWS_FEATURE_BINS,
               TINYKWS_FEATURE_BINS);
    }
    tinykws_invoke(st_input, st_scores);
    time = (st_frames - 1) * TINYKWS_STREAM_FE_HOP + TINYKWS_STREAM_FE_WINDOW;
    if (st_on_hop) {
        st_on_hop(time, st_input, st_scores, st_user);
    }
    add_result(time);
    return recognize(time);
}

int32_t tinykws_stream_push(const int16_t *samples, int32_t n)
{
    int32_t i, events = 0;
    if (samples == 0 && n > 0) {
        return -1;
    }
    for (i = 0; i < n; ++i) {
        st_frame[st_filled++] = (float)samples[i] / 32768.0f;
        if (st_filled == TINYKWS_STREAM_FE_WINDOW) {
            events += frame_done();
            memmove(st_frame, st_frame + TINYKWS_STREAM_FE_HOP,
                    (TINYKWS_STREAM_FE_WINDOW - TINYKWS_STREAM_FE_HOP) * sizeof(float));
            st_filled = TINYKWS_STREAM_FE_WINDOW - TINYKWS_STREAM_FE_HOP;
        }
    }
    return events;
}
