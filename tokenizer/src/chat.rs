//! Chat turns in the ChatML layout SmolLM2 was fine-tuned on.
//!
//! SmolLM2's GGUF carries its chat template (`tokenizer.chat_template`) as a
//! Jinja program. lode does not run Jinja; it recognises the ChatML family
//! the template belongs to and reproduces its output:
//!
//! ```text
//! <|im_start|>system\n{default system prompt}<|im_end|>\n   (only if the first message is not a system message)
//! <|im_start|>{role}\n{content}<|im_end|>\n                  (each message)
//! <|im_start|>assistant\n                                     (when a reply is wanted)
//! ```
//!
//! The default system prompt is read out of the template text, so a
//! fine-tune with a different prompt still formats correctly.

use alloc::format;
use alloc::string::{String, ToString};

/// The marker that opens a turn.
pub const IM_START: &str = "<|im_start|>";
/// The marker that closes a turn (SmolLM2's end-of-sequence token).
pub const IM_END: &str = "<|im_end|>";

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
    /// each message's role and content: not ChatML.
    NotChatMl,
}

impl core::fmt::Display for ChatTemplateError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ChatTemplateError::NotChatMl => {
                f.write_str("chat template is not ChatML (<|im_start|>role\\ncontent<|im_end|>)")
            }
        }
    }
}

impl core::error::Error for ChatTemplateError {}

/// A ChatML chat template, optionally with a default system prompt.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ChatTemplate {
    default_system: Option<String>,
}

impl ChatTemplate {
    /// ChatML with `default_system` inserted when a conversation does not
    /// start with a system message.
    pub fn chatml(default_system: Option<&str>) -> Self {
        ChatTemplate {
            default_system: default_system.map(ToString::to_string),
        }
    }

    /// Recognises a Jinja chat template (GGUF `tokenizer.chat_template`).
    ///
    /// Accepted: templates that write each message as
    /// `'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>'`.
    /// A literal `<|im_start|>system\n...<|im_end|>` in a template that tests
    /// `messages[0]['role'] != 'system'` is taken as the default system prompt.
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
            return Err(ChatTemplateError::NotChatMl);
        }
        let default_system = if conditional {
            default_system_prompt(src)
        } else {
            None
        };
        Ok(ChatTemplate { default_system })
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
            default_system: None,
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
            Piece::Marker(m) => out.push_str(m.text()),
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

/// A ChatML turn marker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Marker {
    /// `<|im_start|>`
    Start,
    /// `<|im_end|>`
    End,
}

impl Marker {
    pub(crate) fn text(self) -> &'static str {
        match self {
            Marker::Start => IM_START,
            Marker::End => IM_END,
        }
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
mod tests {
    use super::*;
    use alloc::vec::Vec;

    /// The template stored in SmolLM2-135M-Instruct's GGUF.
    const SMOLLM2: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

    #[test]
    fn reads_smollm2_template() {
        let t = ChatTemplate::from_jinja(SMOLLM2).unwrap();
        assert_eq!(
            t.default_system(),
            Some("You are a helpful AI assistant named SmolLM, trained by Hugging Face")
        );
    }

    #[test]
    fn renders_like_the_jinja_template() {
        let t = ChatTemplate::from_jinja(SMOLLM2).unwrap();
        let msgs = [ChatMessage::new("user", "What is 2+2?")];
        assert_eq!(
            t.render(&msgs, true),
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n\
             <|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n"
        );
        // An explicit system message replaces the default one.
        let msgs = [
            ChatMessage::new("system", "Be brief."),
            ChatMessage::new("user", "Hi"),
            ChatMessage::new("assistant", "Hello."),
        ];
        assert_eq!(
            t.render(&msgs, false),
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n\
             <|im_start|>assistant\nHello.<|im_end|>\n"
        );
        assert_eq!(t.render(&[], true), "<|im_start|>assistant\n");
        assert_eq!(t.render(&[], false), "");
    }

    #[test]
    fn plain_chatml_has_no_default_system() {
        let t = ChatTemplate::chatml(None);
        assert_eq!(
            t.render(&[ChatMessage::new("user", "x")], false),
            "<|im_start|>user\nx<|im_end|>\n"
        );
        let src = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}";
        assert_eq!(
            ChatTemplate::from_jinja(src).unwrap(),
            ChatTemplate::chatml(None)
        );
    }

    #[test]
    fn rejects_other_templates() {
        let llama3 = "{% for message in messages %}<|start_header_id|>{{ message['role'] }}<|end_header_id|>\n\n{{ message['content'] }}<|eot_id|>{% endfor %}";
        assert_eq!(
            ChatTemplate::from_jinja(llama3),
            Err(ChatTemplateError::NotChatMl)
        );
        assert_eq!(
            ChatTemplate::from_jinja(""),
            Err(ChatTemplateError::NotChatMl)
        );
    }

    #[test]
    fn walk_reports_markers_in_order() {
        let t = ChatTemplate::chatml(Some("S"));
        let mut seen = Vec::new();
        t.walk(&[ChatMessage::new("user", "u")], true, |p| {
            if let Piece::Marker(m) = p {
                seen.push(m);
            }
        });
        assert_eq!(
            seen,
            [
                Marker::Start,
                Marker::End,
                Marker::Start,
                Marker::End,
                Marker::Start
            ]
        );
    }
}
