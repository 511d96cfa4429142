//! Turning chat messages into the prompt string, the way transformers' `apply_chat_template` does.
//!
//! The template is the model's own Jinja source (chat_template.jinja, or `chat_template` in
//! tokenizer_config.json), run on minijinja set up like transformers' Jinja environment: `trim_blocks`,
//! `lstrip_blocks`, loop controls, no auto-escaping, `raise_exception`, `strftime_now`, a `tojson` that is
//! Python's `json.dumps`, and Python string and dict methods (`.strip()`, `.split()`, `.items()`) through
//! minijinja-contrib's pycompat. The tests compare with strings transformers rendered, byte for byte, because a
//! single differing newline changes the prompt tokens and so every result downstream.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use minijinja::value::Kwargs;
use minijinja::{AutoEscape, Environment, ErrorKind, Value};
use serde_json::Value as Json;

use crate::digest::sha256_hex;
use crate::error::{Error, Result};
use crate::loader::{read_json, ModelFiles};
use crate::pyjson::{dumps, DumpOptions};

/// The special-token attributes transformers passes to every template (`special_tokens_map`).
const SPECIAL_TOKEN_NAMES: [&str; 7] = [
    "bos_token",
    "eos_token",
    "unk_token",
    "sep_token",
    "pad_token",
    "cls_token",
    "mask_token",
];

const TEMPLATE_NAME: &str = "chat_template";

/// The error for a tokenizer_config.json that has no `chat_template`.
fn absent(path: &Path) -> Error {
    Error::BadField {
        path: path.to_path_buf(),
        field: "chat_template".into(),
        reason: "absent: this tokenizer has no chat template (is it a base model?)".into(),
    }
}

/// One turn of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ChatMessage {
    /// `system`, `user` or `assistant` (templates may accept others, such as `tool`).
    pub role: String,
    /// The text of the turn.
    pub content: String,
}

impl ChatMessage {
    /// A message with any role.
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        Self {
            role: role.into(),
            content: content.into(),
        }
    }

    /// A `system` message.
    pub fn system(content: impl Into<String>) -> Self {
        Self::new("system", content)
    }

    /// A `user` message.
    pub fn user(content: impl Into<String>) -> Self {
        Self::new("user", content)
    }

    /// An `assistant` message.
    pub fn assistant(content: impl Into<String>) -> Self {
        Self::new("assistant", content)
    }
}

/// Whether the prompt ends with the header that opens the assistant's reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GenerationPrompt {
    /// End with the assistant header (`add_generation_prompt=True`), as every evaluation prompt does.
    #[default]
    Add,
    /// Render the conversation only.
    Omit,
}

/// Everything besides the messages that a template reads.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChatOptions {
    /// `add_generation_prompt`.
    pub generation_prompt: GenerationPrompt,
    /// Qwen3's `enable_thinking`; `None` leaves it undefined, which Qwen3 treats as thinking on.
    pub enable_thinking: Option<bool>,
    /// Further template variables, as the extra keyword arguments of `apply_chat_template` (e.g. `tools`,
    /// `date_string`). They override the special tokens but not `messages`, `add_generation_prompt` or
    /// `enable_thinking`. Maps inside come in key order (serde_json's `Map` is sorted).
    pub extra: serde_json::Map<String, Json>,
}

/// A model's chat template, compiled once and rendered per prompt.
pub struct ChatTemplate {
    env: Environment<'static>,
    source: String,
    origin: String,
    special_tokens: BTreeMap<String, String>,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate")
            .field("origin", &self.origin)
            .field("special_tokens", &self.special_tokens)
            .finish_non_exhaustive()
    }
}

impl ChatTemplate {
    /// The template transformers would use for this model: chat_template.jinja if present, else
    /// tokenizer_config.json's `chat_template`; special tokens come from tokenizer_config.json.
    ///
    /// ```no_run
    /// use reprolm_engine::{ChatMessage, ChatOptions, ChatTemplate, ModelFiles, ModelSource};
    /// let files = ModelFiles::resolve(&ModelSource::parse("deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B")?)?;
    /// let prompt = ChatTemplate::load(&files)?.render(&[ChatMessage::user("1+1?")], &ChatOptions::default())?;
    /// assert!(prompt.ends_with("<｜Assistant｜><think>\n"));
    /// # Ok::<(), reprolm_engine::Error>(())
    /// ```
    pub fn load(files: &ModelFiles) -> Result<Self> {
        match (Self::find(files)?, &files.tokenizer_config) {
            (Some(t), _) => Ok(t),
            (None, Some(path)) => Err(absent(path)),
            (None, None) => Err(Error::MissingFile {
                file: "tokenizer_config.json".into(),
                location: files.source.to_string(),
                hint: "; there is no chat_template.jinja either, so the model has no chat template"
                    .into(),
            }),
        }
    }

