/* Minimal Cortex-M start-up for QEMU's MPS2 boards: vector table, .data/.bss set-up, FPU on, SysTick
 * handler that extends the 24-bit counter, newlib semihosting init, main, exit through semihosting. */
#include <stdint.h>
#include <stdlib.h>

extern uint32_t __etext, __data_start__, __data_end__, __bss_start__, __bss_end__, __StackTop;
extern int main(void);
extern void initialise_monitor_handles(void);
extern void __libc_init_array(void);

volatile uint32_t fw_systick_wraps;

/* -nostartfiles drops crti/crtn: newlib's __libc_init_array still calls these */
void _init(void) { }
void _fini(void) { }

void Reset_Handler(void);
void Default_Handler(void) { for (;;) { } }
void SysTick_Handler(void) { fw_systick_wraps++; }
void HardFault_Handler(void) { exit(3); }

__attribute__((section(".isr_vector"), used)) const void *const fw_vectors[16] = {
    &__StackTop, (void *)Reset_Handler, (void *)Default_Handler, (void *)HardFault_Handler,
    (void *)Default_Handler, (void *)Default_Handler, (void *)Default_Handler, 0, 0, 0, 0,
    (void *)Default_Handler, (void *)Default_Handler, 0, (void *)Default_Handler, (void *)SysTick_Handler,
};

void Reset_Handler(void) {
    uint32_t *src = &__etext, *dst = &__data_start__;
    while (dst < &__data_end__) *dst++ = *src++;
    for (dst = &__bss_start__; dst < &__bss_end__;) *dst++ = 0;
#if defined(__ARM_FP)
    *(volatile uint32_t *)0xE000ED88 |= (0xFu << 20); /* CPACR: CP10 and CP11 full access */
    __asm volatile("dsb\n isb");
#endif
    __libc_init_array();
    initialise_monitor_handles();
    exit(main());
}
