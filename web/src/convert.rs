//! Between JavaScript values and Rust: typed arrays of each dtype, targets, errors.

use js_sys::{Array, BigInt64Array, Float32Array, Int32Array, Uint16Array};
use softmax_wgpu::{DType, Element};
use wasm_bindgen::{JsCast, JsValue};

/// A JavaScript `Error` with `message`: what every rejected promise carries.
pub fn js_error(message: impl std::fmt::Display) -> JsValue {
    js_sys::Error::new(&message.to_string()).into()
}

/// Runs `$body` with `$t` the Rust element type of `$dtype`.
macro_rules! by_dtype {
    ($dtype:expr, $t:ident => $body:expr) => {
        match $dtype {
            softmax_wgpu::DType::F32 => {
                type $t = f32;
                $body
            }
            softmax_wgpu::DType::F16 => {
                type $t = half::f16;
                $body
            }
            softmax_wgpu::DType::BF16 => {
                type $t = half::bf16;
                $body
            }
        }
    };
}
pub(crate) use by_dtype;

/// The JavaScript array type that carries `dtype`.
fn array_name(dtype: DType) -> &'static str {
    match dtype {
        DType::F32 => "a Float32Array",
        DType::F16 | DType::BF16 => "a Uint16Array of its bits",
    }
}

/// `value` as elements of `T`: a `Float32Array` for f32, a `Uint16Array` of bits for f16
/// and bf16. `what` names the argument in the error.
pub fn from_js<T: Element>(value: &JsValue, what: &str) -> Result<Vec<T>, JsValue> {
    let wrong = || {
        js_error(format!(
            "{what}: dtype {:?} takes {}",
            T::DTYPE,
            array_name(T::DTYPE)
        ))
    };
    match T::DTYPE {
        DType::F32 => {
            let a = value.dyn_ref::<Float32Array>().ok_or_else(wrong)?;
            Ok(bytemuck::cast_slice(&a.to_vec()).to_vec())
        }
        DType::F16 | DType::BF16 => {
            let a = value.dyn_ref::<Uint16Array>().ok_or_else(wrong)?;
            Ok(bytemuck::cast_slice(&a.to_vec()).to_vec())
        }
    }
}

/// `v` as the JavaScript array of its dtype (see [`from_js`]).
pub fn to_js<T: Element>(v: &[T]) -> JsValue {
    match T::DTYPE {
        DType::F32 => Float32Array::from(bytemuck::cast_slice::<T, f32>(v)).into(),
        DType::F16 | DType::BF16 => Uint16Array::from(bytemuck::cast_slice::<T, u16>(v)).into(),
    }
}

/// `v` widened to f32 (exactly), as a `Float32Array`.
pub fn to_f32_js<T: Element>(v: &[T]) -> Float32Array {
    let wide: Vec<f32> = v.iter().map(|x| x.to_f32()).collect();
    Float32Array::from(&wide[..])
}

/// Class indices from an `Int32Array`, a `BigInt64Array` or an array of integers.
pub fn targets_from_js(value: &JsValue) -> Result<Vec<i64>, JsValue> {
    if let Some(a) = value.dyn_ref::<Int32Array>() {
        return Ok(a.to_vec().into_iter().map(i64::from).collect());
    }
    if let Some(a) = value.dyn_ref::<BigInt64Array>() {
        return Ok(a.to_vec());
    }
    if Array::is_array(value) {
        return serde_wasm_bindgen::from_value(value.clone())
            .map_err(|e| js_error(format!("targets: {e}")));
    }
    Err(js_error(
        "targets: an Int32Array, a BigInt64Array or an array of integers, one per row",
    ))
}
