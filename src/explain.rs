//! What a call would launch, without recording anything: `Engine::explain_*` and
//! `softmax-wgpu explain`. Every operation's launch (src/launch/) is described through its
//! passes, the same list the executor (src/execute.rs) records: each pass's entry point,
//! workgroups and, per binding its kernel declares (src/shader/spec.rs), the argument and
//! bytes it binds; with the WGSL of each module.

use std::fmt::Write;

use crate::dtype::DType;
use crate::engine::Engine;
use crate::error::Result;
use crate::launch::{BackwardCall, Binding, CrossEntropyCall, ForwardCall, Pass, TensorAt};
use crate::options::{CrossEntropyOptions, Forward, Shape, SoftmaxOptions};

/// What a call would launch, in words, and the WGSL of each module it would use:
/// [`Engine::explain_forward`], [`Engine::explain_cross_entropy`],
/// [`Engine::explain_backward`], `softmax-wgpu explain`.
#[derive(Clone, Debug)]
pub struct Explanation {
    /// The plan: the choices made (variant, layout, workgroup), then each pass with its
    /// entry point, workgroup counts and the bytes each binding holds.
    pub plan: String,
    /// Each module's pipeline key and its assembled WGSL.
    pub shaders: Vec<(String, String)>,
}

impl std::fmt::Display for Explanation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.plan)
    }
}

/// The tensors of a call, each at offset 0 of its own buffer.
fn at(dtype: DType) -> TensorAt {
    TensorAt { dtype, offset: 0 }
}

impl Engine {
    /// The first line of every explanation: the call and the adapter it is planned for.
    fn explain_heading(&self, call: &str) -> String {
        let info = &self.info().adapter;
        let cache = match self.profile.cache_bytes {
            0 => String::new(),
            _ if self.profile.cpu_tuned() => ", cache_bytes unused under CPU tuning".into(),
            bytes => format!(", split-row dispatches sized to a cache of {bytes} bytes"),
        };
        format!(
            "{call} on {} ({:?}, {:?} tuning{}{cache})\n",
            info.name,
            info.backend,
            self.tuning(),
            if self.profile.batch_invariant {
                ", batch-invariant: planned by the row length alone"
            } else {
                ""
            }
        )
    }

    /// What [`Engine::record_forward`](crate::Engine::record_forward) would launch for `op`
    /// on `shape` with `input` logits and a separate `output` (both at offset 0, the per-row
    /// logsumexp beside them), without recording anything.
    pub fn explain_forward(
        &self,
        op: Forward,
        shape: Shape,
        input: DType,
        output: DType,
        options: &SoftmaxOptions,
    ) -> Result<Explanation> {
        shape.validate()?;
        let launch = self.profile.launch_forward(&ForwardCall {
            op,
            shape,
            input: at(input),
            output: (op != Forward::LogSumExp).then(|| at(output)),
            in_place: false,
            lse: Some(at(DType::F32)),
            variant: options.variant,
            inv_t: options.inv_temperature()?,
            masked_rows: options.masked_rows,
        })?;
        let out_name = if op == Forward::LogSumExp {
            "f32 logsumexp".to_string()
        } else {
            format!("{output:?}")
        };
        let mut s = self.explain_heading(&format!(
            "{op:?} of {} x {} {input:?} -> {out_name}",
            shape.rows, shape.cols
        ));
        for k in (0..2).filter(|&k| launch.keys[k].is_some()) {
            let plan = &launch.plans[k];
            let l = &plan.layout;
            let _ = writeln!(
                s,
                "layout of the {} rows: variant {}, workgroup {} lanes, {} lane(s) a row{}{}{}{}, {} row(s) a workgroup",
                if k == 1 { "packed" } else { "unpacked" },
                plan.variant,
                plan.workgroup,
                l.lanes,
                if l.resident_blocks > 0 {
                    format!(", {} blocks of 8 held per lane", l.resident_blocks)
                } else {
                    String::new()
                },
                if l.subgroup_rows { ", rows within a subgroup" } else { "" },
                if l.split {
                    format!(", split into {} pieces", plan.chunks)
                } else {
                    String::new()
                },
                if l.packed_cols > 0 {
                    format!(", {} rows packed per lane", plan.packed_rows())
                } else {
                    String::new()
                },
                plan.rows_per_group,
            );
        }
        Ok(explain_passes(
            s,
            &launch.passes(),
            &["input", "output", "lse"],
        ))
    }

