//! `lode chat`: an interactive conversation with a model, one context kept
//! across turns.
//!
//! Each line read is a user turn. The whole conversation is written out
//! with the model's chat template (ChatML for SmolLM2) and compared with
//! the tokens the context already holds: only the new part (the end of
//! the last reply, the user's turn, the assistant's header) is evaluated,
//! so a turn costs its own tokens, not the conversation's. When the
//! re-tokenized history differs from what the context holds (a reply's
//! text can tokenize differently from the ids that produced it) the
//! context is rebuilt from the text once, and the turn says so. `/reset`
//! starts over; end of input ends the chat.

use std::error::Error;
use std::io::{BufRead, IsTerminal, Write};
use std::ops::ControlFlow;

use lode_runtime::{generate, Context, GenerateOptions, ModelFile, Session, Stop};
use lode_tokenizer::{ChatMessage, ChatTemplate};
use serde::Serialize;

use crate::session_args::{bad, ModelArgs, SampleArgs};

/// Arguments of `lode chat`.
#[derive(clap::Args, Debug, Clone)]
pub struct ChatArgs {
    /// Which model and how it is loaded.
    #[command(flatten)]
    pub model: ModelArgs,
    /// How tokens are chosen.
    #[command(flatten)]
    pub sample: SampleArgs,
    /// System prompt (default: the one in the model's chat template).
    #[arg(long)]
    pub system: Option<String>,
    /// Most tokens of one reply.
    #[arg(short = 'n', long = "n-predict", default_value_t = 256)]
    pub n_predict: usize,
    /// Positions the conversation may reach (its KV cache is reserved in
    /// the budget up front).
    #[arg(long = "max-context", default_value_t = 2048)]
    pub max_context: usize,
    /// Print one JSON object per turn instead of the reply's text.
    #[arg(long)]
    pub json: bool,
}

/// What one turn did (`--json`).
#[derive(Debug, Clone, Serialize)]
pub struct Turn {
    /// The reply's text (lossy UTF-8).
    pub reply: String,
    /// Tokens evaluated before the reply: the new part of the conversation.
    pub evaluated_tokens: usize,
    /// Positions the context holds after the turn.
    pub context_tokens: usize,
    /// Whether the context had to be rebuilt from the conversation's text.
    pub rebuilt: bool,
    /// Why the reply ended.
    pub stop: Stop,
    /// Reply tokens per second.
    pub decode_tokens_per_s: f64,
}

/// The conversation so far, as text, and the context that holds it.
struct Chat<'s> {
    session: &'s mut Session,
    ctx: Context,
    template: ChatTemplate,
    system: Option<String>,
    /// (role, content) of every message so far.
    messages: Vec<(&'static str, String)>,
}

impl Chat<'_> {
    /// The conversation's tokens with a generation prompt after it.
    fn encode(&self) -> Result<Vec<u32>, Box<dyn Error>> {
        let mut msgs: Vec<ChatMessage<'_>> = Vec::new();
        if let Some(s) = &self.system {
            msgs.push(ChatMessage::new("system", s));
        }
        msgs.extend(self.messages.iter().map(|(r, c)| ChatMessage::new(r, c)));
        Ok(self
            .session
            .tokenizer()
            .encode_chat(&self.template, &msgs, true)?)
    }

    /// One user turn: evaluates what the context lacks and generates the
    /// reply, handing its pieces to `piece`.
    fn turn(
        &mut self,
        user: &str,
        opts: &GenerateOptions,
        mut piece: impl FnMut(&[u8]),
    ) -> Result<Turn, Box<dyn Error>> {
        self.messages.push(("user", user.to_string()));
        let full = self.encode()?;
        let mut held: Vec<u32> = self.ctx.tokens().to_vec();
        held.extend(self.ctx.pending());
        let rebuilt = !full.starts_with(&held);
        if rebuilt {
            self.session.clear_context(&mut self.ctx)?;
            held.clear();
        }
        let new = &full[held.len()..];
        if new.len() + usize::from(self.ctx.pending().is_some()) > self.ctx.room() {
            self.messages.pop();
            return Err(bad(format!(
                "the conversation no longer fits the context ({} positions, --max-context); \
                 /reset to start over",
                self.ctx.max_positions()
            )));
        }
        let evaluated = new.len() + usize::from(self.ctx.pending().is_some() && !rebuilt);
        let g = generate(self.session, &mut self.ctx, new, opts, |t| {
            piece(t.piece);
            ControlFlow::Continue(())
        })?;
        let reply = String::from_utf8_lossy(&g.text).into_owned();
        self.messages.push(("assistant", reply.clone()));
        Ok(Turn {
            reply,
            evaluated_tokens: evaluated,
            context_tokens: self.ctx.len(),
            rebuilt,
            stop: g.stop,
            decode_tokens_per_s: if g.decode_seconds > 0.0 {
                g.decode_tokens as f64 / g.decode_seconds
            } else {
                0.0
            },
        })
    }
}

