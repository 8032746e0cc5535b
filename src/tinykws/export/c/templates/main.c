/*
 * kws_demo: classify one WAV file with the generated front end and network.
 *
 *   kws_demo FILE.wav
 *
 * The file must be 16-bit PCM, mono, at TINYKWS_SAMPLE_RATE_HZ. Its samples are scaled to
 * [-1, 1) (x / 32768) and centred in a clip of TINYKWS_CLIP_SAMPLES (zero-padded both sides or
 * cut at both ends, as tinykws.audio.pad_or_trim). Prints one "label score" line per class,
 * best first, where score is the dequantized network output. Exit status 0, or 2 with a
 * message on stderr for a missing or unsuitable file.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frontend.h"
#include "model.h"

static float samples[TINYKWS_CLIP_SAMPLES];
static int8_t input[TINYKWS_INPUT_SIZE];
static int8_t scores[TINYKWS_OUTPUT_SIZE];

typedef struct {
    unsigned format, channels, rate, bits;
    long data_start;
    unsigned long data_bytes;
} wav_info;

static unsigned long little_endian(const unsigned char *bytes, int n)
{
    unsigned long value = 0;
    while (n-- > 0) {
        value = (value << 8) | bytes[n];
    }
    return value;
}

static int fail(const char *path, const char *message)
{
    fprintf(stderr, "kws_demo: %s: %s\n", path, message);
    return 2;
}

/* Walks the RIFF chunks: reads "fmt " and stops at "data". Returns 0 or an exit status. */
static int read_header(FILE *file, const char *path, wav_info *info)
{
    unsigned char head[12], chunk[8], fmt[40];
    memset(info, 0, sizeof(*info));
    if (fread(head, 1, 12, file) != 12 || memcmp(head, "RIFF", 4) != 0 ||
        memcmp(head + 8, "WAVE", 4) != 0) {
        return fail(path, "not a RIFF/WAVE file; give a 16-bit PCM mono WAV file");
    }
    while (fread(chunk, 1, 8, file) == 8) {
        const unsigned long size = little_endian(chunk + 4, 4);
        if (memcmp(chunk, "fmt ", 4) == 0 && size >= 16) {
            const unsigned long used = size < 40 ? size : 40;
            if (fread(fmt, 1, used, file) != used) {
                break;
            }
            info->format = (unsigned)little_endian(fmt, 2);
            if (info->format == 0xFFFE && used >= 26) { /* WAVE_FORMAT_EXTENSIBLE: sub-format */
                info->format = (unsigned)little_endian(fmt + 24, 2);
            }
            info->channels = (unsigned)little_endian(fmt + 2, 2);
            info->rate = (unsigned)little_endian(fmt + 4, 4);
            info->bits = (unsigned)little_endian(fmt + 14, 2);
            if (fseek(file, (long)(size - used + (size & 1)), SEEK_CUR) != 0) {
                break;
            }
        } else if (memcmp(chunk, "data", 4) == 0) {
            info->data_start = ftell(file);
            info->data_bytes = size;
            return 0;
        } else if (fseek(file, (long)(size + (size & 1)), SEEK_CUR) != 0) {
            break;
        }
    }
    return fail(path, "no fmt or data chunk; the WAV file is damaged");
}

static int check_format(const char *path, const wav_info *info)
{
    char message[256];
    if (info->format == 1 && info->channels == 1 && info->bits == 16 &&
        info->rate == TINYKWS_SAMPLE_RATE_HZ) {
        return 0;
    }
    snprintf(message, sizeof(message),
            "expected 16-bit PCM mono at %d Hz, got format %u, %u channel(s), %u bits, %u Hz; "
            "convert it (e.g. sox IN -r %d -c 1 -b 16 OUT.wav)",
            TINYKWS_SAMPLE_RATE_HZ, info->format, info->channels, info->bits, info->rate,
            TINYKWS_SAMPLE_RATE_HZ);
    return fail(path, message);
}

/* Reads the samples centred in the clip (pad_or_trim). Returns 0 or an exit status. */
static int read_samples(FILE *file, const char *path, const wav_info *info)
{
    unsigned long available, n, skip = 0, start = 0, i;
    unsigned char pair[2];
    if (fseek(file, 0, SEEK_END) != 0) {
        return fail(path, "cannot seek in the file");
    }
    available = (unsigned long)(ftell(file) - info->data_start) / 2;
    n = info->data_bytes / 2;
    if (info->data_bytes == 0 || info->data_bytes == 0xFFFFFFFFul || n > available) {
        n = available; /* unknown or overstated length: read what is there */
    }
    if (n == 0) {
        return fail(path, "contains no audio samples");
    }
    if (n > TINYKWS_CLIP_SAMPLES) {
        skip = (n - TINYKWS_CLIP_SAMPLES) / 2;
        n = TINYKWS_CLIP_SAMPLES;
    } else {
        start = (TINYKWS_CLIP_SAMPLES - n) / 2;
    }
    if (fseek(file, info->data_start + (long)(2 * skip), SEEK_SET) != 0) {
        return fail(path, "cannot seek in the file");
    }
    for (i = 0; i < n; ++i) {
        long value;
        if (fread(pair, 1, 2, file) != 2) {
            return fail(path, "truncated audio data");
        }
        value = (long)little_endian(pair, 2);
        samples[start + i] = (float)(value >= 32768 ? value - 65536 : value) / 32768.0f;
    }
    return 0;
}

static int read_wav(const char *path)
{
    wav_info info;
    int status;
    FILE *file = fopen(path, "rb");
    if (file == NULL) {
        return fail(path, "cannot open the file");
    }
    status = read_header(file, path, &info);
    if (status == 0) {
        status = check_format(path, &info);
    }
    if (status == 0) {
        status = read_samples(file, path, &info);
    }
    fclose(file);
    return status;
}

int main(int argc, char **argv)
{
    int order[TINYKWS_OUTPUT_SIZE];
    int i, j, status;
    if (argc != 2) {
        fprintf(stderr, "usage: kws_demo FILE.wav (16-bit PCM, mono, %d Hz)\n",
                TINYKWS_SAMPLE_RATE_HZ);
        return 2;
    }
    status = read_wav(argv[1]);
    if (status != 0) {
        return status;
    }
    if (tinykws_frontend_input(samples, input) != 0 || tinykws_invoke(input, scores) != 0) {
        fprintf(stderr, "kws_demo: inference failed\n");
        return 1;
    }
    for (i = 0; i < TINYKWS_OUTPUT_SIZE; ++i) { /* stable insertion sort, best first */
        for (j = i; j > 0 && scores[order[j - 1]] < scores[i]; --j) {
            order[j] = order[j - 1];
        }
        order[j] = i;
    }
    for (i = 0; i < TINYKWS_OUTPUT_SIZE; ++i) {
        const int k = order[i];
        printf("%s %.6f\n", tinykws_labels[k],
               TINYKWS_OUTPUT_SCALE * (float)(scores[k] - TINYKWS_OUTPUT_ZERO_POINT));
    }
    return 0;
}
