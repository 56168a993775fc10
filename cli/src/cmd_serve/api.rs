//! The OpenAI request and response JSON of `lode serve`, and how a request
//! becomes a service call. Unknown request fields are ignored (clients
//! send many; `model` too: the server runs one model), fields of the
//! wrong type are a 400.

use lode_runtime::{CallOptions, CallSummary, Finish, Message, SamplerConfig};
use serde::Deserialize;
use serde_json::{json, Value};

use super::http::ApiError;

/// Most bytes of a `stop` string, and most `stop` strings (OpenAI's 4).
const MAX_STOPS: usize = 4;
const MAX_STOP_BYTES: usize = 256;
/// Most bytes of a session id.
pub const MAX_SESSION_BYTES: usize = 128;

/// The body of `POST /v1/completions` and `POST /v1/chat/completions`.
#[derive(Debug, Deserialize)]
pub struct Request {
    /// Completions: the text to continue.
    pub prompt: Option<Prompt>,
    /// Chat: the messages to append.
    pub messages: Option<Vec<InMessage>>,
    pub max_tokens: Option<u64>,
    pub max_completion_tokens: Option<u64>,
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    /// An extension (llama.cpp's server has it too).
    pub top_k: Option<u64>,
    pub seed: Option<u64>,
    pub stop: Option<StopField>,
    pub stream: Option<bool>,
    /// Choices per request; only 1 is served.
    pub n: Option<u64>,
    /// lode's conversation id (or the `X-Lode-Session` header).
    pub session: Option<String>,
}

/// A prompt: one string, or an array holding one.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Prompt {
    One(String),
    Many(Vec<String>),
}

/// `stop`: one string or up to four.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum StopField {
    One(String),
    Many(Vec<String>),
}

/// A chat message as sent.
#[derive(Debug, Deserialize)]
pub struct InMessage {
    pub role: String,
    pub content: Content,
}

/// A message's content: text, or text parts.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Content {
    Text(String),
    Parts(Vec<Part>),
}

/// One part of a message's content; only `text` parts are understood.
#[derive(Debug, Deserialize)]
pub struct Part {
    #[serde(rename = "type")]
    pub kind: String,
    pub text: Option<String>,
}

fn invalid(msg: impl Into<String>) -> ApiError {
    ApiError::bad_request("invalid_value", msg)
}

impl Request {
    /// Parses a body.
    pub fn parse(body: &[u8]) -> Result<Request, ApiError> {
        serde_json::from_slice(body)
            .map_err(|e| ApiError::bad_request("invalid_json", format!("request body: {e}")))
    }

    /// The call's options; `default_max` when the request names none.
    pub fn options(&self, default_max: usize) -> Result<CallOptions, ApiError> {
        if self.n.is_some_and(|n| n != 1) {
            return Err(invalid("n: only 1 choice per request is served"));
        }
        let max = self.max_tokens.or(self.max_completion_tokens);
        let max_tokens = max.map_or(default_max, |m| usize::try_from(m).unwrap_or(usize::MAX));
        let top_k = usize::try_from(self.top_k.unwrap_or(0)).unwrap_or(usize::MAX);
        let sampler = SamplerConfig::new(
            self.temperature.unwrap_or(1.0),
            top_k,
            self.top_p.unwrap_or(1.0),
        );
        sampler
            .validate()
            .map_err(|e| invalid(format!("sampling: {e}")))?;
        let stop = match &self.stop {
            None => Vec::new(),
            Some(StopField::One(s)) => vec![s.clone()],
            Some(StopField::Many(v)) => v.clone(),
        };
        if stop.len() > MAX_STOPS || stop.iter().any(|s| s.len() > MAX_STOP_BYTES) {
            return Err(invalid(format!(
                "stop: at most {MAX_STOPS} strings of at most {MAX_STOP_BYTES} bytes"
            )));
        }
        let seed = self.seed.unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64)
        });
        Ok(CallOptions {
            max_tokens,
            sampler,
            seed,
            stop,
        })
    }

    /// A completion's prompt.
    pub fn prompt(&self) -> Result<&str, ApiError> {
        match &self.prompt {
            Some(Prompt::One(p)) => Ok(p),
            Some(Prompt::Many(v)) if v.len() == 1 => Ok(&v[0]),
            Some(Prompt::Many(_)) => Err(invalid("prompt: one prompt per request")),
            None => Err(ApiError::bad_request("missing_field", "prompt is required")),
        }
    }

    /// A chat's messages, with a leading system message split off (it
    /// opens a new conversation).
    pub fn messages(&self) -> Result<(Option<String>, Vec<Message>), ApiError> {
        let Some(ms) = &self.messages else {
            return Err(ApiError::bad_request(
                "missing_field",
                "messages is required",
            ));
        };
        let mut out = Vec::with_capacity(ms.len());
        for (i, m) in ms.iter().enumerate() {
            let text = match &m.content {
                Content::Text(t) => t.clone(),
                Content::Parts(parts) => {
                    let mut t = String::new();
                    for p in parts {
                        match (&*p.kind, &p.text) {
                            ("text", Some(s)) => t.push_str(s),
                            _ => {
                                return Err(invalid(format!(
                                    "messages[{i}]: only text content parts are understood"
                                )))
                            }
                        }
                    }
                    t
                }
            };
            out.push(Message::new(m.role.clone(), text));
        }
        let system = match out.first() {
            Some(m) if m.role == "system" => Some(out.remove(0).content),
            _ => None,
        };
        Ok((system, out))
    }
}

