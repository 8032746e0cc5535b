/*
 * The tinykws Cortex-M4 emulator harness: runs the network (and its front end) on the inputs
 * embedded in mcu_input.c and reports, through semihosting, one line per fact:
 *
 *   clock LOOP_TICKS MARK_TICKS    calibration: a loop of TK_LOOP_INSTRUCTIONS instructions;
 *                                  TK_CALIBRATION_MARKS + 1 profiling hooks back to back
 *   run I TICKS                    inference I: ticks from before the front end (or network)
 *                                  to after tinykws_invoke returned
 *   op I LABEL TICKS               inference I: ticks since the previous hook (or the start)
 *   features I HEX / scores I HEX  inference I: the int8 network input and output
 *
 * Ticks are processor-clock SysTick ticks (tk_ticks); the host converts them to instructions.
 */
#include <stdint.h>

#include "mcu.h"
#include "mcu_input.h"
#include "model.h"
#if TK_WITH_FRONTEND
#include "frontend.h"
#endif

#define TK_LOOP_ITERATIONS 20000
#define TK_CALIBRATION_MARKS 64

static uint64_t mark_ticks[TK_MAX_MARKS];
static const char *mark_labels[TK_MAX_MARKS];
static int32_t marks;
static int8_t features[TINYKWS_INPUT_SIZE];
static int8_t scores[TINYKWS_OUTPUT_SIZE];
static char line[160];

void tinykws_profile_op(int32_t index, const char *label);

/* The profiling hook of model.c (TK_PROFILE_OP with TINYKWS_PROFILE defined). */
void tinykws_profile_op(int32_t index, const char *label)
{
    const uint64_t now = tk_ticks();
    (void)index;
    if (marks < TK_MAX_MARKS) {
        mark_ticks[marks] = now;
        mark_labels[marks] = label;
    }
    ++marks;
}

static char *put_text(char *at, const char *text)
{
    while (*text != '\0' && at < line + sizeof(line) - 24) {
        *at++ = *text++;
    }
    return at;
}

static char *put_number(char *at, uint64_t value)
{
    char digits[24];
    int n = 0;
    do {
        digits[n++] = (char)('0' + value % 10u);
        value /= 10u;
    } while (value != 0u);
    while (n > 0) {
        *at++ = digits[--n];
    }
    return at;
}

static void put_line(const char *head, int32_t run, const char *label, uint64_t ticks)
{
    char *at = put_text(line, head);
    *at++ = ' ';
    at = put_number(at, (uint64_t)run);
    if (label != 0) {
        *at++ = ' ';
        *at++ = '"';
        at = put_text(at, label);
        *at++ = '"';
    }
    *at++ = ' ';
    at = put_number(at, ticks);
    *at++ = '\n';
    *at = '\0';
    tk_write(line);
}

/* "HEAD RUN hex..." in chunks: two hex digits per int8 value. */
static void put_bytes(const char *head, int32_t run, const int8_t *values, int32_t n)
{
    static const char hex[] = "0123456789abcdef";
    char *at = put_text(line, head);
    *at++ = ' ';
    at = put_number(at, (uint64_t)run);
    *at++ = ' ';
    for (int32_t i = 0; i < n; ++i) {
        const uint8_t v = (uint8_t)values[i];
        *at++ = hex[v >> 4];
        *at++ = hex[v & 15u];
        if (at > line + sizeof(line) - 4) {
            *at = '\0';
            tk_write(line);
            at = line;
        }
    }
    *at++ = '\n';
    *at = '\0';
    tk_write(line);
}

static void calibrate(void)
{
    uint64_t start = tk_ticks(), loop;
    uint32_t count = TK_LOOP_ITERATIONS;
    /* two instructions per iteration: TK_LOOP_ITERATIONS * 2 instructions */
    __asm__ volatile("1: subs %0, %0, #1\n\tbne 1b" : "+r"(count) : : "cc");
    loop = tk_ticks() - start;
    marks = 0;
    for (int32_t i = 0; i <= TK_CALIBRATION_MARKS; ++i) {
        tinykws_profile_op(i, "");
    }
    put_line("clock", 0, 0, loop);
    put_line("hooks", 0, 0, mark_ticks[TK_CALIBRATION_MARKS] - mark_ticks[0]);
}

static int run_once(int32_t run)
{
    uint64_t start, stop;
    int status;
    marks = 0;
    start = tk_ticks();
#if TK_WITH_FRONTEND
    status = tinykws_frontend_input(tk_samples[run], features);
    tinykws_profile_op(-1, "front end");
#else
    for (int32_t i = 0; i < TINYKWS_INPUT_SIZE; ++i) {
        features[i] = tk_features[run][i];
    }
    status = 0;
    start = tk_ticks();
#endif
    status |= tinykws_invoke(features, scores);
    stop = tk_ticks();
    put_line("run", run, 0, stop - start);
    for (int32_t i = 0; i < marks && i < TK_MAX_MARKS; ++i) {
        put_line("op", run, mark_labels[i], mark_ticks[i] - (i == 0 ? start : mark_ticks[i - 1]));
    }
    put_line("marks", run, 0, (uint64_t)marks);
    put_bytes("features", run, features, TINYKWS_INPUT_SIZE);
    put_bytes("scores", run, scores, TINYKWS_OUTPUT_SIZE);
    return status;
}

int main(void)
{
    int status = 0;
    calibrate();
    for (int32_t run = 0; run < TK_RUNS; ++run) {
        status |= run_once(run);
    }
    tk_write("done\n");
    return status;
}
