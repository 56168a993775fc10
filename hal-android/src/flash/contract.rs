//! `AndroidFlash` against the shared flash contract
//! (`lode_hal::conformance`): over a whole descriptor opened for writing,
//! and over an "asset" at a zip-aligned (not block-aligned) offset of a
//! larger "APK", as an app would open its model.

use std::fs::OpenOptions;
use std::os::fd::OwnedFd;

use lode_hal::conformance::{check, check_writable, Config};

use super::tests::Temp;
use super::{AndroidFlash, AndroidOptions};

#[test]
fn a_writable_descriptor_keeps_the_flash_contract() {
    check_writable(&Config::default(), |medium| {
        let file = Temp::new("contract", 0);
        std::fs::write(&file.path, medium).unwrap();
        let rw = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&file.path)
            .unwrap();
        AndroidFlash::from_fd(OwnedFd::from(rw), None, AndroidOptions::default()).unwrap()
    })
    .unwrap();
}

#[test]
fn an_asset_window_keeps_the_flash_contract() {
    check(&Config::default(), |medium| {
        let apk = Temp::new("contract-apk", 1028);
        let mut bytes = apk.bytes.clone();
        bytes.extend_from_slice(medium);
        std::fs::write(&apk.path, &bytes).unwrap();
        let len = medium.len() as u64;
        AndroidFlash::from_asset(apk.fd(), 1028, len, AndroidOptions::default()).unwrap()
    })
    .unwrap();
}
