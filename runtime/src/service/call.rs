//! One call in one context: the input turned into the tokens the context
//! lacks, the room checked, then generation with stop strings.

use std::ops::ControlFlow;

use lode_tokenizer::ChatMessage;

use crate::context::Context;
use crate::error::GenerateError;
use crate::generate::{generate, GenerateOptions, Stop};
use crate::session::Session;

use super::room::make_room;
use super::text::Emitter;
use super::{CallError, CallOptions, CallSummary, Conversation, Finish, Input, Message, Service};

/// The tokens to evaluate and whether the context must be emptied first.
struct Feed {
    tokens: Vec<u32>,
    rebuild: bool,
}

/// Runs one call. On failure the conversation's text is as before the
/// call, while the context keeps what it evaluated: the next chat call
/// sees the mismatch and rebuilds.
pub(super) fn turn(
    svc: &Service,
    session: &mut Session,
    ctx: &mut Context,
    conv: &mut Conversation,
    input: Input<'_>,
    opts: &CallOptions,
    on_token: &mut dyn FnMut(&str) -> ControlFlow<()>,
) -> Result<CallSummary, CallError> {
    opts.sampler
        .validate()
        .map_err(|e| CallError::BadOptions(e.to_string()))?;
    let before = conv.messages.len();
    let r = run(svc, session, ctx, conv, input, opts, on_token);
    match r {
        Ok((summary, true)) => {
            conv.messages
                .push(Message::new("assistant", summary.text.clone()));
            Ok(summary)
        }
        Ok((summary, false)) => Ok(summary),
        Err(e) => {
            conv.messages.truncate(before);
            Err(e)
        }
    }
}

/// The call proper; also says whether it was a chat call.
fn run(
    svc: &Service,
    session: &mut Session,
    ctx: &mut Context,
    conv: &mut Conversation,
    input: Input<'_>,
    opts: &CallOptions,
    on_token: &mut dyn FnMut(&str) -> ControlFlow<()>,
) -> Result<(CallSummary, bool), CallError> {
    let (feed, chat) = match input {
        Input::Chat(msgs) => {
            conv.messages.extend_from_slice(msgs);
            (chat_feed(session, ctx, conv)?, true)
        }
        Input::Text(text) => (text_feed(session, ctx, conv, text), false),
    };
    let pending = usize::from(ctx.pending().is_some() && !feed.rebuild);
    let need = feed.tokens.len() + pending;
    let room = if feed.rebuild {
        ctx.max_positions()
    } else {
        ctx.room()
    };
    if need == 0 {
        return Err(CallError::EmptyInput);
    }
    if need > room {
        return Err(CallError::InputTooLong { need, room });
    }
    if feed.rebuild {
        session.clear_context(ctx).map_err(CallError::Generate)?;
    }
    let grow = need + opts.max_tokens.min(room - need);
    make_room(svc, session, ctx, ctx.len() + grow)?;
    let summary = generate_text(session, ctx, &feed.tokens, opts, on_token)?;
    Ok((
        CallSummary {
            rebuilt: feed.rebuild,
            ..summary
        },
        chat,
    ))
}

/// A chat call's tokens: the whole conversation rendered, less what the
/// context holds already (its tokens and the token left pending); when
/// the context holds something else (a reply that re-tokenizes
/// differently, a stop string, an earlier failure), all of it.
fn chat_feed(session: &Session, ctx: &Context, conv: &Conversation) -> Result<Feed, CallError> {
    let template = session.chat_template().ok_or(CallError::NoChatTemplate)?;
    let mut msgs: Vec<ChatMessage<'_>> = Vec::with_capacity(conv.messages.len() + 1);
    if let (Some(s), None) = (&conv.system, &conv.base) {
        msgs.push(ChatMessage::new("system", s));
    }
    msgs.extend(
        conv.messages
            .iter()
            .map(|m| ChatMessage::new(&m.role, &m.content)),
    );
    let full = match &conv.base {
        None => session.tokenizer().encode_chat(template, &msgs, true),
        Some(base) => {
            // A recovered conversation: its opening is in `base`, so the
            // messages since are turns that continue it.
            let more = template.without_default_system();
            session
                .tokenizer()
                .encode_chat(&more, &msgs, true)
                .map(|t| [base.as_slice(), &t].concat())
        }
    }
    .map_err(|_| CallError::NoChatTemplate)?;
    let mut held = ctx.tokens().to_vec();
    held.extend(ctx.pending());
    Ok(if full.starts_with(&held) {
        Feed {
            tokens: full[held.len()..].to_vec(),
            rebuild: false,
        }
    } else {
        Feed {
            tokens: full,
            rebuild: true,
        }
    })
}

