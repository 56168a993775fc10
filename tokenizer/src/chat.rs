//! Chat turns in the layouts lode's models were fine-tuned on: ChatML
//! (SmolLM2) and Gemma's.
//!
//! A GGUF carries its chat template (`tokenizer.chat_template`) as a Jinja
//! program. lode does not run Jinja; it recognises the family the template
//! belongs to and reproduces its output. ChatML:
//!
//! ```text
//! <|im_start|>system\n{default system prompt}<|im_end|>\n   (only if the first message is not a system message)
//! <|im_start|>{role}\n{content}<|im_end|>\n                  (each message)
//! <|im_start|>assistant\n                                     (when a reply is wanted)
//! ```
//!
//! The default system prompt is read out of the template text, so a
//! fine-tune with a different prompt still formats correctly.
//!
//! Gemma, as llama.cpp's built-in `gemma` template writes it (Gemma has no
//! system turn: system messages are trimmed and joined onto the next user
//! turn, and the assistant's role is called `model`):
//!
//! ```text
//! <start_of_turn>{role}\n[{system}\n\n]{trimmed content}<end_of_turn>\n
//! <start_of_turn>model\n                                      (when a reply is wanted)
//! ```

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

/// The marker that opens a turn.
pub const IM_START: &str = "<|im_start|>";
/// The marker that closes a turn (SmolLM2's end-of-sequence token).
pub const IM_END: &str = "<|im_end|>";
/// Gemma's marker that opens a turn.
pub const START_OF_TURN: &str = "<start_of_turn>";
/// Gemma's marker that closes a turn.
pub const END_OF_TURN: &str = "<end_of_turn>";

/// One message of a conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChatMessage<'a> {
    /// `system`, `user`, `assistant` (any text; it is written as given).
    pub role: &'a str,
    /// The message text.
    pub content: &'a str,
}

impl<'a> ChatMessage<'a> {
    /// A message from `role`.
    pub fn new(role: &'a str, content: &'a str) -> Self {
        ChatMessage { role, content }
    }
}

/// Why a chat template was not understood.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ChatTemplateError {
    /// The template does not write `<|im_start|>` and `<|im_end|>` around
    /// each message's role and content (not ChatML), nor `<start_of_turn>`
    /// (not Gemma's).
    NotChatMl,
}

impl core::fmt::Display for ChatTemplateError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ChatTemplateError::NotChatMl => {
                f.write_str("chat template is neither ChatML (<|im_start|>role\\ncontent<|im_end|>) nor Gemma's (<start_of_turn>)")
            }
        }
    }
}

impl core::error::Error for ChatTemplateError {}

/// The layouts lode reproduces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Style {
    #[default]
    ChatMl,
    Gemma,
}

/// A chat template: ChatML (optionally with a default system prompt) or
/// Gemma's.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ChatTemplate {
    style: Style,
    default_system: Option<String>,
    /// Renders turns that continue a conversation: no BOS in front.
    continues: bool,
}

impl ChatTemplate {
    /// ChatML with `default_system` inserted when a conversation does not
    /// start with a system message.
    pub fn chatml(default_system: Option<&str>) -> Self {
        ChatTemplate {
            default_system: default_system.map(ToString::to_string),
            ..ChatTemplate::default()
        }
    }

    /// Gemma's layout (see the module docs).
    pub fn gemma() -> Self {
        ChatTemplate {
            style: Style::Gemma,
            ..ChatTemplate::default()
        }
    }

    /// True for Gemma's layout.
    pub fn is_gemma(&self) -> bool {
        self.style == Style::Gemma
    }

    /// Recognises a Jinja chat template (GGUF `tokenizer.chat_template`).
    ///
    /// Accepted: templates that write each message as
    /// `'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>'`.
    /// A literal `<|im_start|>system\n...<|im_end|>` in a template that tests
    /// `messages[0]['role'] != 'system'` is taken as the default system prompt.
    /// Otherwise a template that writes `<start_of_turn>` is Gemma's (the
    /// test llama.cpp applies).
    pub fn from_jinja(src: &str) -> Result<Self, ChatTemplateError> {
        // Compare without white space, so formatting inside `{{ }}` does not
        // matter. A newline written literally inside a Jinja string vanishes
        // with the rest of the white space; an escaped one stays as `\n`.
        let compact: String = src.chars().filter(|c| !c.is_whitespace()).collect();
        let mut per_message = false;
        let mut conditional = false;
        for q in ['\'', '"'] {
            for nl in ["\\n", ""] {
                let pattern = format!(
                    "{q}<|im_start|>{q}+message[{q}role{q}]+{q}{nl}{q}+message[{q}content{q}]+{q}<|im_end|>{q}"
                );
                per_message |= compact.contains(&pattern);
            }
            conditional |= compact.contains(&format!("messages[0][{q}role{q}]!={q}system{q}"));
        }
        if !per_message {
            return if src.contains(START_OF_TURN) {
                Ok(ChatTemplate::gemma())
            } else {
                Err(ChatTemplateError::NotChatMl)
            };
        }
        let default_system = if conditional {
            default_system_prompt(src)
        } else {
            None
        };
        Ok(ChatTemplate::chatml(default_system.as_deref()))
    }

