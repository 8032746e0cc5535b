/*
 * Start-up code of the tinykws Cortex-M4 emulator image (QEMU mps2-an386).
 *
 * Reset: copy .data from flash to RAM, zero .bss, enable the FPU (the image is built with
 * -mfloat-abi=hard), start SysTick on the processor clock, call main() and report its status
 * through semihosting (SYS_EXIT). A fault prints its name and exits with an error.
 *
 * Time: SysTick counts down from 0xFFFFFF on the processor clock; its handler counts the wraps,
 * so tk_ticks() is a 64-bit count of processor-clock ticks since reset.
 */
#include <stdint.h>

#include "mcu.h"

#define SYST_CSR (*(volatile uint32_t *)0xE000E010u)
#define SYST_RVR (*(volatile uint32_t *)0xE000E014u)
#define SYST_CVR (*(volatile uint32_t *)0xE000E018u)
#define CPACR (*(volatile uint32_t *)0xE000ED88u)
#define SYSTICK_RELOAD 0xFFFFFFu

#define SYS_WRITE0 0x04
#define SYS_EXIT 0x18
#define ADP_STOPPED_APPLICATION_EXIT 0x20026
#define ADP_STOPPED_RUNTIME_ERROR 0x20023

extern uint32_t tk_data_load, tk_data_start, tk_data_end, tk_bss_start, tk_bss_end;
extern uint32_t tk_stack_top;
int main(void);
void tk_reset_handler(void);
void tk_systick_handler(void);
void tk_fault_handler(void);

static volatile uint32_t systick_wraps;

typedef void (*tk_vector)(void);

__attribute__((section(".vectors"), used)) static const tk_vector vectors[16] = {
    (tk_vector)(uintptr_t)&tk_stack_top,
    tk_reset_handler,
    tk_fault_handler, /* NMI */
    tk_fault_handler, /* HardFault */
    tk_fault_handler, /* MemManage */
    tk_fault_handler, /* BusFault */
    tk_fault_handler, /* UsageFault */
    0,
    0,
    0,
    0,
    tk_fault_handler, /* SVCall */
    tk_fault_handler, /* DebugMonitor */
    0,
    tk_fault_handler, /* PendSV */
    tk_systick_handler,
};

static int32_t semihost(int32_t operation, const void *argument)
{
    register int32_t r0 __asm__("r0") = operation;
    register const void *r1 __asm__("r1") = argument;
    __asm__ volatile("bkpt 0xAB" : "+r"(r0) : "r"(r1) : "memory");
    return r0;
}

void tk_write(const char *text)
{
    semihost(SYS_WRITE0, text);
}

void tk_exit(int status)
{
    semihost(SYS_EXIT, (const void *)(uintptr_t)(status == 0 ? ADP_STOPPED_APPLICATION_EXIT
                                                            : ADP_STOPPED_RUNTIME_ERROR));
    for (;;) {
    }
}

void tk_systick_handler(void)
{
    systick_wraps = systick_wraps + 1u;
}

void tk_fault_handler(void)
{
    tk_write("fault\n");
    tk_exit(1);
}

uint64_t tk_ticks(void)
{
    uint32_t wraps, value;
    do { /* a wrap between the two reads shows as a changed wrap count: read again */
        wraps = systick_wraps;
        value = SYST_CVR;
    } while (wraps != systick_wraps);
    return (uint64_t)wraps * (SYSTICK_RELOAD + 1u) + (SYSTICK_RELOAD - value);
}

void tk_reset_handler(void)
{
    uint32_t *from = &tk_data_load, *to = &tk_data_start;
    while (to < &tk_data_end) {
        *to++ = *from++;
    }
    for (to = &tk_bss_start; to < &tk_bss_end; ++to) {
        *to = 0;
    }
    CPACR |= 0xFu << 20; /* CP10 and CP11 (the FPU): full access */
    __asm__ volatile("dsb\n\tisb" ::: "memory");
    SYST_RVR = SYSTICK_RELOAD;
    SYST_CVR = 0;
    SYST_CSR = 7u; /* enable, interrupt on wrap, processor clock */
    while (SYST_CVR == 0u) { /* the first tick loads the reload value without a wrap */
    }
    tk_exit(main());
}
