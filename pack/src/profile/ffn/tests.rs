//! The profiling FFN against the resident dense FFN on a small random
//! model: identical when nothing is cut, exact active counts at a
//! quantile, and bitsets recorded for the right token and layer.

use std::cell::RefCell;

use lode_formats::gguf::Dims;
use lode_formats::trace::ActiveSet;
use lode_formats::DType;
use lode_hal::compute::quant::quantize_row;
use lode_hal::compute::{CpuCompute, CpuConfig};
use lode_hal::slice_arena::SliceArena;
use lode_kernel::arena::{DramArena, SlotKind};
use lode_kernel::model::{DenseFfn, Limits, RawTensor, TensorSource};
use lode_kernel::rng::SplitMix64;

use super::*;

const ROWS: usize = 8;

fn cfg() -> LlamaConfig {
    LlamaConfig {
        layers: 2,
        hidden: 64,
        ffn: 96,
        heads: 2,
        kv_heads: 1,
        head_dim: 32,
        vocab: 32,
        rope_base: 10_000.0,
        rms_eps: 1e-5,
        context: 64,
        tied_embeddings: true,
    }
}

/// FFN tensors of random Q8_0 weights.
struct Src(Vec<(String, Dims, Vec<u8>)>);

impl Src {
    fn random(c: &LlamaConfig, seed: u64) -> Src {
        let mut rng = SplitMix64::new(seed);
        let mut matrix = |rows: usize, cols: usize| {
            let rb = DType::Q8_0.row_bytes(cols as u64).unwrap() as usize;
            let mut data = vec![0u8; rows * rb];
            for r in data.chunks_exact_mut(rb) {
                let v: Vec<f32> = (0..cols)
                    .map(|_| (rng.unit_f64() as f32 - 0.5) * 0.5)
                    .collect();
                quantize_row(DType::Q8_0, &v, r).unwrap();
            }
            (Dims::new(&[cols as u64, rows as u64]).unwrap(), data)
        };
        let mut t = Vec::new();
        for l in 0..c.layers {
            for (name, rows, cols) in [
                ("ffn_gate", c.ffn, c.hidden),
                ("ffn_up", c.ffn, c.hidden),
                ("ffn_down", c.hidden, c.ffn),
            ] {
                let (dims, data) = matrix(rows, cols);
                t.push((format!("blk.{l}.{name}.weight"), dims, data));
            }
        }
        Src(t)
    }
}

impl TensorSource for Src {
    fn tensor(&self, name: &str) -> Result<Option<RawTensor<'_>>, LoadError> {
        Ok(self.0.iter().find(|t| t.0 == name).map(|t| RawTensor {
            dtype: DType::Q8_0,
            dims: t.1,
            data: &t.2,
        }))
    }
}

struct Rig<'m> {
    arena: SliceArena<'m>,
    cpu: CpuCompute<'static>,
    dense: DenseFfn,
    io: FfnIo,
}

