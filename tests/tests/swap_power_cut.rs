//! The KV swap area under power loss, and its refusals.
//!
//! The power-cut property: a scripted sequence (format, commit A, commit
//! B, recommit A keeping some chunks and rewriting others with more
//! tokens, delete B, commit C, recommit C) is first run without faults to
//! count the bytes it writes; then, for every byte offset of that write
//! stream, it is run again with the power cut there (with writes durable at
//! once, and with a volatile write cache under several seeds), the device
//! is power-cycled and the area opened. The recovered state must equal,
//! bit for bit (every token, every chunk payload), the state before the
//! interrupted operation or the state after it: never a mix, never an
//! error that loses a committed context. Then the area is used again
//! (commit, reopen) to show free space was rebuilt right.

mod swap;

use std::time::Instant;

use lode_hal::fake::{FakeFlash, FaultPlan};
use lode_kernel::swap::{OpenError, SwapArea};

use swap::{apply, device, memory, read_state, run, script, states, Op, State, FINGERPRINT};

/// The script from format on a fresh device with `plan`; returns the
/// device and how many operations completed (format is operation 0).
fn run_script(
    plan: FaultPlan,
    ops: &[Op],
    states: &[State],
) -> (FakeFlash<Vec<u8>>, usize, Vec<u64>) {
    let mut dev = device(plan);
    let mut mem = memory();
    let mut marks = Vec::new();
    let Ok(mut area) = SwapArea::format(&mut dev, &FINGERPRINT, &mut mem) else {
        return (dev, 0, marks);
    };
    let mut done = 1;
    marks.push(area.device().counters().bytes_written);
    for (n, op) in ops.iter().enumerate() {
        if let Err(e) = run(&mut area, op, &states[n + 1]) {
            if plan.power_loss_after_bytes.is_none() {
                panic!("op {n}: {e:?}");
            }
            break;
        }
        done += 1;
        marks.push(area.device().counters().bytes_written);
    }
    drop(area);
    (dev, done, marks)
}

#[test]
fn every_power_cut_recovers_the_state_before_or_after() {
    let ops = script();
    let states = states(&ops);
    let (clean, done, marks) = run_script(FaultPlan::none(), &ops, &states);
    assert_eq!(done, ops.len() + 1);
    let total = *marks.last().unwrap();
    {
        let mut dev = clean;
        let mut mem = memory();
        let mut area = SwapArea::open(&mut dev, &FINGERPRINT, &mut mem).unwrap();
        assert_eq!(read_state(&mut area), *states.last().unwrap());
    }
    let start = Instant::now();
    let mut cuts = 0u64;
    let modes: [(bool, u64); 3] = [(false, 0), (true, 1), (true, 2)];
    for cut in 0..=total {
        for (volatile_writes, seed) in modes {
            let plan = FaultPlan {
                seed: seed ^ cut,
                volatile_writes,
                power_loss_after_bytes: Some(cut),
                ..FaultPlan::none()
            };
            let (mut dev, done, _) = run_script(plan, &ops, &states);
            assert!(
                done <= ops.len(),
                "cut {cut}: the power loss must interrupt something"
            );
            dev.power_cycle();
            cuts += 1;
            let mut mem = memory();
            let opened = SwapArea::open(&mut dev, &FINGERPRINT, &mut mem);
            let mut area = match opened {
                // A cut during format: nothing was ever committed.
                Err(OpenError::NoSuperblock) if done == 0 => continue,
                Err(e) => panic!("cut {cut} in op {done} (volatile {volatile_writes}): {e:?}"),
                Ok(a) => a,
            };
            let got = read_state(&mut area);
            let before = done.checked_sub(1).map(|d| &states[d]);
            let after = &states[done];
            assert!(
                before == Some(&got) || after == &got,
                "cut {cut} in op {done} (volatile {volatile_writes}): recovered {got:?}"
            );
            // Keep going: a commit and a delete on the recovered state, then
            // a reopen, must see exactly the model.
            let extra = Op::Commit {
                id: 0xD,
                tokens: 30,
                keep: vec![],
                write: vec![(0, 800), (1, 400)],
            };
            let expect = apply(&got, &extra, 99);
            run(&mut area, &extra, &expect).unwrap();
            let expect = apply(&expect, &Op::Delete(0xD), 100);
            run(&mut area, &Op::Delete(0xD), &expect).unwrap();
            let free = area.free_bytes();
            drop(area);
            let mut mem = memory();
            let mut area = SwapArea::open(&mut dev, &FINGERPRINT, &mut mem).unwrap();
            assert_eq!(read_state(&mut area), expect, "cut {cut}: after recovery");
            assert_eq!(
                area.free_bytes(),
                free,
                "cut {cut}: free space rebuilt alike"
            );
        }
    }
    eprintln!(
        "swap power cut: {} byte offsets x {} modes = {cuts} cuts in {:.1} s",
        total + 1,
        modes.len(),
        start.elapsed().as_secs_f64()
    );
}
