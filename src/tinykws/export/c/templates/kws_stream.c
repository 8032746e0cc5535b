/*
 * kws_stream: keyword detections in a long WAV file with the streaming detector (stream.c).
 *
 *   kws_stream FILE.wav [--threshold T] [--trace OUT.bin] [--profile]
 *
 * The file must be 16-bit PCM, mono, at TINYKWS_SAMPLE_RATE_HZ; it is read in blocks of 512
 * samples and pushed to tinykws_stream_push as a microphone driver would. Prints one line per
 * detection: "time_s<TAB>label<TAB>score" (time: end of the audio the network saw). --trace
 * writes every hop's time (int64, little-endian), int8 network input and int8 scores;
 * --profile prints the host time per hop of the front end (TINYKWS_STREAM_HOP_FRAMES frames)
 * and of the network. Exit status 0, or 2 with a message on stderr for an unsuitable file.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "frontend.h"
#include "model.h"
#include "stream.h"

#define BLOCK 512

static int fail(const char *path, const char *message)
{
    fprintf(stderr, "kws_stream: %s: %s\n", path, message);
    return 2;
}

static unsigned long little_endian(const unsigned char *bytes, int n)
{
    unsigned long value = 0;
    while (n-- > 0) {
        value = (value << 8) | bytes[n];
    }
    return value;
}

/* Walks the RIFF chunks to "data" after checking "fmt "; returns the data bytes, or 0. */
static unsigned long find_data(FILE *file, const char *path, int *status)
{
    unsigned char head[12], chunk[8], fmt[16];
    int format_ok = 0;
    *status = 2;
    if (fread(head, 1, 12, file) != 12 || memcmp(head, "RIFF", 4) != 0 ||
        memcmp(head + 8, "WAVE", 4) != 0) {
        fail(path, "not a RIFF/WAVE file; give a 16-bit PCM mono WAV file");
        return 0;
    }
    while (fread(chunk, 1, 8, file) == 8) {
        const unsigned long size = little_endian(chunk + 4, 4);
        if (memcmp(chunk, "fmt ", 4) == 0 && size >= 16) {
            if (fread(fmt, 1, 16, file) != 16 || fseek(file, (long)(size - 16 + (size & 1)), SEEK_CUR)) {
                break;
            }
            format_ok = little_endian(fmt + 2, 2) == 1 && little_endian(fmt + 14, 2) == 16 &&
                        little_endian(fmt + 4, 4) == TINYKWS_SAMPLE_RATE_HZ &&
                        (little_endian(fmt, 2) == 1 || little_endian(fmt, 2) == 0xFFFE);
        } else if (memcmp(chunk, "data", 4) == 0) {
            if (!format_ok) {
                fail(path, "expected 16-bit PCM mono audio at the model's sample rate");
                return 0;
            }
            *status = 0;
            return size;
        } else if (fseek(file, (long)(size + (size & 1)), SEEK_CUR) != 0) {
            break;
        }
    }
    fail(path, "no fmt or data chunk; the WAV file is damaged");
    return 0;
}

static void print_event(int64_t time, int32_t label, double score, void *user)
{
    (void)user;
    printf("%.4f\t%s\t%.4f\n", (double)time / TINYKWS_SAMPLE_RATE_HZ, tinykws_labels[label],
           score);
}

static void trace_hop(int64_t time, const int8_t *input, const int8_t *scores, void *user)
{
    FILE *out = (FILE *)user;
    unsigned char bytes[8];
    int i;
    for (i = 0; i < 8; ++i) {
        bytes[i] = (unsigned char)(((uint64_t)time >> (8 * i)) & 0xFF);
    }
    fwrite(bytes, 1, 8, out);
    fwrite(input, 1, TINYKWS_FEATURE_FRAMES * TINYKWS_FEATURE_BINS, out);
    fwrite(scores, 1, TINYKWS_OUTPUT_SIZE, out);
}

