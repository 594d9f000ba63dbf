/* A static executable without libc (see build.sh). _start exits with a status computed
   from a table of pointers (R_X86_64_RELATIVE relocations when linked as a PIE), .data,
   .bss spanning several pages, and thread-local variables (PT_TLS). */
static const char msg[] = "exo\n";
const char *table[] = { msg, msg + 1, msg + 2 };   /* .data.rel (pointers) */
long answer = 42;                                   /* .data */
char big[20000];                                    /* .bss, several pages */
__thread long tls_var = 5;                          /* .tdata */
__thread long tls_zero;                             /* .tbss */

static void sys_exit(long code) {
    __asm__ volatile ("syscall" : : "a"(60L), "D"(code) : "rcx", "r11", "memory");
}

void _start(void) {
    volatile int i = 1;
    big[i * 100] = table[i][0];
    sys_exit((answer + big[100] + tls_var + tls_zero) & 0x7f);
    for (;;) {}
}
