//! The options objects of the JavaScript API, read with serde; unknown fields are errors, so
//! that a misspelt option is refused rather than ignored.

use serde::Deserialize;
use softmax_wgpu::sampling::{SamplingParams, Uniforms};
use softmax_wgpu::{
    CrossEntropyOptions, DType, EngineOptions, Forward, HalfPath, MaskedRows, Reduction, Shape,
    SoftmaxOptions, Tuning, Variant,
};
use wasm_bindgen::{JsCast, JsValue};

use crate::convert::js_error;

/// Reads `value` (undefined or null: the defaults) as `T`, whose fields are `fields`; errors
/// name the object. serde-wasm-bindgen reads only the fields it knows, so unknown ones are
/// looked for here.
pub fn parse<T: for<'de> Deserialize<'de> + Default>(
    value: JsValue,
    what: &str,
    fields: &[&str],
) -> Result<T, JsValue> {
    if value.is_undefined() || value.is_null() {
        return Ok(T::default());
    }
    let Some(object) = value
        .dyn_ref::<js_sys::Object>()
        .filter(|_| value.is_object())
    else {
        return Err(js_error(format!("{what}: must be an object")));
    };
    for key in js_sys::Object::keys(object) {
        let key = key.as_string().unwrap_or_default();
        if !fields.contains(&key.as_str()) {
            return Err(js_error(format!(
                "{what}: unknown option {key:?}; the options are {}",
                fields.join(", ")
            )));
        }
    }
    serde_wasm_bindgen::from_value(value).map_err(|e| js_error(format!("{what}: {e}")))
}

/// An operation's options object, which must be given (it holds the shape).
fn parse_required<T: for<'de> Deserialize<'de> + Default>(
    value: JsValue,
    fields: &[&str],
) -> Result<T, JsValue> {
    if value.is_undefined() || value.is_null() {
        return Err(js_error("options: { rows, cols } are required"));
    }
    parse(value, "options", fields)
}

/// `Engine.create`'s options.
#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct EngineOpts {
    half_path: Option<String>,
    tuning: Option<String>,
    batch_invariant: Option<bool>,
}

impl EngineOpts {
    /// Reads `Engine.create`'s options object.
    pub fn parse(value: JsValue) -> Result<Self, JsValue> {
        parse(
            value,
            "engine options",
            &["halfPath", "tuning", "batchInvariant"],
        )
    }

    /// The Rust engine options.
    pub fn into_engine_options(self) -> Result<EngineOptions, JsValue> {
        let half_path = match self.half_path.as_deref() {
            None | Some("auto") => HalfPath::Auto,
            Some("portable") => HalfPath::Portable,
            Some(other) => return Err(bad("halfPath", other, "auto or portable")),
        };
        let tuning = match self.tuning.as_deref() {
            None | Some("auto") => Tuning::Auto,
            Some("cpu") => Tuning::Cpu,
            Some("gpu") => Tuning::Gpu,
            Some(other) => return Err(bad("tuning", other, "auto, cpu or gpu")),
        };
        Ok(EngineOptions {
            half_path,
            tuning,
            batch_invariant: self.batch_invariant.unwrap_or(false),
            ..Default::default()
        })
    }
}

fn bad(name: &str, value: &str, allowed: &str) -> JsValue {
    js_error(format!("invalid {name} {value:?}: must be {allowed}"))
}

/// The shape, dtype and softmax options of every operation.
#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ShapeOpts {
    #[serde(default)]
    rows: Option<f64>,
    #[serde(default)]
    cols: Option<f64>,
    #[serde(default)]
    dtype: Option<String>,
    #[serde(default)]
    temperature: Option<f32>,
    #[serde(default)]
    masked_rows: Option<String>,
    #[serde(default)]
    variant: Option<String>,
}

impl ShapeOpts {
    /// Reads an operation's options object.
    pub fn parse(value: JsValue) -> Result<Self, JsValue> {
        let fields = [
            "rows",
            "cols",
            "dtype",
            "temperature",
            "maskedRows",
            "variant",
        ];
        parse_required(value, &fields)
    }

