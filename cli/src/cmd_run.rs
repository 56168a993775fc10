//! `lode run`: generate text from a GGUF model held in DRAM, or from a lode
//! image streamed from flash under a DRAM budget.
//!
//! A thin front end over `lode-runtime`: the arguments become
//! [`SessionOptions`] and [`GenerateOptions`], the model is opened and
//! loaded by [`Session::load`], the decode loop is [`generate`], and the
//! stats are [`RunStats`]. What is left here is the command line: the
//! plan printed by `--explain`, the verify progress meter, the text
//! streamed as it comes, and the stats line (or one JSON object).

use std::error::Error;
use std::io::Write;
use std::ops::ControlFlow;

use lode_kernel::model::MAX_CONTEXT;
use lode_runtime::{generate, GenerateOptions, ModelFile, RunStats, Session, StreamStats};

use crate::session_args::{bad, ModelArgs, SampleArgs};

/// Arguments of `lode run`.
#[derive(clap::Args, Debug, Clone)]
pub struct RunArgs {
    /// Which model and how it is loaded.
    #[command(flatten)]
    pub model: ModelArgs,
    /// Prompt text (control tokens written in it are not parsed).
    #[arg(short = 'p', long)]
    pub prompt: String,
    /// Most tokens to generate (stops earlier at end of generation).
    #[arg(short = 'n', long = "n-predict", default_value_t = 32)]
    pub n_predict: usize,
    /// How tokens are chosen.
    #[command(flatten)]
    pub sample: SampleArgs,
    /// Print one JSON object instead of streaming text and a stats line.
    #[arg(long)]
    pub json: bool,
}

#[cfg(test)]
impl RunArgs {
    /// Greedy, 3 tokens after "The capital of France is", 2 threads, JSON,
    /// everything else the command line's default: what tests start from.
    pub fn greedy_json(model: std::path::PathBuf) -> RunArgs {
        RunArgs {
            model: ModelArgs {
                model,
                threads: Some(2),
                batch: 64,
                dram_budget: None,
                device: None,
                ring: None,
                explain: false,
                no_verify: false,
                sparsity: 0.0,
                no_neuron_cache: false,
            },
            prompt: "The capital of France is".into(),
            n_predict: 3,
            sample: SampleArgs {
                temperature: 0.0,
                top_k: 0,
                top_p: 1.0,
                seed: 0,
            },
            json: true,
        }
    }
}

/// Runs `lode run`, writing the text (or JSON) to `out`.
pub fn run(args: &RunArgs, out: &mut dyn Write) -> Result<(), Box<dyn Error>> {
    let gen = GenerateOptions {
        max_tokens: args.n_predict,
        sampler: args.sample.sampler()?,
        seed: args.sample.seed,
    };
    args.model.check()?;
    let file = ModelFile::open(&args.model.model)?;
    let ids = file
        .tokenizer()
        .encode(&args.prompt, file.tokenizer().specials().add_bos);
    let room = file.config().context.min(MAX_CONTEXT);
    if ids.is_empty() {
        return Err(bad("the prompt has no tokens"));
    }
    if ids.len() > room {
        return Err(bad(format!(
            "the prompt has {} tokens; the context holds at most {room}",
            ids.len()
        )));
    }
    let opts = args
        .model
        .session_options(ids.len().saturating_add(args.n_predict).min(room))?;
    let mut events = args.model.events(args.json);
    let mut session = Session::load(file, &opts, ids.len(), &mut events)?;
    let mut ctx = session.new_context();
    let mut write_err = None;
    let g = generate(&mut session, &mut ctx, &ids, &gen, |t| {
        if args.json {
            return ControlFlow::Continue(());
        }
        match out.write_all(t.piece).and_then(|()| out.flush()) {
            Ok(()) => ControlFlow::Continue(()),
            Err(e) => {
                write_err = Some(e);
                ControlFlow::Break(())
            }
        }
    })?;
    if let Some(e) = write_err {
        return Err(e.into());
    }
    let stats = RunStats::new(&session, &g, &ids, ctx.chunks());
    if args.json {
        serde_json::to_writer(&mut *out, &stats)?;
        writeln!(out)?;
    } else {
        writeln!(out)?;
        writeln!(out, "{}", stats_line(&stats))?;
        if let Some(s) = &stats.stream {
            writeln!(out, "{}", stats_block(s))?;
        }
    }
    out.flush()?;
    Ok(())
}