    /// The system prompt added to conversations that lack one.
    pub fn default_system(&self) -> Option<&str> {
        self.default_system.as_deref()
    }

    /// The same template with no default system prompt: what renders turns
    /// that continue a conversation already under way (whose opening,
    /// system prompt included, is already evaluated).
    pub fn without_default_system(&self) -> ChatTemplate {
        ChatTemplate {
            style: self.style,
            default_system: None,
            continues: true,
        }
    }

    /// True for a template from [`ChatTemplate::without_default_system`]:
    /// its turns follow ones already encoded, so no BOS goes in front.
    pub(crate) fn continues(&self) -> bool {
        self.continues
    }

    /// The text of a turn marker in this layout.
    pub fn marker_text(&self, marker_is_start: bool) -> &'static str {
        match (self.style, marker_is_start) {
            (Style::ChatMl, true) => IM_START,
            (Style::ChatMl, false) => IM_END,
            (Style::Gemma, true) => START_OF_TURN,
            (Style::Gemma, false) => END_OF_TURN,
        }
    }

    /// Calls `emit` for each piece of the conversation in order. The string
    /// renderer and the token encoder are both written on top of this, so
    /// they cannot disagree about the layout.
    pub(crate) fn walk(
        &self,
        messages: &[ChatMessage<'_>],
        add_generation_prompt: bool,
        mut emit: impl FnMut(Piece<'_>),
    ) {
        if self.style == Style::Gemma {
            return walk_gemma(messages, add_generation_prompt, emit);
        }
        let mut turn = |role: &str, content: &str| {
            emit(Piece::Marker(Marker::Start));
            emit(Piece::Text(role));
            emit(Piece::Text("\n"));
            emit(Piece::Text(content));
            emit(Piece::Marker(Marker::End));
            emit(Piece::Text("\n"));
        };
        for (i, m) in messages.iter().enumerate() {
            if i == 0 && m.role != "system" {
                if let Some(sys) = &self.default_system {
                    turn("system", sys);
                }
            }
            turn(m.role, m.content);
        }
        if add_generation_prompt {
            emit(Piece::Marker(Marker::Start));
            emit(Piece::Text("assistant"));
            emit(Piece::Text("\n"));
        }
    }

    /// The conversation as one string, markers spelled out.
    pub fn render(&self, messages: &[ChatMessage<'_>], add_generation_prompt: bool) -> String {
        let mut out = String::new();
        self.walk(messages, add_generation_prompt, |p| match p {
            Piece::Text(t) => out.push_str(t),
            Piece::Marker(m) => out.push_str(self.marker_text(m == Marker::Start)),
        });
        out
    }
}

/// One piece of a rendered conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Piece<'a> {
    /// Literal text: a role, a message, a newline.
    Text(&'a str),
    /// A turn marker.
    Marker(Marker),
}

/// A turn marker (its text depends on the layout, see
/// [`ChatTemplate::marker_text`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Marker {
    /// `<|im_start|>`, `<start_of_turn>`
    Start,
    /// `<|im_end|>`, `<end_of_turn>`
    End,
}

/// C's `isspace`, which llama.cpp's `trim` uses (ASCII white space only).
fn c_trim(s: &str) -> &str {
    s.trim_matches(|c| matches!(c, ' ' | '\t' | '\n' | '\x0b' | '\x0c' | '\r'))
}

/// Gemma's layout, as llama.cpp's built-in `gemma` template writes it.
fn walk_gemma(
    messages: &[ChatMessage<'_>],
    add_generation_prompt: bool,
    mut emit: impl FnMut(Piece<'_>),
) {
    // System messages wait, trimmed, for the next turn that is not the
    // model's.
    let mut system: Vec<&str> = Vec::new();
    for m in messages {
        if m.role == "system" {
            system.push(c_trim(m.content));
            continue;
        }
        let role = if m.role == "assistant" {
            "model"
        } else {
            m.role
        };
        emit(Piece::Marker(Marker::Start));
        emit(Piece::Text(role));
        emit(Piece::Text("\n"));
        if role != "model" && system.iter().any(|s| !s.is_empty()) {
            for s in system.drain(..) {
                emit(Piece::Text(s));
            }
            emit(Piece::Text("\n\n"));
        }
        emit(Piece::Text(c_trim(m.content)));
        emit(Piece::Marker(Marker::End));
        emit(Piece::Text("\n"));
    }
    if add_generation_prompt {
        emit(Piece::Marker(Marker::Start));
        emit(Piece::Text("model"));
        emit(Piece::Text("\n"));
    }
}

/// The text between `<|im_start|>system` + newline and the next `<|im_end|>`
/// in the template, with a Jinja-escaped `\n` after `system` accepted too.
fn default_system_prompt(src: &str) -> Option<String> {
    let open = "<|im_start|>system";
    let at = src.find(open)? + open.len();
    let rest = src.get(at..)?;
    let body = rest
        .strip_prefix('\n')
        .or_else(|| rest.strip_prefix("\\n"))?;
    let end = body.find(IM_END)?;
    body.get(..end).map(ToString::to_string)
}

#[cfg(test)]
#[path = "chat_tests.rs"]
mod tests;