/// OpenAI's `finish_reason`.
pub fn finish_reason(f: Finish) -> &'static str {
    match f {
        Finish::Length | Finish::ContextFull => "length",
        _ => "stop",
    }
}

/// The `usage` object.
pub fn usage(s: &CallSummary) -> Value {
    json!({
        "prompt_tokens": s.evaluated_tokens,
        "completion_tokens": s.generated_tokens,
        "total_tokens": s.evaluated_tokens + s.generated_tokens,
        "context_tokens": s.context_tokens,
    })
}

/// What every response and chunk starts with.
#[derive(Debug, Clone)]
pub struct Head {
    pub id: String,
    pub created: u64,
    pub model: String,
    pub chat: bool,
    pub session: Option<String>,
}

impl Head {
    fn object(&self, object: &str) -> serde_json::Map<String, Value> {
        let mut m = serde_json::Map::new();
        m.insert("id".into(), json!(self.id));
        m.insert("object".into(), json!(object));
        m.insert("created".into(), json!(self.created));
        m.insert("model".into(), json!(self.model));
        if let Some(s) = &self.session {
            m.insert("session".into(), json!(s));
        }
        m
    }

    /// The whole response of a call.
    pub fn response(&self, s: &CallSummary) -> Value {
        let reason = finish_reason(s.finish);
        let (object, choice) = if self.chat {
            let message = json!({"role": "assistant", "content": s.text});
            let c = json!({"index": 0, "message": message, "finish_reason": reason});
            ("chat.completion", c)
        } else {
            let c = json!({"index": 0, "text": s.text, "logprobs": null, "finish_reason": reason});
            ("text_completion", c)
        };
        let mut m = self.object(object);
        m.insert("choices".into(), json!([choice]));
        m.insert("usage".into(), usage(s));
        Value::Object(m)
    }

    /// A streamed chunk carrying `text` (chat: with the role on the first).
    pub fn chunk(&self, text: &str, first: bool) -> Value {
        let choice = if self.chat {
            let delta = if first {
                json!({"role": "assistant", "content": text})
            } else {
                json!({"content": text})
            };
            json!({"index": 0, "delta": delta, "finish_reason": null})
        } else {
            json!({"index": 0, "text": text, "logprobs": null, "finish_reason": null})
        };
        self.chunk_with(choice)
    }

    /// The last streamed chunk: the finish reason and the usage.
    pub fn last_chunk(&self, s: &CallSummary) -> Value {
        let reason = finish_reason(s.finish);
        let choice = if self.chat {
            json!({"index": 0, "delta": {}, "finish_reason": reason})
        } else {
            json!({"index": 0, "text": "", "logprobs": null, "finish_reason": reason})
        };
        let mut v = self.chunk_with(choice);
        v["usage"] = usage(s);
        v
    }

    fn chunk_with(&self, choice: Value) -> Value {
        let object = if self.chat {
            "chat.completion.chunk"
        } else {
            "text_completion"
        };
        let mut m = self.object(object);
        m.insert("choices".into(), json!([choice]));
        Value::Object(m)
    }
}
