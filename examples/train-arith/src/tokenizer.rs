//! The byte-level BPE tokenizer and the DeepSeek-R1 style chat format of the embedded model.
//!
//! The chat format is the one the R1 distills use, so the engine's chat-template path is exercised
//! the same way on this model as on the real ones: the generation prompt opens a `<think>` block,
//! the model writes its worked steps, closes `</think>` and states the boxed answer.

use anyhow::{anyhow, Result};
use reprolm_tasks::arith::ArithProblem;
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{BpeTrainerBuilder, BPE};
use tokenizers::models::TrainerWrapper;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::{
    AddedToken, DecoderWrapper, ModelWrapper, NormalizerWrapper, PostProcessorWrapper,
    PreTokenizerWrapper, Tokenizer, TokenizerBuilder,
};

pub const BOS: &str = "<｜begin▁of▁sentence｜>";
pub const EOS: &str = "<｜end▁of▁sentence｜>";
pub const USER: &str = "<｜User｜>";
pub const ASSISTANT: &str = "<｜Assistant｜>";
pub const PAD: &str = "<｜▁pad▁｜>";
pub const THINK: &str = "<think>";
pub const END_THINK: &str = "</think>";

/// Jinja chat template: system messages go first without a role tag, user turns after `<｜User｜>`,
/// assistant turns after `<｜Assistant｜>` and closed by EOS; the generation prompt opens a thought.
pub const CHAT_TEMPLATE: &str = "{{ bos_token }}\
{%- for message in messages -%}\
{%- if message['role'] == 'system' -%}{{ message['content'] }}\
{%- elif message['role'] == 'user' -%}{{ '<｜User｜>' + message['content'] }}\
{%- elif message['role'] == 'assistant' -%}{{ '<｜Assistant｜>' + message['content'] + eos_token }}\
{%- endif -%}\
{%- endfor -%}\
{%- if add_generation_prompt -%}{{ '<｜Assistant｜><think>\\n' }}{%- endif -%}";

/// What the template renders for one user question with the generation prompt on.
pub fn prompt(question: &str) -> String {
    format!("{BOS}{USER}{question}{ASSISTANT}{THINK}\n")
}

/// The text the model is trained to produce after [`prompt`], EOS included.
pub fn response(p: &ArithProblem) -> String {
    format!("{}{EOS}", response_body(p))
}

fn response_body(p: &ArithProblem) -> String {
    format!(
        "{}\n{END_THINK}\n\nThe answer is \\boxed{{{}}}.",
        p.reasoning, p.answer
    )
}

/// Trains byte-level BPE on prompts and responses. Digits are always split one per token, as in
/// Qwen2's tokenizer, so numbers are spelled the same way whatever their neighbours.
pub fn train(problems: &[ArithProblem], vocab_size: usize) -> Result<Tokenizer> {
    let specials: Vec<AddedToken> = [BOS, EOS, USER, ASSISTANT, PAD]
        .iter()
        .map(|s| AddedToken::from(*s, true))
        .collect();
    let trainer = BpeTrainerBuilder::new()
        .vocab_size(vocab_size)
        .min_frequency(2)
        .show_progress(false)
        .special_tokens(specials)
        .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
        .build();
    let mut trainer = TrainerWrapper::BpeTrainer(trainer);
    let pre = Sequence::new(vec![
        PreTokenizerWrapper::Digits(Digits::new(true)),
        PreTokenizerWrapper::ByteLevel(ByteLevel::new(false, true, true)),
    ]);
    let mut tok: Tokenizer = TokenizerBuilder::<
        ModelWrapper,
        NormalizerWrapper,
        PreTokenizerWrapper,
        PostProcessorWrapper,
        DecoderWrapper,
    >::new()
    .with_model(ModelWrapper::BPE(BPE::default()))
    .with_normalizer(None)
    .with_pre_tokenizer(Some(PreTokenizerWrapper::Sequence(pre)))
    .with_post_processor(None)
    .with_decoder(Some(DecoderWrapper::ByteLevel(ByteLevelDecoder::default())))
    .build()
    .map_err(|e| anyhow!("building tokenizer: {e}"))?
    .into();
    // Special tokens stay out of the corpus: merges spent on their pieces would never be used.
    let texts = problems
        .iter()
        .flat_map(|p| [p.question.clone(), response_body(p)]);
    tok.train(&mut trainer, texts)
        .map_err(|e| anyhow!("training tokenizer: {e}"))?;
    // R1 keeps the thought markers visible in decoded text, so they are added tokens, not special.
    tok.add_tokens([
        AddedToken::from(THINK, false),
        AddedToken::from(END_THINK, false),
    ])
    .map_err(|e| anyhow!("adding thought markers: {e}"))?;
    Ok(tok)
}

/// Token ids of `text`, with special tokens written in the text recognised and nothing added.
pub fn encode(tok: &Tokenizer, text: &str) -> Result<Vec<u32>> {
    Ok(tok
        .encode(text, false)
        .map_err(|e| anyhow!("encoding: {e}"))?
        .get_ids()
        .to_vec())
}

pub fn id(tok: &Tokenizer, token: &str) -> Result<u32> {
    tok.token_to_id(token)
        .ok_or_else(|| anyhow!("token {token} missing from the vocabulary"))
}