    /// As [`ChatTemplate::load`], but `None` for a model without a chat template (a base model):
    /// no chat_template.jinja, and no `chat_template` in tokenizer_config.json.
    pub fn find(files: &ModelFiles) -> Result<Option<Self>> {
        let config = match &files.tokenizer_config {
            Some(path) => Some((path, read_json(path)?)),
            None => None,
        };
        if let Some(path) = &files.chat_template_file {
            let special_tokens = match &config {
                Some((p, json)) => special_tokens_from_config(p, json)?,
                None => BTreeMap::new(),
            };
            let source = std::fs::read_to_string(path).map_err(|source| Error::Io {
                path: path.clone(),
                source,
            })?;
            return Self::compile(source, path.display().to_string(), special_tokens).map(Some);
        }
        match config {
            Some((path, json)) => Self::from_config_json(path, &json),
            None => Ok(None),
        }
    }

    /// The template and special tokens of one tokenizer_config.json.
    ///
    /// `chat_template` may be a string or, as transformers saves several templates, a list of
    /// `{"name", "template"}` from which the one named `default` is used.
    pub fn from_tokenizer_config(path: &Path) -> Result<Self> {
        Self::from_config_json(path, &read_json(path)?)?.ok_or_else(|| absent(path))
    }

    /// The template of a parsed tokenizer_config.json; `None` when it has none.
    fn from_config_json(path: &Path, json: &Json) -> Result<Option<Self>> {
        let special_tokens = special_tokens_from_config(path, json)?;
        let bad = |reason: String| Error::BadField {
            path: path.to_path_buf(),
            field: "chat_template".into(),
            reason,
        };
        let source = match json.get("chat_template") {
            None | Some(Json::Null) => return Ok(None),
            Some(Json::String(s)) => s.clone(),
            Some(Json::Array(items)) => {
                let mut names = Vec::new();
                let mut default = None;
                for item in items {
                    match (
                        item.get("name").and_then(Json::as_str),
                        item.get("template").and_then(Json::as_str),
                    ) {
                        (Some("default"), Some(t)) => default = Some(t.to_string()),
                        (Some(name), Some(_)) => names.push(name.to_string()),
                        _ => {
                            return Err(bad(format!(
                                "list entries need string `name` and `template`, got {item}"
                            )))
                        }
                    }
                }
                default
                    .ok_or_else(|| bad(format!("no template named `default` among {names:?}")))?
            }
            Some(other) => {
                return Err(bad(format!(
                    "expected a string or a list of templates, got {other}"
                )))
            }
        };
        Self::compile(source, path.display().to_string(), special_tokens).map(Some)
    }

    /// A template from source, with the special tokens it may refer to (`bos_token`, `eos_token`, ...).
    ///
    /// ```
    /// use reprolm_engine::{ChatMessage, ChatOptions, ChatTemplate};
    /// let tmpl = ChatTemplate::new(
    ///     "{{ bos_token }}{% for m in messages %}[{{ m.role }}] {{ m.content.strip() }}\n{% endfor %}",
    ///     [("bos_token", "<s>")],
    /// )?;
    /// let text = tmpl.render(&[ChatMessage::user(" hi ")], &ChatOptions::default())?;
    /// assert_eq!(text, "<s>[user] hi\n");
    /// # Ok::<(), reprolm_engine::Error>(())
    /// ```
    pub fn new<'a>(
        source: impl Into<String>,
        special_tokens: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self> {
        let special = special_tokens
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Self::compile(source.into(), "template source".into(), special)
    }

    fn compile(
        source: String,
        origin: String,
        special_tokens: BTreeMap<String, String>,
    ) -> Result<Self> {
        let mut env = Environment::new();
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_auto_escape_callback(|_| AutoEscape::None);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_filter("tojson", tojson);
        env.add_function("raise_exception", raise_exception);
        env.add_function("strftime_now", strftime_now);
        env.add_template_owned(TEMPLATE_NAME, source.clone())
            .map_err(|e| {
                Error::ChatTemplate(format!("{origin}: does not parse: {}", describe(&e)))
            })?;
        Ok(Self {
            env,
            source,
            origin,
            special_tokens,
        })
    }

