//! Chat templates of DeepSeek-R1-Distill-Qwen, Qwen3 and Llama 3.1 Instruct rendered as transformers renders
//! them. Expected strings and token ids come from tests/fixtures/chat_templates/make_expected.py.

use std::path::{Path, PathBuf};

use reprolm_engine::{
    ChatMessage, ChatOptions, ChatTemplate, GenerationPrompt, ModelFiles, ModelSource,
    SpecialTokens, Tokenizer,
};
use serde_json::Value;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/chat_templates")
}

struct Case {
    name: String,
    model: String,
    messages: Vec<ChatMessage>,
    opts: ChatOptions,
}

fn cases() -> Vec<Case> {
    let text = std::fs::read_to_string(fixtures().join("cases.json")).unwrap();
    let json: Value = serde_json::from_str(&text).unwrap();
    let mut out = Vec::new();
    for case in json["cases"].as_array().unwrap() {
        let messages: Vec<ChatMessage> = serde_json::from_value(case["messages"].clone()).unwrap();
        let opts = ChatOptions {
            generation_prompt: if case["add_generation_prompt"].as_bool().unwrap() {
                GenerationPrompt::Add
            } else {
                GenerationPrompt::Omit
            },
            enable_thinking: case["enable_thinking"].as_bool(),
            extra: case["extra"].as_object().unwrap().clone(),
        };
        for model in case["models"].as_array().unwrap() {
            out.push(Case {
                name: case["name"].as_str().unwrap().to_string(),
                model: model.as_str().unwrap().to_string(),
                messages: messages.clone(),
                opts: opts.clone(),
            });
        }
    }
    out
}

fn template(model: &str) -> ChatTemplate {
    ChatTemplate::from_tokenizer_config(&fixtures().join(model).join("tokenizer_config.json"))
        .unwrap()
}

fn expected(case: &Case) -> String {
    std::fs::read_to_string(
        fixtures()
            .join("expected")
            .join(&case.model)
            .join(format!("{}.txt", case.name)),
    )
    .unwrap()
}

#[test]
fn renders_byte_for_byte_as_transformers() {
    let cases = cases();
    assert!(
        cases.len() >= 16,
        "cases.json lists {} renderings",
        cases.len()
    );
    let mut failures = Vec::new();
    for case in &cases {
        let got = template(&case.model)
            .render(&case.messages, &case.opts)
            .unwrap();
        let want = expected(case);
        if got != want {
            failures.push(format!(
                "{}/{}:\n--- transformers\n{want:?}\n--- reprolm\n{got:?}",
                case.model, case.name
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} renderings differ:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[test]
fn prompt_token_ids_match_apply_chat_template() {
    let tok = Tokenizer::from_file(fixtures().join("tokenizer.json")).unwrap();
    for case in cases() {
        let text = template(&case.model)
            .render(&case.messages, &case.opts)
            .unwrap();
        let ids = tok.encode(&text, SpecialTokens::Skip).unwrap();
        let path = fixtures()
            .join("expected")
            .join(&case.model)
            .join(format!("{}.ids.json", case.name));
        let want: Vec<u32> = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        assert_eq!(ids, want, "{}/{}", case.model, case.name);
    }
}

#[test]
fn reasoning_prompts_open_the_thinking_block() {
    let user = [ChatMessage::user("What is 1 + 1?")];
    let default = ChatOptions::default();
    let r1 = template("deepseek-r1-distill-qwen")
        .render(&user, &default)
        .unwrap();
    assert_eq!(
        r1,
        "<｜begin▁of▁sentence｜><｜User｜>What is 1 + 1?<｜Assistant｜><think>\n"
    );

    let qwen3 = template("qwen3");
    let on = qwen3
        .render(
            &user,
            &ChatOptions {
                enable_thinking: Some(true),
                ..default.clone()
            },
        )
        .unwrap();
    assert_eq!(
        on,
        "<|im_start|>user\nWhat is 1 + 1?<|im_end|>\n<|im_start|>assistant\n"
    );
    assert_eq!(
        qwen3.render(&user, &default).unwrap(),
        on,
        "undefined enable_thinking means thinking on"
    );
    let off = qwen3
        .render(
            &user,
            &ChatOptions {
                enable_thinking: Some(false),
                ..default
            },
        )
        .unwrap();
    assert_eq!(off, format!("{on}<think>\n\n</think>\n\n"));
}

#[test]
fn chat_template_jinja_takes_priority_over_tokenizer_config() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["config.json", "model.safetensors", "tokenizer.json"] {
        std::fs::write(dir.path().join(name), "{}").unwrap();
    }
    std::fs::write(
        dir.path().join("tokenizer_config.json"),
        r#"{"bos_token": "<B>", "chat_template": "from tokenizer_config"}"#,
    )
    .unwrap();
    let files =
        ModelFiles::resolve(&ModelSource::parse(dir.path().to_str().unwrap()).unwrap()).unwrap();
    let msgs = [ChatMessage::user("q")];
    let opts = ChatOptions::default();
    assert_eq!(
        ChatTemplate::load(&files)
            .unwrap()
            .render(&msgs, &opts)
            .unwrap(),
        "from tokenizer_config"
    );

    std::fs::write(
        dir.path().join("chat_template.jinja"),
        "{{ bos_token }}from jinja file\n",
    )
    .unwrap();
    let files =
        ModelFiles::resolve(&ModelSource::parse(dir.path().to_str().unwrap()).unwrap()).unwrap();
    let tmpl = ChatTemplate::load(&files).unwrap();
    assert_eq!(tmpl.render(&msgs, &opts).unwrap(), "<B>from jinja file");
    assert!(tmpl.origin().ends_with("chat_template.jinja"));

    std::fs::remove_file(dir.path().join("chat_template.jinja")).unwrap();
    std::fs::remove_file(dir.path().join("tokenizer_config.json")).unwrap();
    let files =
        ModelFiles::resolve(&ModelSource::parse(dir.path().to_str().unwrap()).unwrap()).unwrap();
    let err = ChatTemplate::load(&files).unwrap_err().to_string();
    assert!(
        err.contains("tokenizer_config.json") && err.contains("no chat template"),
        "{err}"
    );
}