    /// The shape (the Rust API validates it) and the dtype.
    pub fn shape_and_dtype(&self) -> Result<(Shape, DType), JsValue> {
        let count = |name: &str, v: Option<f64>| match v {
            None => Err(js_error(format!("options: {name} is required"))),
            Some(v) if v.fract() != 0.0 || !(0.0..=usize::MAX as f64).contains(&v) => {
                Err(js_error(format!(
                    "options: {name} must be a non-negative integer that wasm can address, got {v}"
                )))
            }
            Some(v) => Ok(v as usize),
        };
        let shape = Shape::new(count("rows", self.rows)?, count("cols", self.cols)?);
        Ok((shape, dtype(self.dtype.as_deref())?))
    }

    /// The softmax options (temperature, masked rows, variant).
    pub fn softmax_options(&self) -> Result<SoftmaxOptions, JsValue> {
        let masked_rows = match self.masked_rows.as_deref() {
            None | Some("nan") => MaskedRows::Nan,
            Some("zeros") => MaskedRows::Zeros,
            Some(other) => return Err(bad("maskedRows", other, "nan or zeros")),
        };
        let variant = match &self.variant {
            None => Variant::Auto,
            Some(v) => v.parse().map_err(js_error)?,
        };
        Ok(SoftmaxOptions {
            temperature: self.temperature.unwrap_or(1.0),
            masked_rows,
            variant,
        })
    }
}

/// `sample`'s options.
#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SampleOpts {
    #[serde(default)]
    rows: Option<f64>,
    #[serde(default)]
    cols: Option<f64>,
    #[serde(default)]
    dtype: Option<String>,
    #[serde(default)]
    temperature: Option<f32>,
    #[serde(default)]
    top_k: Option<f64>,
    #[serde(default)]
    top_p: Option<f32>,
    #[serde(default)]
    min_p: Option<f32>,
    #[serde(default)]
    seed: Option<f64>,
    #[serde(default)]
    offsets: Option<Vec<f64>>,
    #[serde(default)]
    uniforms: Option<Vec<f32>>,
}

/// Where `sample`'s uniforms come from, owned.
pub enum SampleUniforms {
    Given(Vec<f32>),
    Philox { seed: u64, offsets: Vec<u64> },
}

impl SampleUniforms {
    /// The Rust API's view.
    pub fn view(&self) -> Uniforms<'_> {
        match self {
            SampleUniforms::Given(u) => Uniforms::Given(u),
            SampleUniforms::Philox { seed, offsets } => Uniforms::Philox {
                seed: *seed,
                offsets,
            },
        }
    }
}

/// `v` as an integer in [0, 2^53], the integers a JavaScript number holds exactly.
fn exact_integer(name: &str, v: f64) -> Result<u64, JsValue> {
    if v.fract() != 0.0 || !(0.0..=9_007_199_254_740_992.0).contains(&v) {
        return Err(js_error(format!(
            "options: {name} must be an integer from 0 to 2^53, got {v}"
        )));
    }
    Ok(v as u64)
}

impl SampleOpts {
    /// Reads `sample`'s options object.
    pub fn parse(value: JsValue) -> Result<Self, JsValue> {
        let fields = [
            "rows",
            "cols",
            "dtype",
            "temperature",
            "topK",
            "topP",
            "minP",
            "seed",
            "offsets",
            "uniforms",
        ];
        parse_required(value, &fields)
    }

    /// The shape and the dtype, as [`ShapeOpts::shape_and_dtype`].
    pub fn shape_and_dtype(&self) -> Result<(Shape, DType), JsValue> {
        ShapeOpts {
            rows: self.rows,
            cols: self.cols,
            dtype: self.dtype.clone(),
            ..Default::default()
        }
        .shape_and_dtype()
    }

    /// The parameters of every row (the Rust API checks their domains).
    pub fn params(&self) -> Result<SamplingParams, JsValue> {
        let d = SamplingParams::default();
        let top_k = match self.top_k {
            None => d.top_k,
            Some(k) => u32::try_from(exact_integer("topK", k)?)
                .map_err(|_| js_error(format!("options: topK must be below 2^32, got {k}")))?,
        };
        Ok(SamplingParams {
            temperature: self.temperature.unwrap_or(d.temperature),
            top_k,
            top_p: self.top_p.unwrap_or(d.top_p),
            min_p: self.min_p.unwrap_or(d.min_p),
        })
    }