    /// The prompt for `messages`: `apply_chat_template(messages, tokenize=False, ...)`.
    ///
    /// Tokenize it with [`SpecialTokens::Skip`](crate::SpecialTokens::Skip): the template already wrote BOS,
    /// and transformers encodes it with `add_special_tokens=False`.
    pub fn render(&self, messages: &[ChatMessage], opts: &ChatOptions) -> Result<String> {
        if messages.is_empty() {
            return Err(Error::ChatTemplate(format!(
                "{}: no messages to render",
                self.origin
            )));
        }
        let mut ctx: BTreeMap<String, Value> = BTreeMap::new();
        for (name, token) in &self.special_tokens {
            ctx.insert(name.clone(), Value::from(token.as_str()));
        }
        // transformers always passes these two, as None when unused; templates test `tools is not none`.
        ctx.insert("tools".into(), Value::from(()));
        ctx.insert("documents".into(), Value::from(()));
        for (name, value) in &opts.extra {
            ctx.insert(name.clone(), Value::from_serialize(value));
        }
        ctx.insert("messages".into(), Value::from_serialize(messages));
        ctx.insert(
            "add_generation_prompt".into(),
            Value::from(opts.generation_prompt == GenerationPrompt::Add),
        );
        if let Some(on) = opts.enable_thinking {
            ctx.insert("enable_thinking".into(), Value::from(on));
        }
        let template = self
            .env
            .get_template(TEMPLATE_NAME)
            .expect("compile() added the template");
        template
            .render(ctx)
            .map_err(|e| Error::ChatTemplate(format!("{}: {}", self.origin, describe(&e))))
    }

    /// The Jinja source, to record or hash in a manifest.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Lower-case hex SHA-256 of the Jinja source.
    pub fn sha256(&self) -> String {
        sha256_hex(self.source.as_bytes())
    }

    /// Where the template came from (a file path).
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// A special token the template can refer to, by attribute name (`bos_token`, `eos_token`, ...).
    pub fn special_token(&self, name: &str) -> Option<&str> {
        self.special_tokens.get(name).map(String::as_str)
    }
}

/// minijinja's error with its template line, without the multi-line source excerpt of `{:#}`.
fn describe(e: &minijinja::Error) -> String {
    let mut s = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(inner) = source {
        let _ = write!(s, ": {inner}");
        source = inner.source();
    }
    s
}

/// bos/eos/... from tokenizer_config.json, each a string or an AddedToken dict `{"content": ...}`.
fn special_tokens_from_config(path: &Path, json: &Json) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for name in SPECIAL_TOKEN_NAMES {
        let content = match json.get(name) {
            None | Some(Json::Null) => continue,
            Some(Json::String(s)) => s.clone(),
            Some(Json::Object(map)) => match map.get("content") {
                Some(Json::String(s)) => s.clone(),
                _ => {
                    return Err(Error::BadField {
                        path: PathBuf::from(path),
                        field: format!("{name}.content"),
                        reason: "expected the token string".into(),
                    })
                }
            },
            Some(other) => {
                return Err(Error::BadField {
                    path: PathBuf::from(path),
                    field: name.into(),
                    reason: format!("expected a string or an AddedToken object, got {other}"),
                })
            }
        };
        out.insert(name.to_string(), content);
    }
    Ok(out)
}

/// transformers' `tojson`: `json.dumps` without HTML escaping, `ensure_ascii=False` by default.
fn tojson(value: Value, kwargs: Kwargs) -> std::result::Result<Value, minijinja::Error> {
    let opts = DumpOptions::from_kwargs(&kwargs)?;
    Ok(Value::from_safe_string(dumps(&value, &opts)?))
}

fn raise_exception(message: String) -> std::result::Result<Value, minijinja::Error> {
    Err(minijinja::Error::new(
        ErrorKind::InvalidOperation,
        format!("raise_exception: {message}"),
    ))
}

