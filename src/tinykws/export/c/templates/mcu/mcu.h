/* The tinykws Cortex-M4 emulator image: start-up services used by its harness. */
#ifndef TINYKWS_MCU_H
#define TINYKWS_MCU_H

#include <stdint.h>

/** Processor-clock ticks since reset (SysTick and its wrap count). */
uint64_t tk_ticks(void);
/** Write a NUL-terminated string to the host (semihosting SYS_WRITE0). */
void tk_write(const char *text);
/** Stop the emulator: status 0 is success (semihosting SYS_EXIT). */
void tk_exit(int status);

#endif /* TINYKWS_MCU_H */