/// The one-line summary printed after the text.
pub fn stats_line(s: &RunStats) -> String {
    let mib = |b: usize| b as f64 / (1024.0 * 1024.0);
    format!(
        "[lode] prompt {} tokens {:.1} tok/s | decode {} tokens {:.1} tok/s | stop {:?} | \
         peak arena {} bytes ({:.1} MiB of {:.1} MiB, {:.1} MiB locked) | load {:.2} s | {} threads {}",
        s.prompt_tokens,
        s.prompt_tokens_per_s,
        s.decode_tokens,
        s.decode_tokens_per_s,
        s.stop,
        s.peak_arena_bytes,
        mib(s.peak_arena_bytes),
        mib(s.arena_bytes),
        mib(s.locked_bytes),
        s.load_seconds,
        s.threads,
        s.isa,
    )
}

/// The stats block printed after a streaming run's text.
pub fn stats_block(s: &StreamStats) -> String {
    let mib = |b: f64| b / 1048576.0;
    format!(
        "[lode] streamed from {} ({})\n\
         [lode] budget {:.1} MiB ({:.1} MiB of it outside the arena; minimum {:.1} MiB): \
         resident attention {} layers, FFN {} \
         layers, head {}; ring {} x {:.2} MiB\n\
         [lode] per token: {:.2} MiB in {:.0} reads; prefetch ready {:.0}%; {}\n\
         [lode] time: I/O wait {:.2} s, compute {:.2} s; image verified in {:.2} s{}",
        s.device,
        s.device_mode,
        mib(s.budget_bytes as f64),
        mib(s.outside_bytes as f64),
        mib(s.minimum_bytes as f64),
        s.resident_attention_layers,
        s.resident_ffn_layers,
        match (s.head_resident, s.head_resident_rows) {
            (true, _) => "resident".to_string(),
            (false, 0) => "streamed".to_string(),
            (false, rows) => format!("{rows} rows resident"),
        },
        s.ring_slots,
        mib(s.ring_slot_bytes as f64),
        mib(s.bytes_per_token),
        s.reads_per_token,
        s.prefetch_ready_rate * 100.0,
        if s.sparsity > 0.0 {
            format!(
                "sparsity {:.0}%: {:.0} down columns needed, neuron cache hit rate {:.1}% ({} \
                 slots), {:.0}% of layer reads dense",
                s.sparsity * 100.0,
                s.needed_columns_per_token,
                s.cache_hit_rate * 100.0,
                s.cache_slots,
                s.dense_plan_rate * 100.0
            )
        } else {
            "dense streaming, no neuron cache".to_string()
        },
        s.io_wait_seconds,
        s.compute_seconds,
        s.verify_seconds,
        if s.fake_io_seconds > 0.0 {
            format!("; fake device virtual I/O {:.2} s", s.fake_io_seconds)
        } else {
            String::new()
        }
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::real_model;
    use lode_formats::image::Image;
    use lode_runtime::OpenError;
    use std::path::{Path, PathBuf};

    /// A little-endian GGUF v3 file written by hand: the header, string
    /// metadata, tensor infos `(name, dims, type, offset)` and `data`.
    fn gguf(kv: &[(&str, &str)], tensors: &[(&str, &[u64], u32, u64)], data: &[u8]) -> Vec<u8> {
        fn s(b: &mut Vec<u8>, v: &str) {
            b.extend_from_slice(&(v.len() as u64).to_le_bytes());
            b.extend_from_slice(v.as_bytes());
        }
        let mut b = b"GGUF".to_vec();
        b.extend_from_slice(&3u32.to_le_bytes());
        b.extend_from_slice(&(tensors.len() as u64).to_le_bytes());
        b.extend_from_slice(&(kv.len() as u64).to_le_bytes());
        for (k, v) in kv {
            s(&mut b, k);
            b.extend_from_slice(&8u32.to_le_bytes());
            s(&mut b, v);
        }
        for (name, dims, ty, off) in tensors {
            s(&mut b, name);
            b.extend_from_slice(&(dims.len() as u32).to_le_bytes());
            for d in *dims {
                b.extend_from_slice(&d.to_le_bytes());
            }
            b.extend_from_slice(&ty.to_le_bytes());
            b.extend_from_slice(&off.to_le_bytes());
        }
        while !b.len().is_multiple_of(32) {
            b.push(0);
        }
        b.extend_from_slice(data);
        b
    }

    fn load_bytes(name: &str, bytes: &[u8]) -> OpenError {
        let dir = std::env::temp_dir().join(format!("lode-run-{}-{name}", std::process::id()));
        std::fs::write(&dir, bytes).unwrap();
        let r = ModelFile::open(&dir);
        std::fs::remove_file(&dir).unwrap();
        match r {
            Ok(_) => panic!("{name}: loaded a broken file"),
            Err(e) => e,
        }
    }

    fn gguf_kind(e: &OpenError) -> Option<lode_formats::gguf::ErrorKind> {
        match e {
            OpenError::Gguf { source, .. } => Some(source.kind()),
            _ => None,
        }
    }

    #[test]
    fn bad_files_are_named_errors() {
        use lode_formats::gguf::ErrorKind as K;
        let missing = ModelFile::open(Path::new("/nonexistent/model.gguf")).err();
        let msg = missing.map(|e| e.to_string()).unwrap_or_default();
        assert!(msg.contains("/nonexistent/model.gguf"), "{msg}");

        let arch = [("general.architecture", "llama")];
        let e = load_bytes("magic", b"GGML\x03\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0");
        assert_eq!(gguf_kind(&e), Some(K::BadMagic));
        assert!(e.to_string().contains("lode-run-"), "{e}");

        // Claims five tensors, holds none.
        let mut b = gguf(&arch, &[], &[]);
        b[8] = 5;
        assert_eq!(gguf_kind(&load_bytes("truncated", &b)), Some(K::Truncated));

        let past = gguf(&arch, &[("token_embd.weight", &[32, 4], 0, 0)], &[0; 64]);
        assert_eq!(
            gguf_kind(&load_bytes("past", &past)),
            Some(K::TensorOutOfBounds)
        );

        let unknown = gguf(&arch, &[("token_embd.weight", &[32, 4], 99, 0)], &[0; 512]);
        let e = load_bytes("unknown", &unknown);
        assert_eq!(gguf_kind(&e), Some(K::UnknownType));

        let gpt2 = gguf(&[("general.architecture", "gpt2")], &[], &[]);
        let e = load_bytes("arch", &gpt2);
        assert_eq!(gguf_kind(&e), Some(K::NotLlama));
        assert!(e.to_string().contains("gpt2"), "{e}");

        // A llama without hyper-parameters: the missing key is named.
        let e = load_bytes("nokeys", &gguf(&arch, &[], &[]));
        assert_eq!(gguf_kind(&e), Some(K::MissingKey));
        assert!(e.to_string().contains("llama."), "{e}");
    }

    #[test]
    fn bad_arguments_are_refused_before_loading() {
        let args = {
            let mut a = RunArgs::greedy_json(PathBuf::from("/nonexistent.gguf"));
            a.prompt = "x".into();
            a.n_predict = 1;
            a.sample.temperature = -1.0;
            a.model.threads = None;
            a.model.batch = 8;
            a.json = false;
            a
        };
        let mut out = Vec::new();
        let e = run(&args, &mut out).unwrap_err().to_string();
        assert!(e.contains("temperature"), "{e}");
        let e = run(
            &{
                let mut a = args.clone();
                a.sample.temperature = 0.0;
                a.model.threads = Some(0);
                a
            },
            &mut out,
        );
        assert!(e.unwrap_err().to_string().contains("--threads"));
        let e = run(
            &{
                let mut a = args;
                a.sample.temperature = 0.0;
                a.model.batch = 0;
                a
            },
            &mut out,
        );
        assert!(e.unwrap_err().to_string().contains("--batch"));
        assert!(out.is_empty());
    }

    #[test]
    fn generates_paris_and_reports_json() {
        let Some(model) = real_model() else { return };
        let args = RunArgs::greedy_json(model);
        let mut out = Vec::new();
        run(&args, &mut out).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["prompt_tokens"], 5);
        assert!(v["text"].as_str().unwrap().starts_with(" Paris"), "{v}");
        assert_eq!(v["generated_ids"][0], 7042);
        assert_eq!(v["decode_tokens"], 2);
        assert!(v["peak_arena_bytes"].as_u64().unwrap() <= v["arena_bytes"].as_u64().unwrap());

        let mut out = Vec::new();
        run(
            &{
                let mut a = args;
                a.json = false;
                a.n_predict = 1;
                a
            },
            &mut out,
        )
        .unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with(" Paris\n[lode] prompt 5 tokens"), "{text}");
        assert!(text.contains("peak arena"), "{text}");
    }

    fn args(model: PathBuf) -> RunArgs {
        RunArgs::greedy_json(model)
    }

    /// The real model packed into `path` (identity placement).
    fn pack(model: &Path, path: &Path) {
        let a = crate::cmd_pack::PackArgs::quiet_defaults(model.to_path_buf(), path.to_path_buf());
        crate::cmd_pack::run(&a, &mut Vec::new()).unwrap();
    }

    #[test]
    fn an_image_streams_under_a_third_of_its_size_and_bad_input_is_refused() {
        crate::testutil::with_main_stack(streams_under_a_third_and_refuses_bad_input);
    }

    fn streams_under_a_third_and_refuses_bad_input() {
        let Some(model) = real_model() else { return };
        let dir = std::env::temp_dir().join(format!("lode-run-stream-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let image = dir.join("smol.lode");
        pack(&model, &image);
        for device in [None, Some("fake:ufs40".to_string())] {
            let mut out = Vec::new();
            let a = {
                let mut a = args(image.clone());
                a.model.dram_budget = Some("33%".into());
                a.model.device = device.clone();
                a
            };
            run(&a, &mut out).unwrap();
            let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
            assert_eq!(v["generated_ids"][0], 7042, "{device:?}: {v}");
            let st = &v["stream"];
            assert!(
                st["bytes_per_token"].as_f64().unwrap() > 40.0 * 1048576.0,
                "{st}"
            );
            assert!(
                v["peak_arena_bytes"].as_u64() <= st["budget_bytes"].as_u64(),
                "{v}"
            );
            assert!(
                st["resident_attention_layers"].as_u64().unwrap() > 0,
                "{st}"
            );
        }
        // Text mode prints the stats block.
        let mut out = Vec::new();
        let a = {
            let mut a = args(image.clone());
            a.json = false;
            a.model.dram_budget = Some("50%".into());
            a
        };
        run(&a, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with(" Paris"), "{text}");
        assert!(
            text.contains("per token:") && text.contains("I/O wait"),
            "{text}"
        );
        assert!(text.contains("the built-in cost model"), "{text}");
        // A cost model stored in the image is the one the planner uses.
        let mut bytes = std::fs::read(&image).unwrap();
        let meta = Image::parse(&bytes).unwrap().header().meta_len as usize;
        let stored = lode_formats::image::StoredCostModel {
            command_ns: 48_000,
            bytes_per_sec: 1 << 30,
            queue_depth: 24,
        };
        lode_formats::image::set_cost_model(&mut bytes[..meta], Some(stored)).unwrap();
        let calibrated = dir.join("calibrated.lode");
        std::fs::write(&calibrated, &bytes).unwrap();
        let mut out = Vec::new();
        run(
            &{
                let mut a = args(calibrated.clone());
                a.json = false;
                a.model.dram_budget = Some("50%".into());
                a
            },
            &mut out,
        )
        .unwrap();
        let _ = std::fs::remove_file(&calibrated);
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains("the image's cost model (48.0 us a command, 1024 MiB/s, queue depth 24)"),
            "{text}"
        );

        let err = |a: RunArgs| run(&a, &mut Vec::new()).unwrap_err().to_string();
        let e = err({
            let mut a = args(image.clone());
            a.model.dram_budget = Some("2MiB".into());
            a
        });
        assert!(e.contains("minimum working set"), "{e}");
        let e = err({
            let mut a = args(image.clone());
            a.model.dram_budget = Some("lots".into());
            a
        });
        assert!(e.contains("--dram-budget"), "{e}");
        let e = err({
            let mut a = args(image.clone());
            a.model.device = Some("tape:0".into());
            a
        });
        assert!(e.contains("file:<path> or fake:<profile>"), "{e}");
        // A bundled image cannot run sparse; the message names the fix.
        let e = err({
            let mut a = args(image.clone());
            a.model.sparsity = 0.5;
            a
        });
        assert!(e.contains("--layout split"), "{e}");
        let e = err({
            let mut a = args(image.clone());
            a.model.sparsity = 1.0;
            a
        });
        assert!(e.contains("--sparsity"), "{e}");
        let e = err({
            let mut a = args(model.clone());
            a.model.dram_budget = Some("32MiB".into());
            a
        });
        assert!(e.contains("lode image"), "{e}");
        // An image of another format version, and a truncated one.
        let mut bytes = std::fs::read(&image).unwrap();
        bytes[8] = 2;
        let other = dir.join("v2.lode");
        std::fs::write(&other, &bytes).unwrap();
        let e = err(args(other.clone()));
        assert!(e.contains("version"), "{e}");
        let short = dir.join("short.lode");
        std::fs::write(&short, &std::fs::read(&image).unwrap()[..3000]).unwrap();
        assert!(!err(args(short)).is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
