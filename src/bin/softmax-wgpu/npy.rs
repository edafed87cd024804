//! `.npy` files through npyz: typed reading with clear errors, and writes that land whole or
//! not at all (a temporary file beside the target, renamed into place).

use std::fs::File;
use std::io::{BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use half::f16;
use npyz::WriterBuilder;

/// The logits of a `.npy` file: f32, f16 or f64 (NumPy's default), any rank >= 1.
pub enum Logits {
    F32(Vec<f32>),
    F16(Vec<f16>),
    F64(Vec<f64>),
}

/// An array read from a `.npy` file and its shape.
pub struct Array<T> {
    pub data: T,
    pub shape: Vec<u64>,
}

fn open(path: &Path) -> Result<npyz::NpyFile<BufReader<File>>, String> {
    let file = File::open(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    npyz::NpyFile::new(BufReader::new(file))
        .map_err(|e| format!("{} is not a valid .npy file: {e}", path.display()))
}

fn type_str(npy: &npyz::NpyFile<BufReader<File>>) -> String {
    match npy.dtype() {
        npyz::DType::Plain(ts) => ts.to_string(),
        other => format!("{other:?}"),
    }
}

fn check_shape(path: &Path, shape: &[u64], order: npyz::Order) -> Result<(), String> {
    if order == npyz::Order::Fortran {
        return Err(format!(
            "{}: Fortran-ordered arrays are not supported; save a C-ordered copy",
            path.display()
        ));
    }
    if shape.is_empty() {
        return Err(format!(
            "{}: a rank-0 array has no last axis to work along",
            path.display()
        ));
    }
    if shape.contains(&0) {
        return Err(format!(
            "{}: shape {shape:?} has a zero-size axis",
            path.display()
        ));
    }
    Ok(())
}

/// Reads f32, f16 or f64 logits of rank >= 1 with no zero-size axis.
pub fn read_logits(path: &Path) -> Result<Array<Logits>, String> {
    let npy = open(path)?;
    let shape = npy.shape().to_vec();
    check_shape(path, &shape, npy.order())?;
    let ts = type_str(&npy);
    let bad = |e: std::io::Error| format!("cannot read {}: {e}", path.display());
    let data = match ts.as_str() {
        "<f4" => Logits::F32(npy.into_vec::<f32>().map_err(bad)?),
        "<f2" => Logits::F16(npy.into_vec::<f16>().map_err(bad)?),
        "<f8" => Logits::F64(npy.into_vec::<f64>().map_err(bad)?),
        other => {
            return Err(format!(
                "{}: dtype {other} is not supported; logits must be float32, float16 or float64",
                path.display()
            ))
        }
    };
    Ok(Array { data, shape })
}

/// Reads int32 or int64 targets of rank >= 1.
pub fn read_targets(path: &Path) -> Result<Array<Vec<i64>>, String> {
    let npy = open(path)?;
    let shape = npy.shape().to_vec();
    check_shape(path, &shape, npy.order())?;
    let ts = type_str(&npy);
    let bad = |e: std::io::Error| format!("cannot read {}: {e}", path.display());
    let data = match ts.as_str() {
        "<i8" => npy.into_vec::<i64>().map_err(bad)?,
        "<i4" => npy
            .into_vec::<i32>()
            .map_err(bad)?
            .into_iter()
            .map(i64::from)
            .collect(),
        other => {
            return Err(format!(
                "{}: dtype {other} is not supported; targets must be int32 or int64",
                path.display()
            ))
        }
    };
    Ok(Array { data, shape })
}

/// Writes `data` with `shape` to `path` atomically: nothing appears at `path` unless the
/// whole file was written.
pub fn write<T: npyz::Serialize + npyz::AutoSerialize + Copy>(
    path: &Path,
    shape: &[u64],
    data: &[T],
) -> Result<(), String> {
    let tmp = temporary_beside(path);
    let result = (|| -> std::io::Result<()> {
        let mut out = BufWriter::new(File::create(&tmp)?);
        {
            let mut writer = npyz::WriteOptions::new()
                .default_dtype()
                .shape(shape)
                .writer(&mut out)
                .begin_nd()?;
            writer.extend(data.iter().copied())?;
            writer.finish()?;
        }
        out.flush()?;
        out.get_ref().sync_all()?;
        drop(out);
        std::fs::rename(&tmp, path)
    })();
    result.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        format!("cannot write {}: {e}", path.display())
    })
}

fn temporary_beside(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.{}.partial", std::process::id()))
}
