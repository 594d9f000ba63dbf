//! `ctx.*` and `fpu.*` rows: the kernel's context switch and FPU save/restore
//! primitives (`exo_arch::context`, `exo_arch::fpu`), run as is in user space.
//!
//! * `ctx.switch.raw`: one `switch` between two stacks on this thread (a round trip of two
//!   switches, halved); the floor under the kernel's `ctx.switch`.
//! * `fpu.<mechanism>.clean`: `restore` + `save` of one area with the state left untouched in
//!   between (a thread that did not use SIMD during its slice; XSAVEOPT's modified
//!   optimisation applies), for every mechanism this CPU offers.
//! * `fpu.<mechanism>.dirty`: the same with the vector registers written in between (a thread
//!   that used SSE/AVX).
//!
//! The state saved is non-initial (all-ones vector registers), so the init optimisation does
//! not hide the cost.
//!
//! Wiring (in `main.rs`): `mod ctx;` and, in `main` after the other single-CPU rows,
//! `ctx::rows(&mut clk, &mut *s, overhead, &mut |name, st| out.row(name, st));`
#![allow(
    unsafe_code,
    reason = "stack switching and FPU save areas through exo_arch's unsafe primitives"
)]

use exo_arch::context::{init_stack_in, switch};
use exo_arch::fpu::{self, FpuInfo, Mechanism, XFEATURE_AVX};
use smp_bench::{Clock, Samples, Stats};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Round trips (or restore/save pairs) per sample.
const K: u32 = 32;

/// Saved stack pointers of the two contexts.
#[derive(Default)]
struct Pair {
    main: AtomicU64,
    thread: AtomicU64,
}

extern "sysv64" fn partner(arg: u64) -> ! {
    // SAFETY: `arg` is the address of the `Pair` in `rows`, alive while we can run.
    let p = unsafe { &*(arg as *const Pair) };
    loop {
        // SAFETY: main's stack pointer was saved by its switch into us and main is parked.
        unsafe { switch(p.thread.as_ptr(), p.main.load(Relaxed)) };
    }
}

/// Fills every vector register with ones (VEX-encoded when AVX is on, so the upper halves are
/// written too).
fn dirty(avx: bool) {
    if avx {
        // SAFETY: register-only instructions; AVX is enabled in XCR0 (checked by the caller);
        // every vector register is declared clobbered.
        unsafe {
            core::arch::asm!(
                "vpcmpeqd ymm0, ymm0, ymm0",
                "vmovdqa ymm1, ymm0",
                "vmovdqa ymm2, ymm0",
                "vmovdqa ymm3, ymm0",
                "vmovdqa ymm4, ymm0",
                "vmovdqa ymm5, ymm0",
                "vmovdqa ymm6, ymm0",
                "vmovdqa ymm7, ymm0",
                "vmovdqa ymm8, ymm0",
                "vmovdqa ymm9, ymm0",
                "vmovdqa ymm10, ymm0",
                "vmovdqa ymm11, ymm0",
                "vmovdqa ymm12, ymm0",
                "vmovdqa ymm13, ymm0",
                "vmovdqa ymm14, ymm0",
                "vmovdqa ymm15, ymm0",
                clobber_abi("sysv64"),
                options(nomem, nostack, preserves_flags)
            );
        }
    } else {
        // SAFETY: register-only SSE2 instructions; the registers are declared clobbered.
        unsafe {
            core::arch::asm!(
                "pcmpeqd xmm0, xmm0",
                "movdqa xmm1, xmm0",
                "movdqa xmm2, xmm0",
                "movdqa xmm3, xmm0",
                "movdqa xmm4, xmm0",
                "movdqa xmm5, xmm0",
                "movdqa xmm6, xmm0",
                "movdqa xmm7, xmm0",
                "movdqa xmm8, xmm0",
                "movdqa xmm9, xmm0",
                "movdqa xmm10, xmm0",
                "movdqa xmm11, xmm0",
                "movdqa xmm12, xmm0",
                "movdqa xmm13, xmm0",
                "movdqa xmm14, xmm0",
                "movdqa xmm15, xmm0",
                clobber_abi("sysv64"),
                options(nomem, nostack, preserves_flags)
            );
        }
    }
}

