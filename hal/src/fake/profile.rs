//! Device profiles: the shape and read-cost model of real storage parts, so
//! a [`FakeFlash`](super::FakeFlash) can stand in for them in simulation.
//!
//! Every figure below comes from a named source, and each constant shows the
//! arithmetic that turns the source's headline numbers into the three
//! parameters of [`CostModel`]:
//!
//! - `command_ns`: the latency of one small read at queue depth 1, minus the
//!   time to move its bytes;
//! - `bytes_per_sec`: the sequential read bandwidth;
//! - `queue_depth`: the *effective* overlap, `command_ns` divided by the
//!   per-command cost at the device's random-read IOPS limit. It is usually far
//!   below the protocol queue depth reported in [`Geometry::queue_depth`].
//!
//! With those, a batch of many small reads costs `command_ns / queue_depth`
//! per command (the IOPS limit) and a batch of large reads costs its bytes
//! (the bandwidth limit), which is what a read planner needs to decide between
//! merging reads and issuing them separately.
//!
//! All profiles use 4096-byte blocks: the page size that direct I/O and the
//! flash translation layers of these parts work in. `Geometry::capacity` is
//! the nominal size of the part; a `FakeFlash` replaces it with the length of
//! its own backing store.

use lode_kernel::cost::CostModel;
use lode_kernel::flash::Geometry;

/// A named storage device: its geometry, its read-cost model and where the
/// numbers come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Profile {
    /// Short name, as accepted by [`Profile::by_name`] (and by the CLI as
    /// `fake:<name>`).
    pub name: &'static str,
    /// Block size, nominal capacity, largest transfer and protocol queue depth.
    pub geometry: Geometry,
    /// How reads are priced (see the module docs).
    pub cost: CostModel,
    /// One line saying what the profile models and where its figures come from.
    pub about: &'static str,
}

const BLOCK: u32 = 4096;
const KIB: u32 = 1024;
const MIB: u32 = 1024 * 1024;

impl Profile {
    /// This machine's disk: ext4 over virtio, measured with fio (O_DIRECT,
    /// io_uring, 2 GiB file), figures from DESIGN.md "Facts about this
    /// machine's storage".
    ///
    /// - Fixed cost: "about 50 us per read" -> `command_ns = 50_000`.
    /// - Bandwidth: "0.8 us per KiB" -> 1024 B / 0.8 us = 1.28e9 B/s.
    /// - Overlap: "QD32 4 KiB random: about 80k IOPS" -> 1e9 / 80_000 =
    ///   12.5 us per command at depth; 50 us / 12.5 us = 4.
    ///
    /// Check against the QD1 table: 4 KiB -> 50 + 3.2 = 53.2 us (18.8k IOPS,
    /// measured 19k); 1 MiB -> 50 + 819 = 869 us (1.15k IOPS, measured 1.2k).
    ///
    /// Geometry: capacity 2 GiB (the fio test file); `max_transfer` 4 MiB and
    /// `queue_depth` 256 are this machine's `/sys/block/vda/queue/max_sectors_kb`
    /// (4096) and `nr_requests` (256).
    pub const DISK: Profile = Profile {
        name: "disk",
        geometry: Geometry {
            block_size: BLOCK,
            capacity: 2 << 30,
            max_transfer: 4 * MIB,
            queue_depth: 256,
        },
        cost: CostModel {
            command_ns: 50_000,
            bytes_per_sec: 1_280_000_000,
            queue_depth: 4,
        },
        about:
            "this machine's virtio disk (fio, DESIGN.md): 50 us/read + 0.8 us/KiB, 80k IOPS at QD32",
    };

    /// A UFS 3.1 phone part, figures from DESIGN.md "Phone flash": about
    /// 2.1 GB/s sequential, 100k random-read IOPS.
    ///
    /// - Bandwidth: 2.1 GB/s -> `bytes_per_sec = 2_100_000_000`.
    /// - Per command at depth: 1e9 / 100_000 = 10 us.
    /// - Overlap: DESIGN.md gives no QD1 latency for UFS 3.1. We assume the
    ///   same effective overlap as derived for UFS 4.0 below (2: both are the
    ///   same single-queue UFS design), so `command_ns = 2 x 10 us = 20_000`.
    ///   This is the one assumed figure of the profile.
    /// - Consistency: a read stops being command-bound once its transfer
    ///   exceeds the 10 us per-command cost, at 10 us x 2.1 GB/s = 21 KB,
    ///   matching DESIGN.md's "below about 24 KiB a UFS read costs about the
    ///   same as a 4 KiB read".
    ///
    /// Geometry: a single 32-entry command queue (DESIGN.md); `max_transfer`
    /// 1 MiB, the Linux UFS host driver's `max_sectors` (ufshcd); nominal
    /// capacity 128 GB.
    pub const UFS31: Profile = Profile {
        name: "ufs31",
        geometry: Geometry {
            block_size: BLOCK,
            capacity: 128_000_000_000,
            max_transfer: MIB,
            queue_depth: 32,
        },
        cost: CostModel {
            command_ns: 20_000,
            bytes_per_sec: 2_100_000_000,
            queue_depth: 2,
        },
        about: "UFS 3.1 phone flash (DESIGN.md): 2.1 GB/s sequential, 100k random-read IOPS; QD1 latency assumed",
    };

