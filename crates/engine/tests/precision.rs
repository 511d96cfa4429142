//! Precision policies on the fixture models: LayerCast's defining identity, each policy's error
//! against a float64 reference, agreement with transformers in the same dtype, memory accounting
//! against the bytes actually held, and policy errors raised before any weight is read.

mod common;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use common::{fixture_dir, load, max_abs_diff, Expected, ARCHS};
use reprolm_engine::{
    check_policy_on_device, spec_from_config_file, Decoder, LoadOptions, LogitsFor, Model,
    ModelSource,
};
use reprolm_precision::{Component, PrecisionPolicy, PRESETS};
use std::collections::HashMap;

fn logits(dec: &Decoder, ids: &[u32]) -> Tensor {
    let mut cache = dec.new_cache(vec![0]);
    dec.forward(&[ids.to_vec()], &mut cache, LogitsFor::All)
        .unwrap()
        .squeeze(0)
        .unwrap()
}

fn f64_rows(t: &Tensor) -> Vec<Vec<f64>> {
    t.to_dtype(DType::F64).unwrap().to_vec2().unwrap()
}

fn mean_abs_diff(a: &[Vec<f64>], b: &[Vec<f64>]) -> f64 {
    let (mut sum, mut n) = (0.0, 0usize);
    for (x, y) in a.iter().zip(b) {
        for (p, q) in x.iter().zip(y) {
            sum += (p - q).abs();
            n += 1;
        }
    }
    sum / n as f64
}

/// The projections whose weights and biases LayerCast stores in bf16.
fn is_projection(name: &str) -> bool {
    ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
        .iter()
        .any(|p| name.contains(&format!(".{p}.")))
}

/// The fixture's weights with every projection weight and bias rounded to bf16 (and held in f32
/// again); embeddings, LM head and norms untouched.
fn bf16_rounded_projections(arch: &str) -> HashMap<String, Tensor> {
    let path = fixture_dir(arch).join("model.safetensors");
    let mut tensors = candle_core::safetensors::load(&path, &Device::Cpu).unwrap();
    let mut rounded = 0;
    for (name, t) in tensors.iter_mut() {
        if is_projection(name) {
            *t = t.to_dtype(DType::BF16).unwrap().to_dtype(DType::F32).unwrap();
            rounded += 1;
        }
    }
    assert!(rounded >= 14, "{arch}: only {rounded} projection tensors found");
    tensors
}

#[test]
fn layercast_is_bitwise_fp32_on_bf16_rounded_projection_weights() {
    for arch in ARCHS {
        let ids = Expected::load(arch).ids("prompt_ids");
        let lc = logits(&load(arch, &PrecisionPolicy::preset("layercast").unwrap()), &ids);
        let (_, spec) = spec_from_config_file(&fixture_dir(arch).join("config.json")).unwrap();
        let vb = VarBuilder::from_tensors(bf16_rounded_projections(arch), DType::F32, &Device::Cpu);
        let fp32 = Decoder::load(&spec, &PrecisionPolicy::fp32(), vb).unwrap();
        let reference = logits(&fp32, &ids);
        assert_eq!(lc.dtype(), DType::F32);
        let a: Vec<u32> = lc.flatten_all().unwrap().to_vec1::<f32>().unwrap().iter().map(|x| x.to_bits()).collect();
        let b: Vec<u32> = reference.flatten_all().unwrap().to_vec1::<f32>().unwrap().iter().map(|x| x.to_bits()).collect();
        let differing = a.iter().zip(&b).filter(|(x, y)| x != y).count();
        println!("{arch}: layercast vs fp32 on bf16-rounded weights: {differing} of {} logits differ", a.len());
        assert_eq!(differing, 0, "{arch}");
        // And the rounding matters: with the original weights fp32 differs.
        let original = logits(&load(arch, &PrecisionPolicy::fp32()), &ids);
        assert!(max_abs_diff(&f64_rows(&original), &f64_rows(&lc)) > 0.0, "{arch}");
    }
}

