//! Faults injected into every read of a streamed run (`--inject-faults`):
//! each run either generates exactly the clean run's tokens or stops with
//! a device error; never other tokens. On the fake flash and on a file
//! read through `BlockFlash` (O_DIRECT, io_uring where the kernel has it).

use lode_kernel::flash::Faults;
use lode_runtime::{
    generate, Budget, DeviceSpec, ErrorKind, GenerateOptions, ModelFile, Quiet, Session,
    SessionOptions,
};
use lode_tests::TempFile;

const PROMPT: &str = "The capital of France is";
const TOKENS: usize = 6;

/// The tokens of a greedy run over `image` from `device` with `faults`,
/// and the reads it repeated; or the error that stopped it.
fn run(
    image: &std::path::Path,
    device: &str,
    faults: Faults,
) -> Result<(Vec<u32>, u64), ErrorKind> {
    let opts = SessionOptions {
        threads: Some(2),
        batch: 16,
        budget: Some(Budget::Percent(40.0)),
        device: Some(DeviceSpec::parse(device).unwrap()),
        faults,
        ..SessionOptions::new(64)
    };
    let file = ModelFile::open(image).unwrap();
    let mut s = Session::load(file, &opts, 16, &mut Quiet).map_err(|e| e.kind())?;
    let ids = s
        .tokenizer()
        .encode(PROMPT, s.tokenizer().specials().add_bos);
    let mut ctx = s.new_context();
    let before = s.io_counters();
    let mut out = Vec::new();
    generate(
        &mut s,
        &mut ctx,
        &ids,
        &GenerateOptions::greedy(TOKENS),
        |t| {
            out.push(t.id);
            std::ops::ControlFlow::Continue(())
        },
    )
    .map_err(|e| e.kind())?;
    let retries = s.io_counters().io.retries - before.io.retries;
    Ok((out, retries))
}

#[test]
fn faulty_reads_give_the_clean_text_or_an_error() {
    let Some(gguf) = lode_tests::real_model() else {
        return;
    };
    let image = TempFile::with_bytes(&lode_tests::pack_identity(gguf));
    let file_dev = format!("file:{}", image.path().display());
    let (clean, _) = run(image.path(), "fake:ufs40", Faults::none()).unwrap();
    let mixes = [
        Faults {
            bit_flip_ppm: 3_000,
            ..Faults::none()
        },
        Faults {
            read_error_ppm: 3_000,
            ..Faults::none()
        },
        Faults {
            bit_flip_ppm: 2_000,
            read_error_ppm: 2_000,
            spike_ppm: 20_000,
            spike_ns: 200_000,
            ..Faults::none()
        },
    ];
    let (mut same, mut errors, mut retries) = (0, 0, 0);
    for device in ["fake:ufs40", file_dev.as_str()] {
        for (m, mix) in mixes.iter().enumerate() {
            for seed in 0..3 {
                let faults = Faults { seed, ..*mix };
                match run(image.path(), device, faults) {
                    Ok((tokens, r)) => {
                        assert_eq!(tokens, clean, "{device}, mix {m}, seed {seed}: other text");
                        same += 1;
                        retries += r;
                    }
                    Err(kind) => {
                        assert!(
                            matches!(kind, ErrorKind::Device | ErrorKind::BadModel),
                            "{device}, mix {m}, seed {seed}: {kind:?}"
                        );
                        errors += 1;
                    }
                }
            }
        }
    }
    // The faults were met and survived: most runs finish, after retries.
    assert!(
        same >= 12 && retries > 0,
        "same {same}, errors {errors}, retries {retries}"
    );
}