    /// A UFS 4.0 phone part, figures from DESIGN.md "Phone flash": about
    /// 4.2 GB/s sequential, 4 KiB random about 1 GB/s, 450 MB/s with 4 KiB
    /// sequential reads at QD1, a single 32-entry command queue.
    ///
    /// - Bandwidth: 4.2 GB/s -> `bytes_per_sec = 4_200_000_000`.
    /// - Fixed cost: 450 MB/s of 4 KiB reads at QD1 is 4096 / 450e6 = 9.10 us
    ///   per read; its transfer takes 4096 / 4.2e9 = 0.98 us, leaving
    ///   `command_ns` = 8.1 us. (The QD1 figure is for sequential reads, which
    ///   profit from the device's read-ahead, so random reads may cost more.)
    /// - Overlap: 1 GB/s of 4 KiB random reads is 244k IOPS, 4.1 us per
    ///   command; 8.1 / 4.1 = 1.98 -> 2 (giving 247k IOPS, about 1.01 GB/s).
    /// - Consistency: command-bound up to 4.05 us x 4.2 GB/s = 17 KB per read,
    ///   in line with the "about 24 KiB" knee of DESIGN.md.
    ///
    /// Geometry: 32-entry queue (DESIGN.md); `max_transfer` 1 MiB (Linux
    /// ufshcd `max_sectors`); nominal capacity 256 GB.
    pub const UFS40: Profile = Profile {
        name: "ufs40",
        geometry: Geometry {
            block_size: BLOCK,
            capacity: 256_000_000_000,
            max_transfer: MIB,
            queue_depth: 32,
        },
        cost: CostModel {
            command_ns: 8_100,
            bytes_per_sec: 4_200_000_000,
            queue_depth: 2,
        },
        about: "UFS 4.0 phone flash (DESIGN.md): 4.2 GB/s sequential, ~1 GB/s 4 KiB random, 450 MB/s 4 KiB at QD1",
    };

    /// An eMMC 5.1 part, figures from DESIGN.md "Phone flash": about 250 MB/s,
    /// 11k IOPS.
    ///
    /// - Bandwidth: `bytes_per_sec = 250_000_000`.
    /// - Per command: 1e9 / 11_000 = 90.9 us. With no QD1 figure and little
    ///   overlap to expect from eMMC's command queue, the model takes no
    ///   overlap (`queue_depth = 1`), so `command_ns = 90_909` and random 4 KiB
    ///   reads run at 11k IOPS at any depth.
    /// - Consistency: command-bound up to 90.9 us x 250 MB/s = 22.7 KB per
    ///   read, in line with the "about 24 KiB" knee of DESIGN.md.
    ///
    /// Geometry: the eMMC 5.1 command queue holds 32 tasks; `max_transfer`
    /// 512 KiB, the Linux SDHCI host's `max_req_size` (its SDMA boundary);
    /// nominal capacity 64 GB.
    pub const EMMC51: Profile = Profile {
        name: "emmc51",
        geometry: Geometry {
            block_size: BLOCK,
            capacity: 64_000_000_000,
            max_transfer: 512 * KIB,
            queue_depth: 32,
        },
        cost: CostModel {
            command_ns: 90_909,
            bytes_per_sec: 250_000_000,
            queue_depth: 1,
        },
        about: "eMMC 5.1 (DESIGN.md): 250 MB/s, 11k IOPS, no command overlap",
    };

    /// A PCIe 4.0 NVMe SSD, figures from Samsung's published 980 PRO (1 TB)
    /// specification: sequential read up to 7,000 MB/s; random 4 KB read up
    /// to 1,000K IOPS at QD32 and 22K IOPS at QD1. NVMe is not in DESIGN.md.
    ///
    /// - Bandwidth: `bytes_per_sec = 7_000_000_000`.
    /// - Fixed cost: 22k IOPS at QD1 is 1e9 / 22_000 = 45.5 us per read; its
    ///   4 KiB transfer takes 4096 / 7e9 = 0.6 us, leaving `command_ns` =
    ///   44.9 us.
    /// - Overlap: 1M IOPS at depth is 1 us per command; 44.9 / 1 -> 45.
    ///
    /// Geometry: `queue_depth` 1024, the Linux nvme-pci driver's default I/O
    /// queue depth; `max_transfer` 4 MiB, that driver's per-command cap
    /// (`NVME_MAX_KB_SZ`; a drive's MDTS may lower it); nominal capacity 1 TB.
    pub const NVME: Profile = Profile {
        name: "nvme",
        geometry: Geometry {
            block_size: BLOCK,
            capacity: 1_000_000_000_000,
            max_transfer: 4 * MIB,
            queue_depth: 1024,
        },
        cost: CostModel {
            command_ns: 44_900,
            bytes_per_sec: 7_000_000_000,
            queue_depth: 45,
        },
        about: "PCIe 4.0 NVMe SSD (Samsung 980 PRO 1 TB spec): 7 GB/s, 22k IOPS at QD1, 1M IOPS at QD32",
    };

