//! The firmware example's `RomFlash` keeps the flash contract.
//!
//! The firmware (`firmware/`) builds only for `thumbv7em-none-eabihf` and has
//! no test harness of its own (it runs under QEMU, without a heap, and the
//! suite needs one). So the same source file is compiled here, for the host,
//! and put through `lode_hal::conformance` like every other in-tree device:
//! what QEMU runs is what this test checks.

#[path = "../../firmware/src/rom.rs"]
#[allow(dead_code)] // `counters` is the firmware's report, not the contract's
mod rom;

use lode_hal::conformance::{check, Config};
use lode_kernel::flash::FlashDevice;
use rom::{RomFlash, BLOCK, COST, MAX_TRANSFER, QUEUE_DEPTH};

/// A device over a copy of `medium` that lives as long as the test: the
/// ROM is borrowed for `'static` in the firmware, and the suite's factory
/// hands out a borrow that ends with the call.
fn rom(medium: &[u8], block: u32) -> RomFlash<'static> {
    RomFlash::new(Box::leak(medium.into()), block, MAX_TRANSFER, COST)
}

#[test]
fn rom_flash_keeps_the_contract() {
    check(&Config::default(), |m| rom(m, BLOCK)).unwrap();
}

#[test]
fn rom_flash_keeps_the_contract_with_large_blocks() {
    let cfg = Config {
        medium_len: 64 << 10,
        seed: 7,
    };
    check(&cfg, |m| rom(m, 4096)).unwrap();
}

#[test]
fn rom_flash_reports_its_geometry() {
    let dev = rom(&[0u8; 1000], BLOCK);
    let g = dev.geometry();
    assert_eq!(g.capacity, 992, "capacity rounds down to a block");
    assert_eq!(usize::from(g.queue_depth), QUEUE_DEPTH);
    assert_eq!(g.max_transfer, MAX_TRANSFER);
}