/// A completion call's tokens: the text as it is, after the system prompt
/// and the beginning-of-sequence token when the context is empty.
fn text_feed(session: &Session, ctx: &Context, conv: &Conversation, text: &str) -> Feed {
    let first = ctx.is_empty() && ctx.pending().is_none();
    let tok = session.tokenizer();
    let tokens = match (&conv.system, first) {
        (Some(system), true) => tok.encode(&format!("{system}{text}"), tok.specials().add_bos),
        (_, true) => tok.encode(text, tok.specials().add_bos),
        (_, false) => tok.encode(text, false),
    };
    Feed {
        tokens,
        rebuild: false,
    }
}

/// Generates after `tokens`, passing whole characters to `on_token` and
/// ending at the first stop string.
fn generate_text(
    session: &mut Session,
    ctx: &mut Context,
    tokens: &[u32],
    opts: &CallOptions,
    on_token: &mut dyn FnMut(&str) -> ControlFlow<()>,
) -> Result<CallSummary, CallError> {
    let gen_opts = GenerateOptions {
        max_tokens: opts.max_tokens,
        sampler: opts.sampler,
        seed: opts.seed,
    };
    let mut emitter = Emitter::new(&opts.stop);
    let mut caller_stopped = false;
    let g = generate(session, ctx, tokens, &gen_opts, |t| {
        let out = emitter.push(t.piece);
        if !out.is_empty() && on_token(out).is_break() {
            caller_stopped = true;
            return ControlFlow::Break(());
        }
        if emitter.stopped() {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    })
    .map_err(|e| match e {
        GenerateError::PromptTooLong { tokens, room } => {
            CallError::InputTooLong { need: tokens, room }
        }
        e => CallError::Generate(e),
    })?;
    let rest = emitter.finish();
    if !rest.is_empty() && !caller_stopped {
        // The generation is over: a stop asked for now changes nothing.
        let _ = on_token(rest);
    }
    let finish = if emitter.stopped() {
        Finish::StopSequence
    } else {
        match g.stop {
            Stop::Length => Finish::Length,
            Stop::Eos => Finish::Eos,
            Stop::Context => Finish::ContextFull,
            Stop::Caller => Finish::Caller,
        }
    };
    Ok(CallSummary {
        text: emitter.text().to_string(),
        evaluated_tokens: g.prompt_tokens,
        generated_tokens: g.generated.len(),
        finish,
        context_tokens: ctx.len(),
        rebuilt: false,
        prompt_seconds: g.prompt_seconds,
        decode_seconds: g.decode_seconds,
        restore: None,
    })
}

/// `tokens` (a recovered conversation's) closed as a finished turn, ready
/// for the next turn's marker: the end-of-turn marker unless it is the
/// last token already, then the newline the template puts after it.
/// `None` without a chat template or its markers.
pub(super) fn closed_turn(session: &Session, tokens: &[u32]) -> Option<Vec<u32>> {
    let template = session.chat_template()?;
    let tok = session.tokenizer();
    let end = tok.token_id(template.marker_text(false))?;
    let mut out = tokens.to_vec();
    if out.last() != Some(&end) {
        out.push(end);
    }
    out.extend(tok.encode("\n", false));
    Some(out)
}