    /// The uniforms: `uniforms` (one per row), or Philox under `seed` at `offsets` (default:
    /// each row's index); exactly one of `seed` and `uniforms`.
    pub fn uniforms(&self, rows: usize) -> Result<SampleUniforms, JsValue> {
        match (&self.uniforms, self.seed) {
            (Some(u), None) if self.offsets.is_none() => Ok(SampleUniforms::Given(u.clone())),
            (None, Some(seed)) => {
                let offsets = match &self.offsets {
                    None => (0..rows as u64).collect(),
                    Some(o) => o
                        .iter()
                        .map(|&v| exact_integer("offsets", v))
                        .collect::<Result<_, _>>()?,
                };
                Ok(SampleUniforms::Philox {
                    seed: exact_integer("seed", seed)?,
                    offsets,
                })
            }
            (Some(_), _) => Err(js_error(
                "options: uniforms replace seed and offsets; give one or the other",
            )),
            (None, None) => Err(js_error(
                "options: sample needs seed (Philox, with offsets) or uniforms (one per row)",
            )),
        }
    }
}

/// The dtype called `name` (default f32).
pub fn dtype(name: Option<&str>) -> Result<DType, JsValue> {
    match name {
        None | Some("f32") => Ok(DType::F32),
        Some("f16") => Ok(DType::F16),
        Some("bf16") => Ok(DType::BF16),
        Some(other) => Err(bad("dtype", other, "f32, f16 or bf16")),
    }
}

/// The forward operation called `name`.
pub fn forward_op(name: &str) -> Result<Forward, JsValue> {
    match name {
        "softmax" => Ok(Forward::Softmax),
        "log-softmax" => Ok(Forward::LogSoftmax),
        "logsumexp" => Ok(Forward::LogSumExp),
        other => Err(bad("op", other, "softmax, log-softmax or logsumexp")),
    }
}

/// `crossEntropy`'s options.
#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CrossEntropyOpts {
    #[serde(default)]
    rows: Option<f64>,
    #[serde(default)]
    cols: Option<f64>,
    #[serde(default)]
    dtype: Option<String>,
    #[serde(default)]
    temperature: Option<f32>,
    #[serde(default)]
    ignore_index: Option<i32>,
    #[serde(default)]
    label_smoothing: Option<f32>,
    #[serde(default)]
    reduction: Option<String>,
    #[serde(default)]
    weight: Option<Vec<f32>>,
    #[serde(default)]
    z_loss: Option<f32>,
    #[serde(default)]
    grad_scale: Option<f32>,
    /// Whether the gradient is computed (default yes).
    #[serde(default = "yes")]
    pub grad: bool,
}

fn yes() -> bool {
    true
}

impl CrossEntropyOpts {
    /// Reads `crossEntropy`'s options object.
    pub fn parse(value: JsValue) -> Result<Self, JsValue> {
        let fields = [
            "rows",
            "cols",
            "dtype",
            "temperature",
            "ignoreIndex",
            "labelSmoothing",
            "reduction",
            "weight",
            "zLoss",
            "gradScale",
            "grad",
        ];
        parse_required(value, &fields)
    }

    /// The shape and the dtype, as [`ShapeOpts::shape_and_dtype`].
    pub fn shape_and_dtype(&self) -> Result<(Shape, DType), JsValue> {
        ShapeOpts {
            rows: self.rows,
            cols: self.cols,
            dtype: self.dtype.clone(),
            ..Default::default()
        }
        .shape_and_dtype()
    }

    /// The Rust cross-entropy options.
    pub fn to_options(&self) -> Result<CrossEntropyOptions, JsValue> {
        let d = CrossEntropyOptions::default();
        let reduction = match self.reduction.as_deref() {
            None | Some("mean") => Reduction::Mean,
            Some("sum") => Reduction::Sum,
            Some("none") => Reduction::None,
            Some(other) => return Err(bad("reduction", other, "mean, sum or none")),
        };
        Ok(CrossEntropyOptions {
            ignore_index: self.ignore_index.unwrap_or(d.ignore_index),
            label_smoothing: self.label_smoothing.unwrap_or(d.label_smoothing),
            reduction,
            weight: self.weight.clone(),
            temperature: self.temperature.unwrap_or(d.temperature),
            z_loss: self.z_loss.unwrap_or(d.z_loss),
            grad_scale: self.grad_scale.unwrap_or(d.grad_scale),
        })
    }
}
