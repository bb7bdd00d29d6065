/* The instruction counter of the Cortex-M builds under QEMU (-icount shift=0: QEMU advances virtual time by
 * 2^shift ns per instruction, so SysTick counts instructions). Shared by main_cm.c and
 * benchmarks/experiments/cmsis_nn/harness.c, so that both are timed the same way; fw_systick_wraps (the wrap
 * count kept by the SysTick handler) lives in startup_cm.c. It defines fw_platform_counter (th_api.h), so
 * exactly one file of a program includes it. */
#ifndef FW_SYSTICK_H
#define FW_SYSTICK_H

#include <stdint.h>
#include <stdio.h>

#define FW_SYST_CSR (*(volatile uint32_t *)0xE000E010)
#define FW_SYST_RVR (*(volatile uint32_t *)0xE000E014)
#define FW_SYST_CVR (*(volatile uint32_t *)0xE000E018)
#define FW_SCB_ICSR (*(volatile uint32_t *)0xE000ED04)
#define FW_SYST_RELOAD 0xFFFFFFu

extern volatile uint32_t fw_systick_wraps;

/* Ticks since fw_systick_start_calibrated, wraps included (a wrap pending in ICSR but not yet handled counts). */
uint64_t fw_platform_counter(void);
uint64_t fw_platform_counter(void) {
    uint32_t w1, w2, v, pending;
    do {
        w1 = fw_systick_wraps;
        v = FW_SYST_CVR;
        pending = FW_SCB_ICSR & (1u << 26); /* wrapped, handler not run yet */
        w2 = fw_systick_wraps;
    } while (w1 != w2);
    if (pending && v > FW_SYST_RELOAD / 2) w1++;
    return (uint64_t)w1 * (FW_SYST_RELOAD + 1u) + (FW_SYST_RELOAD - v);
}

/* Starts SysTick, then prints `fw-calibration instructions=N ticks=T` for a loop of exactly N instructions,
 * the line edgeasc.firmware.toolchain reads the instructions per tick from. */
static inline void fw_systick_start_calibrated(void) {
    FW_SYST_RVR = FW_SYST_RELOAD;
    FW_SYST_CVR = 0;
    FW_SYST_CSR = 7; /* processor clock, interrupt, enable */
    while (FW_SYST_CVR == 0) { } /* the first tick loads the reload value without counting a wrap */
    const uint32_t n = 1000000; /* a loop of exactly 2 * n instructions (subs, bne) */
    uint64_t a = fw_platform_counter();
    __asm volatile("mov r0, %0\n1: subs r0, r0, #1\n bne 1b\n" ::"r"(n) : "r0", "cc");
    uint64_t b = fw_platform_counter();
    printf("fw-calibration instructions=%lu ticks=%llu\n", (unsigned long)(2 * n), (unsigned long long)(b - a));
}

#endif