/// A zeroed, 64-byte aligned save area of `info.size` bytes.
struct Area {
    ptr: *mut u8,
    layout: std::alloc::Layout,
}

impl Area {
    fn new(info: &FpuInfo) -> Area {
        let layout = info.layout();
        // SAFETY: `layout` has a non-zero size (>= 512).
        let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
        assert!(!ptr.is_null(), "FPU area allocation");
        Area { ptr, layout }
    }

    fn bytes(&mut self) -> &mut [u8] {
        // SAFETY: `ptr` is a live allocation of `layout.size()` bytes owned by `self`.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.layout.size()) }
    }
}

impl Drop for Area {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout, freed once.
        unsafe { std::alloc::dealloc(self.ptr, self.layout) };
    }
}

/// Round-trip statistics → one switch's: halved to nearest as every side's `ctx.switch`
/// (`smp_bench::per_call`); until 2026-12-06 floored, on top of the rounding of the
/// per-call samples (found by review).
fn halve(st: Stats) -> Stats {
    let h = |v| smp_bench::per_call(v, 2);
    Stats {
        mean: h(st.mean),
        min: h(st.min),
        max: h(st.max),
        p50: h(st.p50),
        p95: h(st.p95),
        p99: h(st.p99),
        ..st
    }
}

/// Emits the `ctx.switch.raw` and `fpu.*` rows through `row`.
pub fn rows<C: Clock + ?Sized, const N: usize>(
    clock: &mut C,
    s: &mut Samples<N>,
    overhead: u64,
    row: &mut dyn FnMut(&str, Option<Stats>),
) {
    let pair = Pair::default();
    let mut stack = vec![0u8; 64 * 1024];
    let sp = init_stack_in(&mut stack, partner, &pair as *const Pair as u64);
    pair.thread.store(sp, Relaxed);
    let st = smp_bench::bench_with(clock, s, overhead, 1000, N, K, || {
        // SAFETY: the partner is parked (fresh, or in its switch back to us); its stack lives
        // until the end of this function; only this thread runs either context.
        unsafe { switch(pair.main.as_ptr(), pair.thread.load(Relaxed)) }
    });
    // Two switches per round trip.
    row("ctx.switch.raw", st.map(halve));
    drop(stack);

    let avx = fpu::Support::detect().xcr0 & XFEATURE_AVX != 0;
    for m in Mechanism::ALL {
        let Some(info) = FpuInfo::for_mechanism(m) else {
            continue;
        };
        let mut area = Area::new(&info);
        fpu::init_area(area.bytes(), &info);
        let mut init = Area::new(&info);
        fpu::init_area(init.bytes(), &info);
        dirty(avx);
        // SAFETY: a 64-aligned area of `info.size` bytes; TS is clear in user space.
        unsafe { fpu::save(area.ptr, &info) };
        let a = area.ptr;
        for (suffix, touch) in [("clean", false), ("dirty", true)] {
            let st = smp_bench::bench_with(clock, s, overhead, 1000, N, K, || {
                // SAFETY: `a` holds a valid image for `info` (saved above or below).
                unsafe { fpu::restore(a, &info) };
                if touch {
                    dirty(avx);
                }
                // SAFETY: as above.
                unsafe { fpu::save(a, &info) };
            });
            row(&format!("fpu.{}.{suffix}", m.name()), st);
        }
        // Leave this thread with initial FPU state and default modes.
        // SAFETY: a valid initial image.
        unsafe { fpu::restore(init.ptr, &info) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_round_trip_is_halved_to_nearest() {
        let st = Stats {
            n: 9,
            mean: 101,
            min: 7,
            max: 300,
            p50: 99,
            p95: 201,
            p99: 255,
        };
        let h = halve(st);
        assert_eq!(
            (h.n, h.mean, h.min, h.max, h.p50, h.p95, h.p99),
            (9, 51, 4, 150, 50, 101, 128)
        );
    }
}