    /// Every profile, in the order the CLI lists them.
    pub const ALL: &'static [Profile] = &[
        Profile::DISK,
        Profile::UFS31,
        Profile::UFS40,
        Profile::EMMC51,
        Profile::NVME,
    ];

    /// The profile called `name` (ASCII case is ignored), if there is one.
    ///
    /// ```
    /// use lode_hal::fake::Profile;
    ///
    /// assert_eq!(Profile::by_name("ufs40").map(|p| p.cost.command_ns), Some(8_100));
    /// assert!(Profile::by_name("floppy").is_none());
    /// ```
    pub fn by_name(name: &str) -> Option<&'static Profile> {
        Profile::ALL
            .iter()
            .find(|p| p.name.eq_ignore_ascii_case(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_found() {
        for (i, p) in Profile::ALL.iter().enumerate() {
            assert_eq!(Profile::by_name(p.name), Some(p));
            for q in &Profile::ALL[i + 1..] {
                assert_ne!(p.name, q.name);
            }
        }
        assert_eq!(Profile::by_name("NVMe").map(|p| p.name), Some("nvme"));
        assert_eq!(Profile::by_name(""), None);
        assert_eq!(Profile::by_name("fake:disk"), None);
        let names: [&str; 5] = ["disk", "ufs31", "ufs40", "emmc51", "nvme"];
        for n in names {
            assert!(Profile::by_name(n).is_some(), "{n}");
        }
    }

    #[test]
    fn every_profile_is_well_formed() {
        for p in Profile::ALL {
            let g = p.geometry;
            assert!(g.block_size.is_power_of_two(), "{}", p.name);
            assert_eq!(g.block_size, 4096, "{}", p.name);
            assert!(g.max_transfer >= g.block_size, "{}", p.name);
            assert_eq!(g.max_transfer % g.block_size, 0, "{}", p.name);
            assert_eq!(g.capacity % u64::from(g.block_size), 0, "{}", p.name);
            assert!(g.queue_depth >= 1, "{}", p.name);
            assert!(p.cost.is_valid(), "{}", p.name);
            // The effective overlap never exceeds what the protocol allows.
            assert!(p.cost.queue_depth <= g.queue_depth, "{}", p.name);
            assert!(!p.about.is_empty(), "{}", p.name);
        }
    }

    /// Random 4 KiB reads per second at depth, as the model predicts them.
    fn iops_at_depth(c: &CostModel) -> u64 {
        let n = 100_000;
        n * 1_000_000_000 / c.batch_ns(n, n * 4096)
    }

    /// Each profile reproduces the headline figures it was derived from,
    /// within a few percent.
    #[test]
    fn profiles_reproduce_their_sources() {
        let near = |got: u64, want: u64, pct: u64| got.abs_diff(want) * 100 <= want * pct;

        // Disk: QD1 IOPS from the fio table, and 80k IOPS at depth.
        let d = Profile::DISK.cost;
        assert!(near(1_000_000_000 / d.read_ns(4096), 19_000, 2));
        assert!(near(1_000_000_000 / d.read_ns(1 << 20), 1_200, 5));
        assert!(near(iops_at_depth(&d), 80_000, 1));

        // UFS 3.1: 100k IOPS.
        assert!(near(iops_at_depth(&Profile::UFS31.cost), 100_000, 1));

        // UFS 4.0: 450 MB/s at QD1 with 4 KiB, ~1 GB/s random at depth.
        let u = Profile::UFS40.cost;
        assert!(near(4096 * 1_000_000_000 / u.read_ns(4096), 450_000_000, 1));
        assert!(near(iops_at_depth(&u) * 4096, 1_000_000_000, 3));

        // eMMC 5.1: 11k IOPS.
        assert!(near(iops_at_depth(&Profile::EMMC51.cost), 11_000, 1));

        // NVMe: 22k IOPS at QD1, 1M at depth.
        let n = Profile::NVME.cost;
        assert!(near(1_000_000_000 / n.read_ns(4096), 22_000, 1));
        assert!(near(iops_at_depth(&n), 1_000_000, 1));

        // Large reads are bandwidth-bound on every profile.
        for p in Profile::ALL {
            let bytes = 1u64 << 30;
            let t = p.cost.batch_ns(bytes / (1 << 20), bytes);
            assert_eq!(
                t,
                u64::from(p.cost.command_ns) + p.cost.transfer_ns(bytes),
                "{}",
                p.name
            );
        }
    }
}
