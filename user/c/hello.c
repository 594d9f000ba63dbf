/* hello-c: the Exo-OS system-call ABI from C, without libc (docs/syscalls.md).
 *
 *   gcc -static -nostdlib -ffreestanding -fno-pie -no-pie -fno-stack-protector \
 *       -Wl,-Ttext-segment=0x400000 -O2 -o hello-c hello.c
 *
 * Prints "hello-c: hello from pid <n> on cpu <c> (arg <a>)" and exits 0 (1 if the write
 * failed). Being Linux's calls with Linux's numbers, it runs on Linux too. */

typedef unsigned long u64;
typedef long i64;

enum { SYS_write = 1, SYS_getpid = 39, SYS_exit_group = 231, SYS_getcpu = 309 };

/* syscall: number in rax, arguments in rdi, rsi, rdx; rcx and r11 clobbered. */
static inline i64 sys0(i64 n)
{
    i64 r;
    __asm__ volatile("syscall" : "=a"(r) : "a"(n) : "rcx", "r11", "memory");
    return r;
}

static inline i64 sys3(i64 n, u64 a, u64 b, u64 c)
{
    i64 r;
    __asm__ volatile("syscall" : "=a"(r) : "a"(n), "D"(a), "S"(b), "d"(c) : "rcx", "r11", "memory");
    return r;
}

/* Appends the decimal digits of v at p; returns the new end. */
static char *put_u64(char *p, u64 v)
{
    char tmp[20];
    int n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n)
        *p++ = tmp[--n];
    return p;
}

static char *put_str(char *p, const char *s)
{
    while (*s)
        *p++ = *s++;
    return p;
}

/* Called by _start with rdi = the spawn argument. */
int c_main(u64 arg)
{
    char buf[128];
    unsigned cpu = 0;
    char *p = buf;
    i64 pid = sys0(SYS_getpid);
    int have_cpu = sys3(SYS_getcpu, (u64)&cpu, 0, 0) == 0;

    p = put_str(p, "hello-c: hello from pid ");
    p = put_u64(p, (u64)pid);
    p = put_str(p, " on cpu ");
    p = have_cpu ? put_u64(p, cpu) : put_str(p, "?");
    p = put_str(p, " (arg ");
    p = put_u64(p, arg);
    p = put_str(p, ")\n");
    return sys3(SYS_write, 1, (u64)buf, (u64)(p - buf)) == p - buf ? 0 : 1;
}

/* The entry: rdi = arg, rsp 16-byte aligned, no return address. `call` makes the System V
 * frame; the result goes to exit_group. */
__asm__(".text\n"
        ".globl _start\n"
        ".type _start, @function\n"
        "_start:\n"
        "    xor %ebp, %ebp\n"
        "    and $-16, %rsp\n"
        "    call c_main\n"
        "    mov %eax, %edi\n"
        "    mov $231, %eax\n" /* exit_group */
        "    syscall\n"
        "    ud2\n"
        ".size _start, . - _start\n");