/// Runs `lode chat`, reading turns from `input`.
pub fn run(
    args: &ChatArgs,
    input: &mut dyn BufRead,
    out: &mut dyn Write,
) -> Result<(), Box<dyn Error>> {
    let opts = GenerateOptions {
        max_tokens: args.n_predict,
        sampler: args.sample.sampler()?,
        seed: args.sample.seed,
    };
    args.model.check()?;
    let file = ModelFile::open(&args.model.model)?;
    let template = file.chat_template().cloned().ok_or_else(|| {
        bad(format!(
            "{}: the model has no chat template lode understands (ChatML); use `lode run`",
            args.model.model.display()
        ))
    })?;
    let room = file.config().context.min(lode_kernel::model::MAX_CONTEXT);
    let session_opts = args.model.session_options(args.max_context.min(room))?;
    let mut events = args.model.events(args.json);
    let mut session = Session::load(file, &session_opts, args.model.batch, &mut events)?;
    let ctx = session.new_context();
    let mut chat = Chat {
        session: &mut session,
        ctx,
        template,
        system: args.system.clone(),
        messages: Vec::new(),
    };
    let tty = std::io::stdin().is_terminal() && !args.json;
    let mut line = String::new();
    loop {
        if tty {
            eprint!("> ");
        }
        line.clear();
        if input.read_line(&mut line)? == 0 {
            break;
        }
        let user = line.trim_end_matches(['\n', '\r']);
        if user.trim().is_empty() {
            continue;
        }
        if user.trim() == "/reset" {
            chat.session.clear_context(&mut chat.ctx)?;
            chat.messages.clear();
            continue;
        }
        let mut write_err = None;
        let turn = chat.turn(user, &opts, |p| {
            if !args.json && write_err.is_none() {
                write_err = out.write_all(p).and_then(|()| out.flush()).err();
            }
        })?;
        if let Some(e) = write_err {
            return Err(e.into());
        }
        if args.json {
            serde_json::to_writer(&mut *out, &turn)?;
        }
        writeln!(out)?;
        out.flush()?;
    }
    let ctx = std::mem::replace(&mut chat.ctx, chat.session.new_context());
    chat.session.delete_context(ctx)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::real_model;

    fn args(model: std::path::PathBuf) -> ChatArgs {
        let run = crate::cmd_run::RunArgs::greedy_json(model);
        ChatArgs {
            model: run.model,
            sample: run.sample,
            system: None,
            n_predict: 12,
            max_context: 512,
            json: true,
        }
    }

    fn turns(a: &ChatArgs, input: &str) -> Result<Vec<serde_json::Value>, String> {
        let mut out = Vec::new();
        run(a, &mut input.as_bytes(), &mut out).map_err(|e| e.to_string())?;
        Ok(String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect())
    }

    #[test]
    fn a_second_turn_evaluates_only_what_is_new() {
        let Some(model) = real_model() else { return };
        let a = args(model);
        let t = turns(
            &a,
            "What is the capital of France?\n\nAnd of Italy?\n/reset\nHi\n",
        )
        .unwrap();
        assert_eq!(t.len(), 3, "{t:?}");
        assert!(!t[0]["reply"].as_str().unwrap().is_empty(), "{t:?}");
        let first = t[0]["context_tokens"].as_u64().unwrap();
        let second_new = t[1]["evaluated_tokens"].as_u64().unwrap();
        // The second turn reuses the first: it evaluates its own few
        // tokens, and the context holds both turns.
        assert_eq!(t[1]["rebuilt"], false, "{t:?}");
        assert!(second_new < first, "{t:?}");
        assert!(t[1]["context_tokens"].as_u64().unwrap() > first, "{t:?}");
        assert!(!t[1]["reply"].as_str().unwrap().is_empty(), "{t:?}");
        // After /reset the conversation starts from nothing.
        assert!(
            t[2]["context_tokens"].as_u64().unwrap() < first + 12,
            "{t:?}"
        );
    }

    #[test]
    fn a_conversation_past_the_context_is_an_error_not_a_panic() {
        let Some(model) = real_model() else { return };
        let a = ChatArgs {
            max_context: 48,
            ..args(model)
        };
        let e = turns(&a, &"word ".repeat(60)).unwrap_err();
        assert!(e.contains("--max-context"), "{e}");
    }
}