/// `datetime.now().strftime(format)`, in local time as Python does.
fn strftime_now(format: String) -> std::result::Result<Value, minijinja::Error> {
    let mut out = String::new();
    write!(out, "{}", chrono::Local::now().format(&format)).map_err(|_| {
        minijinja::Error::new(
            ErrorKind::InvalidOperation,
            format!("strftime_now: invalid format {format:?}"),
        )
    })?;
    Ok(Value::from(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(source: &str, opts: &ChatOptions) -> Result<String> {
        ChatTemplate::new(source, [("bos_token", "<s>"), ("eos_token", "</s>")])?
            .render(&[ChatMessage::system("sys"), ChatMessage::user("hi")], opts)
    }

    #[test]
    fn jinja_environment_matches_transformers() {
        let opts = ChatOptions::default();
        // trim_blocks + lstrip_blocks: block lines leave no whitespace behind.
        let src = "{% for m in messages %}\n    {% if m.role == 'user' %}\n[{{ m.content }}]\n    {% endif %}\n{% endfor %}";
        assert_eq!(render(src, &opts).unwrap(), "[hi]\n");
        // Loop controls.
        let src = "{% for m in messages %}{% if m.role == 'system' %}{% continue %}{% endif %}{{ m.role }}{% break %}{% endfor %}";
        assert_eq!(render(src, &opts).unwrap(), "user");
        // No HTML escaping anywhere, Python string methods, tools/documents defined as none; booleans print as
        // Python's `True`, as in Jinja2.
        let src = "{{ '<&>' }}{{ 'a-b'.split('-')|tojson }}{{ ' x '.strip() }}{{ tools is none }}{{ documents is defined }}";
        assert_eq!(render(src, &opts).unwrap(), "<&>[\"a\", \"b\"]xTrueTrue");
        // Special tokens, extra kwargs, add_generation_prompt.
        let mut opts = ChatOptions {
            generation_prompt: GenerationPrompt::Omit,
            ..ChatOptions::default()
        };
        opts.extra.insert("date_string".into(), "1 Jan 2025".into());
        let src = "{{ bos_token }}{{ eos_token }}{{ date_string }}{{ add_generation_prompt }}{{ enable_thinking is defined }}";
        assert_eq!(render(src, &opts).unwrap(), "<s></s>1 Jan 2025FalseFalse");
        opts.enable_thinking = Some(false);
        let src = "{{ enable_thinking is false }}";
        assert_eq!(render(src, &opts).unwrap(), "True");
        // Trailing newline of the source is dropped, as Jinja's keep_trailing_newline=False does.
        assert_eq!(render("x\n", &opts).unwrap(), "x");
    }

    #[test]
    fn tojson_takes_python_keyword_arguments() {
        let opts = ChatOptions::default();
        let src = "{{ {'b': 1, 'a': [1.0, none]}|tojson(indent=2) }}|{{ {'b': 1, 'a': 2}|tojson(sort_keys=true) }}|{{ 'é'|tojson(ensure_ascii=true) }}|{{ [1,2]|tojson(separators=(',', ':')) }}";
        assert_eq!(
            render(src, &opts).unwrap(),
            "{\n  \"b\": 1,\n  \"a\": [\n    1.0,\n    null\n  ]\n}|{\"a\": 2, \"b\": 1}|\"\\u00e9\"|[1,2]"
        );
        let err = render("{{ 1|tojson(indent=2, bogus=1) }}", &opts)
            .unwrap_err()
            .to_string();
        assert!(err.contains("bogus"), "{err}");
    }

    #[test]
    fn raise_exception_and_strftime_now() {
        let opts = ChatOptions::default();
        let err = render(
            "{{ raise_exception('Only user and assistant roles are supported!') }}",
            &opts,
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("Only user and assistant roles are supported!"),
            "{err}"
        );
        let year = render("{{ strftime_now('%Y') }}", &opts).unwrap();
        assert_eq!(year, chrono::Local::now().format("%Y").to_string());
        let date = render("{{ strftime_now('%d %b %Y') }}", &opts).unwrap();
        assert_eq!(date.len(), 11, "{date}");
    }

    #[test]
    fn parse_errors_and_empty_conversations_are_reported() {
        let err = ChatTemplate::new("{% if %}", []).unwrap_err().to_string();
        assert!(
            err.contains("does not parse") && err.contains("chat_template:1"),
            "{err}"
        );
        let tmpl = ChatTemplate::new("x", []).unwrap();
        assert!(tmpl.render(&[], &ChatOptions::default()).is_err());
    }

    #[test]
    fn tokenizer_config_forms() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokenizer_config.json");
        let write = |text: &str| std::fs::write(&path, text).unwrap();
        let msgs = [ChatMessage::user("q")];
        let opts = ChatOptions::default();

        write(
            r#"{"bos_token": {"__type": "AddedToken", "content": "<B>"}, "eos_token": "<E>", "unk_token": null,
                  "chat_template": [{"name": "tool_use", "template": "T"}, {"name": "default", "template": "{{ bos_token }}{{ eos_token }}"}]}"#,
        );
        let tmpl = ChatTemplate::from_tokenizer_config(&path).unwrap();
        assert_eq!(tmpl.render(&msgs, &opts).unwrap(), "<B><E>");
        assert_eq!(
            (
                tmpl.special_token("bos_token"),
                tmpl.special_token("unk_token")
            ),
            (Some("<B>"), None)
        );

        write(r#"{"chat_template": [{"name": "tool_use", "template": "T"}]}"#);
        let err = ChatTemplate::from_tokenizer_config(&path)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("field `chat_template`") && err.contains("tool_use"),
            "{err}"
        );
        write(r#"{"eos_token": "<E>"}"#);
        let err = ChatTemplate::from_tokenizer_config(&path)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("tokenizer_config.json: field `chat_template`: absent"),
            "{err}"
        );
        write(r#"{"eos_token": 5, "chat_template": "x"}"#);
        let err = ChatTemplate::from_tokenizer_config(&path)
            .unwrap_err()
            .to_string();
        assert!(err.contains("field `eos_token`"), "{err}");
    }
}
