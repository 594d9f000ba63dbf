//! Allocation failure is an `AcpiError::OutOfMemory`, never an abort.
//!
//! This test binary installs a global allocator that refuses, on the current thread only and
//! only while a limit is set, any single allocation larger than the limit. It is the one piece
//! of `unsafe` in this crate's tests: `GlobalAlloc` is an unsafe trait.

mod common;

use common::*;
use exo_acpi::*;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

thread_local! {
    /// Largest allocation allowed on this thread (no Drop, const-initialised: usable from
    /// inside the allocator without allocating).
    static LIMIT: Cell<usize> = const { Cell::new(usize::MAX) };
}

fn allowed(size: usize) -> bool {
    LIMIT
        .try_with(Cell::get)
        .map_or(true, |limit| size <= limit)
}

struct Limited;

// SAFETY: every call forwards to `System` with the caller's arguments unchanged, or returns
// null (a refused allocation), which the `GlobalAlloc` contract permits.
unsafe impl GlobalAlloc for Limited {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if !allowed(layout.size()) {
            return std::ptr::null_mut();
        }
        // SAFETY: the caller upholds `alloc`'s contract (non-zero size), passed on unchanged.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `System` (through this allocator) with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if !allowed(new_size) {
            return std::ptr::null_mut();
        }
        // SAFETY: `ptr` and `layout` come from this allocator (hence `System`), and the caller
        // upholds `realloc`'s contract for `new_size`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Limited = Limited;

/// Run `f` with allocations above `bytes` refused on this thread.
fn with_limit<R>(bytes: usize, f: impl FnOnce() -> R) -> R {
    LIMIT.set(bytes);
    let r = f();
    LIMIT.set(usize::MAX);
    r
}

fn x2apic_madt(n: u32) -> Vec<u8> {
    let mut b = MadtBuilder::new();
    for i in 0..n {
        b = b.x2apic(i, 1, i);
    }
    b.build()
}

#[test]
fn madt_too_big_for_the_heap_is_an_error() {
    let table = x2apic_madt(4096);
    let r = with_limit(16 << 10, || Madt::from_bytes(&table).map(|m| m.cpus.len()));
    assert_eq!(
        r,
        Err(AcpiError::OutOfMemory {
            what: "MADT processor entries",
            count: 4096
        })
    );
    assert_eq!(
        with_limit(1 << 20, || Madt::from_bytes(&table).map(|m| m.cpus.len())),
        Ok(4096)
    );
}

#[test]
fn discover_survives_an_unallocatable_madt() {
    let mem = machine(&[x2apic_madt(4096), fadt(0x608, 0, None)], Root::Xsdt);
    let p = with_limit(16 << 10, || discover(&mem, RSDP_ADDR)).unwrap();
    assert!(p.madt.is_none());
    assert!(p.fadt_pm_timer.is_some());
    assert!(
        matches!(
            p.warnings.as_slice(),
            [
                Warning::TableSkipped {
                    table: Signature::MADT,
                    reason: AcpiError::OutOfMemory { count: 4096, .. },
                    count: 1,
                    ..
                },
                Warning::NoMadt
            ]
        ),
        "{:?}",
        p.warnings
    );
    assert_eq!(
        p.warnings[0].to_string(),
        format!(
            "skipping APIC table at {:#x}: out of memory: cannot allocate room for 4096 MADT \
             processor entries",
            table_addr(0)
        )
    );
    // No heap at all: discovery fails cleanly.
    assert!(matches!(
        with_limit(0, || discover(&mem, RSDP_ADDR)),
        Err(AcpiError::OutOfMemory { .. })
    ));
}