impl<'m> Rig<'m> {
    fn new(mem: &'m mut [u8]) -> Rig<'m> {
        let c = cfg();
        let mut arena = SliceArena::new(mem);
        let dense =
            DenseFfn::load(&Src::random(&c, 7), &c, &Limits::new(16, ROWS), &mut arena).unwrap();
        let input = arena
            .alloc(ROWS * c.hidden * 4, 64, SlotKind::Scratch)
            .unwrap();
        let output = arena
            .alloc(ROWS * c.hidden * 4, 64, SlotKind::Scratch)
            .unwrap();
        let mut rng = SplitMix64::new(3);
        let x: &mut [f32] = bytemuck::cast_slice_mut(arena.bytes_mut(input).unwrap());
        x.iter_mut()
            .for_each(|v| *v = rng.unit_f64() as f32 * 4.0 - 2.0);
        let mut cpu = CpuCompute::new(CpuConfig::new(c.ffn)).unwrap();
        cpu.reserve_batch(c.ffn, ROWS).unwrap();
        Rig {
            arena,
            cpu,
            dense,
            io: FfnIo {
                input,
                output,
                rows: ROWS,
            },
        }
    }

    fn output(&self) -> Vec<f32> {
        bytemuck::cast_slice(self.arena.bytes(self.io.output).unwrap()).to_vec()
    }

    fn dense_out(&mut self, layer: usize) -> Vec<f32> {
        self.dense
            .run(layer, &mut self.arena, &mut self.cpu, self.io)
            .unwrap();
        self.output()
    }

    /// Both layers through `p` over the same input; each layer's output.
    fn profiled(&mut self, p: &RefCell<Profiler>) -> [Vec<f32>; 2] {
        p.borrow_mut().begin_window(ROWS).unwrap();
        let mut ffn = ProfilingFfn(p);
        core::array::from_fn(|l| {
            ffn.run(l, &mut self.arena, &mut self.cpu, self.io).unwrap();
            self.output()
        })
    }

    /// `silu(gate·x)` and `silu(gate·x)·(up·x)` of `layer`, as the backend
    /// computes them.
    fn activations(&mut self, layer: usize) -> (Vec<f32>, Vec<f32>) {
        let c = cfg();
        let l = self.dense.layers()[layer];
        let (t, m) = self.arena.parts_mut();
        let ([], sh) = split::<0>(t, m, []).unwrap();
        let x = sh.f32s(self.io.input).unwrap();
        let mut g = vec![0.0; ROWS * c.ffn];
        let mut u = vec![0.0; ROWS * c.ffn];
        let cpu = &mut self.cpu;
        cpu.matmul(&l.gate.matrix(&sh).unwrap(), x, ROWS, &mut g)
            .unwrap();
        cpu.matmul(&l.up.matrix(&sh).unwrap(), x, ROWS, &mut u)
            .unwrap();
        let gate = g.iter().map(|&v| silu(v)).collect();
        cpu.swiglu(&mut g, &u).unwrap();
        (gate, g)
    }
}

fn profiler(rig: &Rig<'_>, mode: ScoreMode) -> RefCell<Profiler> {
    RefCell::new(Profiler::new(rig.dense.layers(), &cfg(), ROWS, mode).unwrap())
}

#[test]
fn calibration_and_a_zero_threshold_change_nothing() {
    let mut mem = vec![0u8; 1 << 20];
    let mut rig = Rig::new(&mut mem);
    let want = [rig.dense_out(0), rig.dense_out(1)];
    let p = profiler(&rig, ScoreMode::Exact);
    assert_eq!(rig.profiled(&p), want, "calibration pass is the dense FFN");
    assert_eq!(p.borrow().sampled_tokens(), ROWS);
    assert_eq!(p.borrow_mut().start_masking(0.0).unwrap(), vec![0.0, 0.0]);
    assert_eq!(rig.profiled(&p), want, "nothing cut at sparsity 0");
    let p = p.borrow();
    let (active, tokens) = p.active().unwrap();
    assert_eq!(tokens, ROWS as u64);
    assert_eq!(active, [(ROWS * 96) as u64; 2]);
    for t in 0..ROWS {
        let sets = p.token_bitsets(t).unwrap();
        assert_eq!(sets.len(), 2);
        assert!(sets.iter().all(|b| b.iter().all(|&x| x == 0xFF)));
    }
    assert!(p.token_bitsets(ROWS).is_none());
}

#[test]
fn masking_keeps_the_quantile_and_records_each_token_and_layer() {
    for mode in [ScoreMode::Exact, ScoreMode::Gate] {
        let mut mem = vec![0u8; 1 << 20];
        let mut rig = Rig::new(&mut mem);
        let dense = [rig.dense_out(0), rig.dense_out(1)];
        let p = profiler(&rig, mode);
        rig.profiled(&p);
        let thr = p.borrow_mut().start_masking(0.5).unwrap();
        let sparse = rig.profiled(&p);
        assert_ne!(
            sparse, dense,
            "{mode:?}: cutting half the neurons changes the output"
        );
        let p = p.borrow();
        // The sample held every score the mask saw: exactly the upper
        // half (768 scores, rank 384) stays active.
        assert_eq!(p.active().unwrap().0, [384, 384], "{mode:?}");
        for (layer, &thr) in thr.iter().enumerate() {
            let (gate, act) = rig.activations(layer);
            let score = match mode {
                ScoreMode::Exact => act,
                ScoreMode::Gate => gate,
            };
            for t in 0..ROWS {
                let sets = p.token_bitsets(t).unwrap();
                let set = ActiveSet::from_bits(sets[layer], 96).unwrap();
                for n in 0..96 {
                    let s = score[t * 96 + n as usize].abs();
                    assert_eq!(set.contains(n), s >= thr, "{mode:?} t{t} l{layer} n{n}");
                }
            }
        }
    }
}

#[test]
fn the_top_k_pass_keeps_each_tokens_strongest_neurons() {
    let mut mem = vec![0u8; 1 << 20];
    let mut rig = Rig::new(&mut mem);
    let dense = [rig.dense_out(0), rig.dense_out(1)];
    let p = profiler(&rig, ScoreMode::Gate);
    rig.profiled(&p);
    p.borrow_mut().start_masking(0.5).unwrap();
    rig.profiled(&p);
    // Keeping every neuron is the dense FFN, whatever the score mode.
    p.borrow_mut().start_top_k(96, 1);
    assert_eq!(rig.profiled(&p), dense);
    assert!(p.borrow().active().is_none(), "top-k records no trace");
    // Keeping 24: each token's 24 largest |activation| (not gate scores),
    // exactly what the down product then sees.
    p.borrow_mut().start_top_k(24, 1);
    let got = rig.profiled(&p);
    for (layer, got) in got.iter().enumerate() {
        let (_, mut act) = rig.activations(layer);
        for row in act.chunks_exact_mut(96) {
            let mut mags: Vec<f32> = row.iter().map(|v| v.abs()).collect();
            mags.sort_by(|a, b| b.total_cmp(a));
            let t = mags[23];
            row.iter_mut()
                .filter(|v| v.abs() < t)
                .for_each(|v| *v = 0.0);
            assert_eq!(row.iter().filter(|v| **v != 0.0).count(), 24);
        }
        // down · kept activations, as the backend computes it.
        let l = rig.dense.layers()[layer];
        let (t, m) = rig.arena.parts_mut();
        let ([], sh) = split::<0>(t, m, []).unwrap();
        let mut want = vec![0.0; ROWS * cfg().hidden];
        rig.cpu
            .matmul(&l.down.matrix(&sh).unwrap(), &act, ROWS, &mut want)
            .unwrap();
        assert_eq!(got, &want, "layer {layer}");
        assert_ne!(got, &dense[layer]);
    }
}

#[test]
fn the_gate_score_picks_other_neurons_than_the_exact_one() {
    let mut mem = vec![0u8; 1 << 20];
    let mut rig = Rig::new(&mut mem);
    let mut bits = Vec::new();
    for mode in [ScoreMode::Exact, ScoreMode::Gate] {
        let p = profiler(&rig, mode);
        rig.profiled(&p);
        p.borrow_mut().start_masking(0.5).unwrap();
        rig.profiled(&p);
        let p = p.borrow();
        bits.push(p.token_bitsets(0).unwrap().concat());
    }
    assert_ne!(bits[0], bits[1]);
}

#[test]
fn misuse_is_an_error() {
    let mut mem = vec![0u8; 1 << 20];
    let mut rig = Rig::new(&mut mem);
    let c = cfg();
    let layers = rig.dense.layers().to_vec();
    assert!(Profiler::new(&layers[..1], &c, ROWS, ScoreMode::Exact).is_err());
    assert!(Profiler::new(&layers, &c, 0, ScoreMode::Exact).is_err());
    let wide = LlamaConfig { ffn: 128, ..c };
    assert!(Profiler::new(&layers, &wide, ROWS, ScoreMode::Exact).is_err());

    let p = profiler(&rig, ScoreMode::Exact);
    let mut ffn = ProfilingFfn(&p);
    let (a, cpu, io) = (&mut rig.arena, &mut rig.cpu, rig.io);
    assert!(ffn.run(2, a, cpu, io).is_err(), "no layer 2");
    assert!(ffn
        .run(
            0,
            a,
            cpu,
            FfnIo {
                rows: ROWS + 1,
                ..io
            }
        )
        .is_err());
    ffn.run(0, a, cpu, io).unwrap();
    assert!(ffn.run(1, a, cpu, FfnIo { rows: 2, ..io }).is_err());
    // Layer 1 has no scores yet: no threshold can be taken.
    assert_eq!(p.borrow_mut().start_masking(0.5), Err(SampleError::Empty));
    ffn.run(1, a, cpu, io).unwrap();
    // A masking window shorter than the batch.
    p.borrow_mut().start_masking(0.5).unwrap();
    assert_eq!(
        p.borrow_mut().start_masking(0.5),
        Err(SampleError::Finished)
    );
    p.borrow_mut().begin_window(ROWS - 1).unwrap();
    assert!(ffn.run(0, a, cpu, io).is_err());
    // Busy while the driver holds it.
    let held = p.borrow_mut();
    assert!(ProfilingFfn(&p).run(0, a, cpu, io).is_err());
    drop(held);
}
