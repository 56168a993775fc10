//! The memory plan as `lode run --explain` prints it: each purpose's
//! bytes, what stays resident, the rule, and what streams per token.

use core::fmt;

use super::plan::StreamPlan;

fn mib(b: usize) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}

/// How much of the head a plan keeps, in words.
struct HeadRows<'p>(&'p StreamPlan);

impl fmt::Display for HeadRows<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            p if p.head_resident => f.write_str("resident"),
            p if p.head_resident_rows > 0 => write!(
                f,
                "{} rows resident, the rest streamed in pieces",
                p.head_resident_rows
            ),
            _ => f.write_str("streamed in pieces"),
        }
    }
}

/// ", and the gate and up rows of N more" (nothing for 0).
struct MoreRows(usize);

impl fmt::Display for MoreRows {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            0 => Ok(()),
            n => write!(f, ", and the gate and up rows of {n} more"),
        }
    }
}

impl fmt::Display for StreamPlan {
    /// The plan as `lode run --explain` prints it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = &self.bytes;
        writeln!(
            f,
            "memory plan: budget {:.1} MiB, minimum {:.1} MiB",
            mib(self.budget),
            mib(self.minimum)
        )?;
        let line = |f: &mut fmt::Formatter<'_>, what: &str, n: usize, note: &dyn fmt::Display| {
            writeln!(f, "  {what:<22} {:>8.2} MiB  {note}", mib(n))
        };
        line(
            f,
            "forward buffers",
            b.buffers,
            &"activations, scores, logits",
        )?;
        match self.contexts {
            1 => line(f, "KV cache", b.kv, &"full context, 16-token chunks")?,
            n => line(
                f,
                "KV cache",
                b.kv,
                &format_args!("{n} full contexts, 16-token chunks"),
            )?,
        }
        line(f, "norms", b.norms, &"every layer, resident")?;
        line(f, "scratch", b.scratch, &"FFN activations, embedding row")?;
        if b.checks > 0 {
            line(
                f,
                "read checks",
                b.checks,
                &format_args!(
                    "a CRC32C of every {} B block, to check each read",
                    self.block
                ),
            )?;
        }
        match self.decode_slot {
            0 => line(
                f,
                "I/O ring",
                b.ring,
                &format_args!("{} slots of {:.2} MiB", self.ring, mib(self.ring_slot)),
            )?,
            d => line(
                f,
                "I/O ring",
                b.ring,
                &format_args!(
                    "{} slots of {:.2} MiB, and {:.2} MiB coded FFN matrices are decoded into",
                    self.ring,
                    mib(self.ring_slot),
                    mib(d)
                ),
            )?,
        }
        line(
            f,
            "attention (resident)",
            b.attention,
            &format_args!(
                "{} of {} layers; the rest stream",
                self.resident_attention_layers(),
                self.layers
            ),
        )?;
        line(
            f,
            "output head (resident)",
            b.head,
            &format_args!("{}", HeadRows(self)),
        )?;
        if self.sparse {
            line(
                f,
                "sparse read slot",
                b.sparse_io,
                &"down columns of the firing neurons",
            )?;
            line(
                f,
                "neuron cache",
                b.cache,
                &"down columns (S3-FIFO), what is left",
            )?;
        }
        let rows = (0..self.layers)
            .filter(|&l| self.rows_are_resident(l) && !self.ffn_is_resident(l))
            .count();
        line(
            f,
            "FFN (resident)",
            b.ffn,
            &format_args!(
                "{} of {} layers{}; the rest stream",
                self.resident_ffn_layers(),
                self.layers,
                MoreRows(rows)
            ),
        )?;
        self.rule(f)
    }
}

impl StreamPlan {
    /// The rule's line and the bytes a token streams.
    fn rule(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.sparse {
            writeln!(
                f,
                "  rule (sparse): fixed costs, then what a token reads whole (attention, the \
                 output head, its first rows, the FFN's gate and up rows), then whole FFN \
                 layers, whose down columns a token would read only for its kept neurons; \
                 the rest caches down columns"
            )?;
            write!(
                f,
                "  streamed per token: at most {:.2} MiB, of which {:.2} MiB down columns \
                 (read for the kept neurons only)",
                mib(self.streamed_per_token as usize),
                mib(self.streamed_columns_per_token as usize)
            )
        } else {
            writeln!(
                f,
                "  rule: fixed costs, then attention, then the output head, then as many FFN \
                 layers as fit, the streamed ones spread over the depth, then the head's \
                 first rows in what is left"
            )?;
            write!(
                f,
                "  streamed per token: {:.2} MiB",
                mib(self.streamed_per_token as usize)
            )?;
            let c = self.coded;
            if c.units > 0 {
                write!(
                    f,
                    ", of which {} coded FFN matrices: {:.2} MiB read for {:.2} MiB decoded as \
                     they arrive (coded layers kept resident were decoded at load)",
                    c.units,
                    mib(c.stored as usize),
                    mib(c.decoded as usize)
                )?;
            }
            Ok(())
        }
    }
}