#[test]
fn measure() {
    let mut policies: Vec<PrecisionPolicy> = PRESETS.iter().map(|p| PrecisionPolicy::preset(p).unwrap()).collect();
    policies.push(PrecisionPolicy::fp64_reference());
    for arch in ARCHS {
        let exp = Expected::load(arch);
        let ids = exp.ids("prompt_ids");
        let r64 = f64_rows(&logits(&load(arch, &PrecisionPolicy::fp64_reference()), &ids));
        println!("{arch}: engine f64 vs transformers f64: max {:.3e}", max_abs_diff(&r64, &exp.f64_2("logits_f64")));
        for p in &policies {
            let got = f64_rows(&logits(&load(arch, p), &ids));
            println!("{arch} {:<10} vs f64 max {:.3e} mean {:.3e} | vs tf f32 {:.3e} bf16 {:.3e} f16 {:.3e}", p.name,
              max_abs_diff(&got, &r64), mean_abs_diff(&got, &r64),
              max_abs_diff(&got, &exp.f64_2("logits_f32")), max_abs_diff(&got, &exp.f64_2("logits_bf16")), max_abs_diff(&got, &exp.f64_2("logits_f16")));
            println!("      mean vs tf bf16 {:.3e} f16 {:.3e}", mean_abs_diff(&got, &exp.f64_2("logits_bf16")), mean_abs_diff(&got, &exp.f64_2("logits_f16")));
        }
        let tf = exp.f64_2("logits_f64");
        for k in ["logits_f32", "logits_bf16", "logits_f16"] {
            let t = exp.f64_2(k);
            println!("{arch} transformers {k} vs tf f64: max {:.3e} mean {:.3e}", max_abs_diff(&t, &tf), mean_abs_diff(&t, &tf));
        }
    }
}

#[test]
fn memory_calculator_matches_the_bytes_the_engine_holds() {
    for arch in ARCHS {
        let ids = Expected::load(arch).ids("prompt_ids");
        let (_, spec) = spec_from_config_file(&fixture_dir(arch).join("config.json")).unwrap();
        let shape = spec.shape();
        for name in PRESETS {
            let policy = PrecisionPolicy::preset(name).unwrap();
            let dec = load(arch, &policy);
            let want = shape.weight_memory(&policy);
            let held = dec.weight_bytes();
            let held: std::collections::BTreeMap<&str, u64> =
                held.into_iter().map(|(k, v)| (k, v as u64)).collect();
            assert_eq!(held, want.by_dtype(), "{arch} {name}");
            let mut cache = dec.new_cache(vec![0, 0]);
            let batch = vec![ids.clone(), ids.clone()];
            dec.forward(&batch, &mut cache, LogitsFor::Last).unwrap();
            let kv = shape.kv_cache_memory(&policy, 2, ids.len());
            assert_eq!(cache.bytes() as u64, kv.bytes, "{arch} {name}");
        }
    }
}

#[test]
fn bad_policies_are_rejected_before_any_weight_is_read() {
    // A model directory that does not exist: if loading got as far as the files, the error
    // would name them instead of the policy.
    let source = ModelSource::Local("/nonexistent/model".into());
    let bad = PrecisionPolicy::fp32().with(Component::Attention, DType::U8);
    let err = match Model::load(&source, &LoadOptions::cpu(bad)) {
        Ok(_) => panic!("loaded a model with a u8 attention policy"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("attention") && !err.contains("nonexistent"), "{err}");

    // Malformed and partial files fail in resolve, before a source is even looked at.
    let dir = std::env::temp_dir().join(format!("reprolm-engine-policy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (file, text, want) in [
        ("partial.toml", "kv_cache = \"f32\"\n", "missing components"),
        ("typo.toml", "base = \"bf16\"\nkv_cahce = \"f32\"\n", ":2: `kv_cahce`: unknown key"),
        ("broken.toml", "base = [\n", "not a valid policy file"),
    ] {
        let path = dir.join(file);
        std::fs::write(&path, text).unwrap();
        let err = PrecisionPolicy::resolve(path.to_str().unwrap())
            .unwrap_err()
            .to_string();
        assert!(err.contains(file) && err.contains(want), "{file}: {err}");
    }
    std::fs::remove_dir_all(&dir).unwrap();

    // Every preset runs on the CPU.
    for name in PRESETS {
        check_policy_on_device(&PrecisionPolicy::preset(name).unwrap(), &Device::Cpu).unwrap();
    }
}