/* Host microseconds per hop of the front end and of the network, over many repetitions. */
static void profile(void)
{
    static float frame[TINYKWS_STREAM_FE_WINDOW];
    static int8_t input[TINYKWS_FEATURE_FRAMES * TINYKWS_FEATURE_BINS];
    static int8_t scores[TINYKWS_OUTPUT_SIZE];
    const int reps = 200;
    clock_t start;
    double frontend_us, network_us;
    int i, j;
    for (i = 0; i < TINYKWS_STREAM_FE_WINDOW; ++i) {
        frame[i] = (float)((i * 7919) % 2001 - 1000) / 4000.0f;
    }
    start = clock();
    for (i = 0; i < reps; ++i) {
        for (j = 0; j < TINYKWS_STREAM_HOP_FRAMES; ++j) {
            tinykws_frontend_frame_input(frame, input + j * TINYKWS_FEATURE_BINS);
        }
    }
    frontend_us = 1e6 * (double)(clock() - start) / CLOCKS_PER_SEC / reps;
    start = clock();
    for (i = 0; i < reps; ++i) {
        tinykws_invoke(input, scores);
    }
    network_us = 1e6 * (double)(clock() - start) / CLOCKS_PER_SEC / reps;
    fprintf(stderr, "per hop (%d ms): front end %.1f us (%d frames), network %.1f us\n",
            TINYKWS_STREAM_HOP_SAMPLES * 1000 / TINYKWS_SAMPLE_RATE_HZ, frontend_us,
            TINYKWS_STREAM_HOP_FRAMES, network_us);
}

static int stream_file(FILE *file, const char *path, FILE *trace)
{
    static int16_t samples[BLOCK];
    unsigned char bytes[2 * BLOCK];
    int status;
    unsigned long remaining = find_data(file, path, &status);
    if (status != 0) {
        return status;
    }
    tinykws_stream_reset(print_event, trace ? trace_hop : NULL, trace);
    while (remaining >= 2) {
        const size_t want = remaining / 2 < BLOCK ? remaining / 2 : BLOCK;
        const size_t got = fread(bytes, 2, want, file);
        size_t i;
        for (i = 0; i < got; ++i) {
            samples[i] = (int16_t)(bytes[2 * i] | (bytes[2 * i + 1] << 8));
        }
        tinykws_stream_push(samples, (int32_t)got);
        if (got < want) {
            break; /* a data chunk that overstates its length: stop at the end of the file */
        }
        remaining -= 2 * got;
    }
    return 0;
}

int main(int argc, char **argv)
{
    const char *path = NULL, *trace_path = NULL;
    FILE *file, *trace = NULL;
    int i, status, want_profile = 0;
    for (i = 1; i < argc; ++i) {
        if (strcmp(argv[i], "--threshold") == 0 && i + 1 < argc) {
            tinykws_stream_threshold = atof(argv[++i]);
        } else if (strcmp(argv[i], "--trace") == 0 && i + 1 < argc) {
            trace_path = argv[++i];
        } else if (strcmp(argv[i], "--profile") == 0) {
            want_profile = 1;
        } else if (path == NULL && argv[i][0] != '-') {
            path = argv[i];
        } else {
            path = NULL;
            break;
        }
    }
    if (path == NULL) {
        fprintf(stderr, "usage: kws_stream FILE.wav [--threshold T] [--trace OUT.bin] "
                        "[--profile]\n");
        return 2;
    }
    if ((file = fopen(path, "rb")) == NULL) {
        return fail(path, "cannot open the file");
    }
    if (trace_path != NULL && (trace = fopen(trace_path, "wb")) == NULL) {
        fclose(file);
        return fail(trace_path, "cannot write the trace file");
    }
    status = stream_file(file, path, trace);
    fclose(file);
    if (trace != NULL) {
        fclose(trace);
    }
    if (status == 0 && want_profile) {
        profile();
    }
    return status;
}
