//! Opening a [`BlockFlash`]: the file's kind, length and direct-I/O
//! alignment probed, the window placed, the bounce memory mapped and an
//! engine started (io_uring, or the pread pool where the kernel refuses a
//! ring).

use super::*;

impl BlockFlash {
    pub(super) fn open_inner(
        path: &Path,
        window: Option<Window>,
        opts: BlockFlashOptions,
    ) -> Result<Self, BlockFlashError> {
        opts.validate()?;
        let dsync = opts.writable && opts.write_mode == WriteMode::Dsync;
        let open = |direct: bool| {
            let mut flags = 0;
            if direct {
                flags |= libc::O_DIRECT;
            }
            if dsync {
                flags |= libc::O_DSYNC;
            }
            OpenOptions::new()
                .read(true)
                .write(opts.writable)
                .custom_flags(flags)
                .open(path)
        };
        let file = match open(opts.direct != DirectIo::Off) {
            // A file system without O_DIRECT refuses the open itself; open
            // without it and let discovery record the refusal (or, under
            // `Require`, report it).
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) && opts.direct != DirectIo::Off => {
                open(false)
            }
            other => other,
        }
        .map_err(|e| BlockFlashError::io(Reason::Open, e).at(path))?;
        let mut dev = Self::build(file, window, opts, dsync).map_err(|e| e.at(path))?;
        dev.path = Some(path.to_path_buf());
        Ok(dev)
    }

    #[allow(unsafe_code)]
    pub(super) fn build(
        file: File,
        window: Option<Window>,
        opts: BlockFlashOptions,
        dsync_on_open: bool,
    ) -> Result<Self, BlockFlashError> {
        let (kind, file_len, direct) =
            probe::discover(&file, opts.direct, window.map(|w| w.offset))?;
        let (block, mem_align) = block_size(opts.block_size, direct)?;
        let (window, capacity) =
            Window::place(window, file_len, block).map_err(|m| BlockFlashError::new(m.into()))?;
        if !opts.max_transfer.is_multiple_of(block) {
            return Err(BlockFlashError::new(Reason::InvalidOptions(
                "max_transfer must be a multiple of the device's block size",
            )));
        }
        let pool = BouncePool::new(opts.bounce_bytes)
            .map_err(|e| BlockFlashError::io(Reason::Bounce, e))?;
        let file = Arc::new(file);
        // SAFETY: the pool's mapping outlives the ring: the ring lives in the
        // `BlockFlash` built below, which also owns the pool, declares the
        // runner (and so drops it) first, and leaks a pool that might still
        // be written rather than unmap it (bounce.rs, point 4).
        let ring = || unsafe {
            uring::UringEngine::new(
                &file,
                u32::from(opts.queue_depth),
                (pool.base(), pool.len()),
            )
        };
        let (runner, engine) = start_engine(&file, &opts, ring)?;
        let qd = usize::from(opts.queue_depth);
        Ok(BlockFlash {
            runner,
            report: OpenReport {
                file: kind,
                direct,
                engine,
                bounce_bytes: pool.len(),
            },
            pool,
            file,
            path: None,
            window,
            geometry: Geometry {
                block_size: block,
                capacity,
                max_transfer: opts.max_transfer,
                queue_depth: opts.queue_depth,
            },
            cost: opts.cost_model,
            buf_align: mem_align.max(block) as usize,
            pending: vec![None; qd],
            // Popped from the back: ids are handed out 0, 1, 2...
            free_ids: (0..opts.queue_depth).rev().collect(),
            backlog: VecDeque::with_capacity(qd),
            ready: VecDeque::with_capacity(qd),
            reaped: Vec::with_capacity(qd),
            accepted: 0,
            write_mode: opts.write_mode,
            dsync_on_open,
            write_stage: None,
            stats: BlockFlashStats::default(),
        })
    }
}

/// The geometry's block size and the memory alignment of bounce slots.
pub(super) fn block_size(
    asked: Option<u32>,
    direct: DirectStatus,
) -> Result<(u32, u32), BlockFlashError> {
    match direct {
        DirectStatus::Direct {
            offset_align,
            mem_align,
            ..
        } => {
            let device = offset_align.max(512);
            let block = match asked {
                Some(b) if !b.is_multiple_of(device) => {
                    return Err(BlockFlashError::new(Reason::BlockSizeTooSmall {
                        requested: b,
                        device,
                    }))
                }
                Some(b) => b,
                None => device,
            };
            Ok((block, mem_align.max(1)))
        }
        DirectStatus::Buffered { .. } => Ok((asked.unwrap_or(4096), 1)),
    }
}

/// Start the engine the options ask for; say which and why. `ring` sets up
/// io_uring (a parameter so tests can make it fail like a seccomp filter
/// would).
pub(super) fn start_engine(
    file: &Arc<File>,
    opts: &BlockFlashOptions,
    ring: impl FnOnce() -> io::Result<uring::UringEngine>,
) -> Result<(Runner, EngineStatus), BlockFlashError> {
    let why = match opts.engine {
        Engine::Threads => FallbackWhy::Forced,
        Engine::IoUring | Engine::Auto => match ring() {
            Ok(ring) => {
                let status = EngineStatus::IoUring {
                    entries: ring.entries(),
                    fixed_file: ring.fixed_file(),
                    fixed_buffers: ring.fixed_buffers(),
                    deferred: ring.deferred(),
                };
                return Ok((Runner::Uring(Box::new(ring)), status));
            }
            Err(e) if opts.engine == Engine::IoUring => {
                return Err(BlockFlashError::io(Reason::IoUringUnavailable, e))
            }
            Err(e) => FallbackWhy::Unavailable {
                errno: e.raw_os_error().unwrap_or(0),
                sysctl_disabled: os::io_uring_disabled_sysctl(),
            },
        },
    };
    let pool_threads = threads::ThreadEngine::new(
        Arc::clone(file),
        opts.threads,
        opts.pin_cpu,
        usize::from(opts.queue_depth),
    )
    .map_err(|e| match e {
        threads::StartError::Spawn(e) => BlockFlashError::io(Reason::Spawn, e),
        threads::StartError::Pin(e) => BlockFlashError::io(
            Reason::Pin {
                cpu: opts.pin_cpu.unwrap_or(0),
            },
            e,
        ),
    })?;
    let status = EngineStatus::Threads {
        threads: pool_threads.threads(),
        pinned_cpu: pool_threads.pinned(),
        why,
    };
    Ok((Runner::Threads(pool_threads), status))
}
