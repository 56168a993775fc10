use super::*;
use std::sync::atomic::AtomicU64;

#[test]
fn every_chunk_runs_exactly_once() {
    for spin in [Duration::ZERO, Duration::from_micros(200)] {
        let mut p = Pool::new(3, spin).unwrap();
        assert_eq!(p.threads(), 4);
        for round in 0..300u64 {
            let n = (round % 37) as usize;
            let hits: Vec<AtomicU64> = (0..n).map(|_| AtomicU64::new(0)).collect();
            p.run(n, &|i| {
                hits[i].fetch_add(round + 1, Ordering::Relaxed);
            });
            for h in &hits {
                assert_eq!(h.load(Ordering::Relaxed), round + 1);
            }
            if round % 50 == 0 {
                // Let the workers fall asleep to exercise the slow path.
                std::thread::sleep(Duration::from_millis(2));
            }
        }
    }
}

#[test]
fn slow_chunks_all_run() {
    let mut p = Pool::new(1, Duration::from_millis(50)).unwrap();
    let ids: Vec<Mutex<Option<std::thread::ThreadId>>> = (0..8).map(|_| Mutex::new(None)).collect();
    // Warm the worker up so it is spinning when the job arrives.
    p.run(2, &|_| {});
    p.run(8, &|i| {
        std::thread::sleep(Duration::from_millis(5));
        *ids[i].lock().unwrap() = Some(std::thread::current().id());
    });
    // On a loaded machine the worker may get few chunks, but all ran.
    assert!(ids.iter().all(|m| m.lock().unwrap().is_some()));
}

#[test]
fn borrowed_mutable_parts_are_written() {
    let mut p = Pool::new(1, Duration::from_micros(50)).unwrap();
    let mut out = vec![0u32; 10];
    {
        let (a, b) = out.split_at_mut(5);
        let cells = [Mutex::new(a), Mutex::new(b)];
        p.run(2, &|i| {
            let mut g = cells[i].lock().unwrap();
            for v in g.iter_mut() {
                *v = i as u32 + 1;
            }
        });
    }
    assert_eq!(out, [1, 1, 1, 1, 1, 2, 2, 2, 2, 2]);
}

#[test]
fn panics_reach_the_caller_and_pool_survives() {
    let mut p = Pool::new(1, Duration::ZERO).unwrap();
    for bad in [0usize, 5] {
        let r = catch_unwind(AssertUnwindSafe(|| {
            p.run(8, &|i| {
                if i == bad {
                    panic!("chunk boom");
                }
            })
        }));
        assert!(r.is_err());
    }
    let count = AtomicU64::new(0);
    p.run(6, &|_| {
        count.fetch_add(1, Ordering::Relaxed);
    });
    assert_eq!(count.load(Ordering::Relaxed), 6);
}

#[test]
fn zero_workers_runs_inline() {
    let mut p = Pool::new(0, Duration::ZERO).unwrap();
    let count = AtomicU64::new(0);
    p.run(3, &|_| {
        count.fetch_add(1, Ordering::Relaxed);
    });
    assert_eq!(count.load(Ordering::Relaxed), 3);
}
