//! Tests of the chat templates.

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

#[test]
fn gemma_layout_like_llama_cpp() {
    let t = ChatTemplate::gemma();
    let msgs = [
        ChatMessage::new("system", "  Be brief. "),
        ChatMessage::new("user", " Hi\n"),
        ChatMessage::new("assistant", "Hello."),
        ChatMessage::new("user", "Bye"),
    ];
    assert_eq!(
        t.render(&msgs, true),
        "<start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n\
         <start_of_turn>model\nHello.<end_of_turn>\n\
         <start_of_turn>user\nBye<end_of_turn>\n<start_of_turn>model\n"
    );
    assert_eq!(t.render(&[], true), "<start_of_turn>model\n");
    // Two system messages join without a separator, as llama.cpp's `+=`.
    let msgs = [
        ChatMessage::new("system", "A"),
        ChatMessage::new("system", "B"),
        ChatMessage::new("user", "u"),
    ];
    assert_eq!(
        t.render(&msgs, false),
        "<start_of_turn>user\nAB\n\nu<end_of_turn>\n"
    );
}

#[test]
fn recognises_gemma_templates() {
    let src = "{{ bos_token }}{% for message in messages %}{{ '<start_of_turn>' + role + '\n' + message['content'] | trim + '<end_of_turn>\n' }}{% endfor %}";
    let t = ChatTemplate::from_jinja(src).unwrap();
    assert!(t.is_gemma());
    assert_eq!(t.marker_text(true), START_OF_TURN);
    assert_eq!(t.without_default_system().marker_text(false), END_OF_TURN);
}
