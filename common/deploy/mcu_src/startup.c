/* Bare-metal start-up for the T-RecX harness on an emulated Cortex-M: the vector table, a reset
 * handler that prepares the C/C++ run time (FPU, .bss, semihosting handles, constructors) and calls
 * main, and a fault handler that reports over semihosting and stops the emulator instead of hanging.
 * .data needs no copy: the emulator loads the ELF's sections where they run. Written for T-RecX. */
#include <stdint.h>
#include <stdlib.h>

extern uint32_t __bss_start__, __bss_end__, __stack_top;
extern int main(void);
extern void initialise_monitor_handles(void);
extern void __libc_init_array(void);

#define CPACR (*(volatile uint32_t *)0xE000ED88u)
#define SEMIHOSTING_WRITE0 0x04
#define SEMIHOSTING_EXIT 0x18
#define STOPPED_RUNTIME_ERROR 0x20023

/* What the start files (left out: -nostartfiles) would define. */
void _init(void) {}
void _fini(void) {}
void *__dso_handle = 0;

static void semihost(uint32_t op, const void *arg) {
  register uint32_t r0 __asm__("r0") = op;
  register const void *r1 __asm__("r1") = arg;
  __asm__ volatile("bkpt 0xab" : "+r"(r0) : "r"(r1) : "memory");
}

void trecx_fault(void) {
  semihost(SEMIHOSTING_WRITE0, "TRECX FAULT: the program took a processor fault\n");
  semihost(SEMIHOSTING_EXIT, (const void *)STOPPED_RUNTIME_ERROR);
  for (;;) {}
}

void trecx_reset(void) {
#if defined(__ARM_FP) || defined(__ARM_FEATURE_MVE)
  CPACR |= 0xFu << 20;  /* full access to CP10 and CP11: the FPU (and MVE) */
  __asm__ volatile("dsb\n isb" ::: "memory");
#endif
  for (uint32_t *word = &__bss_start__; word < &__bss_end__; ++word) *word = 0;
  initialise_monitor_handles();
  __libc_init_array();
  exit(main());
}

__attribute__((section(".trecx_vectors"), used)) static const void *const vectors[16] = {
    &__stack_top, (const void *)trecx_reset,
    (const void *)trecx_fault, (const void *)trecx_fault,  /* NMI, HardFault */
    (const void *)trecx_fault, (const void *)trecx_fault,  /* MemManage, BusFault */
    (const void *)trecx_fault, (const void *)trecx_fault,  /* UsageFault, SecureFault */
    0, 0, 0,
    (const void *)trecx_fault,                            /* SVCall */
    (const void *)trecx_fault, 0,                         /* DebugMonitor */
    (const void *)trecx_fault, (const void *)trecx_fault,  /* PendSV, SysTick */
};
