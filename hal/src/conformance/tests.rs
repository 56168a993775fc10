//! The suite on every device `lode-hal` and the kernel's adapters provide,
//! and on devices broken on purpose, to show it catches them.

use alloc::vec;
use alloc::vec::Vec;

use lode_kernel::arena::DramArena;
use lode_kernel::cost::CostModel;
use lode_kernel::flash::{
    Completion, ErrorType, FaultInjector, Faults, FlashDevice, Geometry, ReadRequest, Window,
};

use super::*;
use crate::fake::{FakeFlash, FaultPlan, Profile};

fn fake(medium: &[u8], profile: &Profile, plan: FaultPlan) -> FakeFlash<Vec<u8>> {
    FakeFlash::new(medium.to_vec(), profile, plan)
}

#[test]
fn the_fake_flash_conforms_in_every_profile() {
    for profile in Profile::ALL {
        check_writable(&Config::default(), |m| fake(m, profile, FaultPlan::none()))
            .unwrap_or_else(|f| panic!("{}: {f}", profile.name));
    }
}

#[test]
fn the_fake_flash_conforms_with_completions_out_of_order() {
    for seed in 0..8 {
        let plan = FaultPlan {
            seed,
            reorder: true,
            ..FaultPlan::none()
        };
        let cfg = Config {
            seed,
            ..Config::default()
        };
        check_writable(&cfg, |m| fake(m, &Profile::UFS40, plan)).unwrap();
    }
}

/// The smallest shapes the suite accepts: one request in flight, one block a
/// transfer, 512-byte blocks.
#[test]
fn a_one_deep_one_block_device_conforms() {
    let geometry = Geometry {
        block_size: 512,
        capacity: 0,
        max_transfer: 512,
        queue_depth: 1,
    };
    let cost = Profile::EMMC51.cost;
    let cfg = Config {
        medium_len: 8 * 512 + 100,
        ..Config::default()
    };
    check_writable(&cfg, |m| {
        FakeFlash::with_model(m.to_vec(), geometry, cost, FaultPlan::none())
    })
    .unwrap();
}

/// A window over the fake: the medium sits three blocks into a larger device.
#[test]
fn a_window_conforms() {
    const PAD: usize = 3 * 4096;
    let make = |m: &[u8]| {
        let mut bytes = vec![0xA7u8; PAD];
        bytes.extend_from_slice(m);
        bytes.extend_from_slice(&[0x7Au8; PAD]);
        let dev = fake(&bytes, &Profile::UFS31, FaultPlan::none());
        Window::<_>::new(dev, PAD as u64, m.len() as u64 / 4096 * 4096).unwrap()
    };
    check_writable(&Config::default(), make).unwrap();
}

/// With no faults the injector is transparent, alone and over a window.
#[test]
fn a_fault_injector_without_faults_conforms() {
    let cfg = Config::default();
    check_writable(&cfg, |m| {
        FaultInjector::<_>::new(fake(m, &Profile::UFS40, FaultPlan::none()), Faults::none())
    })
    .unwrap();
    check_writable(&cfg, |m| {
        let window = Window::<_>::new(fake(m, &Profile::DISK, FaultPlan::none()), 0, 64 * 4096);
        FaultInjector::<_, 8>::new(
            window.unwrap(),
            Faults {
                seed: 3,
                ..Faults::none()
            },
        )
    })
    .unwrap();
}

#[test]
fn the_suite_catches_wrong_bytes_and_failed_reads() {
    let flips = Faults {
        bit_flip_ppm: 1_000_000,
        ..Faults::none()
    };
    let err = check(&Config::default(), |m| {
        FaultInjector::<_>::new(fake(m, &Profile::UFS40, FaultPlan::none()), flips)
    })
    .unwrap_err();
    assert_eq!(err.check, "reads_return_the_medium");
    assert!(err.detail.contains("differs from the medium"), "{err}");

    let errors = Faults {
        read_error_ppm: 1_000_000,
        ..Faults::none()
    };
    let err = check(&Config::default(), |m| {
        FaultInjector::<_>::new(fake(m, &Profile::UFS40, FaultPlan::none()), errors)
    })
    .unwrap_err();
    assert!(err.detail.contains("failed: Err(Io)"), "{err}");
}

/// A device that claims a deeper queue than it has, or hands back tags it
/// was not given.
struct Liar<D> {
    inner: D,
    extra_depth: u16,
    retag: bool,
}

impl<D: FlashDevice> ErrorType for Liar<D> {
    type Error = D::Error;
}

impl<D: FlashDevice> FlashDevice for Liar<D> {
    fn geometry(&self) -> Geometry {
        let g = self.inner.geometry();
        Geometry {
            queue_depth: g.queue_depth + self.extra_depth,
            ..g
        }
    }
    fn cost_model(&self) -> CostModel {
        self.inner.cost_model()
    }
    fn submit<A: DramArena>(
        &mut self,
        arena: &mut A,
        reads: &[ReadRequest],
    ) -> Result<(), D::Error> {
        self.inner.submit(arena, reads)
    }
    fn complete<A: DramArena>(
        &mut self,
        arena: &mut A,
        done: &mut [Completion],
    ) -> Result<usize, D::Error> {
        let n = self.inner.complete(arena, done)?;
        if self.retag {
            done.iter_mut().take(n).for_each(|c| c.tag = 0);
        }
        Ok(n)
    }
    fn in_flight(&self) -> usize {
        self.inner.in_flight()
    }
}

#[test]
fn the_suite_catches_a_false_queue_depth_and_lost_tags() {
    let liar = |extra_depth, retag| {
        move |m: &[u8]| Liar {
            inner: fake(m, &Profile::UFS40, FaultPlan::none()),
            extra_depth,
            retag,
        }
    };
    let err = full_queue(
        &mut liar(1, false)(&Config::default().medium()),
        &Config::default().medium(),
    )
    .unwrap_err();
    assert!(
        err.detail.contains("filling the queue was refused"),
        "{err}"
    );
    let err = check(&Config::default(), liar(0, true)).unwrap_err();
    assert!(err.detail.contains("carried tags"), "{err}");
}

#[test]
fn a_device_too_small_for_the_suite_is_told_so() {
    let cfg = Config {
        medium_len: 4 * 4096,
        ..Config::default()
    };
    let err = check(&cfg, |m| fake(m, &Profile::UFS40, FaultPlan::none())).unwrap_err();
    assert!(err.detail.contains("needs 8 blocks"), "{err}");
    assert!(err
        .to_string()
        .starts_with("flash conformance: reads_return_the_medium"));
}