    /// What [`Engine::record_cross_entropy`](crate::Engine::record_cross_entropy) would
    /// launch for `shape` with `logits`, a gradient of `grad` (none without), class weights
    /// where `weighted`, and `options`, each tensor at offset 0 of its own buffer.
    pub fn explain_cross_entropy(
        &self,
        shape: Shape,
        logits: DType,
        grad: Option<DType>,
        weighted: bool,
        options: &CrossEntropyOptions,
    ) -> Result<Explanation> {
        shape.validate()?;
        let inv_t = options.validate(shape.cols)?;
        let launch = self.profile.launch_cross_entropy(&CrossEntropyCall {
            shape,
            logits: at(logits),
            grad: grad.map(at),
            in_place: false,
            targets: at(DType::F32),
            loss: at(DType::F32),
            lse: at(DType::F32),
            weight: weighted.then(|| at(DType::F32)),
            options: options.uniforms(inv_t),
        })?;
        let s = self.explain_heading(&format!(
            "cross-entropy of {} x {} {logits:?}{}{}",
            shape.rows,
            shape.cols,
            grad.map_or(String::new(), |g| format!(" with its {g:?} gradient")),
            if weighted { ", class weights" } else { "" },
        ));
        Ok(explain_passes(
            s,
            &launch.passes(),
            &["logits", "grad", "lse", "targets", "weight", "loss", "meta"],
        ))
    }

    /// What [`Engine::record_backward`](crate::Engine::record_backward) would launch: the
    /// softmax (`log = false`) or log-softmax backward of `shape` with `y` and `dy` of
    /// dtype `y` and `dx` of dtype `dx`, each at offset 0 of its own buffer.
    pub fn explain_backward(
        &self,
        log: bool,
        shape: Shape,
        y: DType,
        dx: DType,
    ) -> Result<Explanation> {
        shape.validate()?;
        let launch = self.profile.launch_backward(&BackwardCall {
            log,
            shape,
            y: at(y),
            dy: at(y),
            dx: at(dx),
        })?;
        let s = self.explain_heading(&format!(
            "{} backward of {} x {} {y:?} -> {dx:?}",
            if log { "log-softmax" } else { "softmax" },
            shape.rows,
            shape.cols
        ));
        Ok(explain_passes(s, &launch.passes(), &["y", "dy", "dx"]))
    }
}

/// `heading` followed by each pass (its entry point, workgroups and what each binding
/// holds, `args` naming the call's buffers), then each distinct pipeline's key; the shaders
/// are each distinct module's WGSL.
fn explain_passes(heading: String, passes: &[Pass], args: &[&str]) -> Explanation {
    let mut s = heading;
    let _ = writeln!(s, "{} pass(es), in one compute pass:", passes.len());
    let mut keys = Vec::new();
    for (i, p) in passes.iter().enumerate() {
        let k = keys.iter().position(|&k| k == p.key).unwrap_or_else(|| {
            keys.push(p.key);
            keys.len() - 1
        });
        let _ = write!(
            s,
            "  {i}: pipeline {k} `{}`, {} x {} workgroups, binding (bytes of each buffer):",
            p.key.entry_point(),
            p.groups.0,
            p.groups.1
        );
        let names = p.key.storage_bindings();
        let mut first = true;
        for &(slot, b) in &p.bindings {
            let name = names
                .iter()
                .find(|d| d.slot == slot)
                .map_or("?", |d| d.name);
            let arg = |a: usize| args.get(a).copied().unwrap_or("?");
            let sep = if first { "\n     " } else { "," };
            first = false;
            let _ = match b {
                Binding::Chunk { arg: a, chunk } => write!(
                    s,
                    "{sep} {name} = {}[{}..{}]",
                    arg(a),
                    chunk.offset,
                    chunk.offset + chunk.size
                ),
                Binding::Vectors {
                    arg: a,
                    chunk,
                    view,
                } => write!(
                    s,
                    "{sep} {name} = {}[{}..{}] as {view}-byte vectors",
                    arg(a),
                    chunk.offset,
                    chunk.offset + chunk.size / view * view
                ),
                Binding::Head { arg: a, size } => write!(s, "{sep} {name} = {}[0..{size}]", arg(a)),
                Binding::Scratch { size } => match size {
                    Some(n) => write!(s, "{sep} {name} = scratch[0..{n}]"),
                    None => write!(s, "{sep} {name} = scratch"),
                },
            };
        }
        s.push('\n');
    }
    for (k, key) in keys.iter().enumerate() {
        let _ = writeln!(s, "pipeline {k}: {key:?}");
    }
    let mut shaders: Vec<(String, String)> = Vec::new();
    for key in keys {
        let wgsl = key.source();
        if !shaders.iter().any(|(_, w)| *w == wgsl) {
            shaders.push((format!("{key:?}"), wgsl));
        }
    }
    Explanation { plan: s, shaders }
}
