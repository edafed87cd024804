//! The device-level steps: recorded into the caller's encoder on the caller's buffers.

use super::{Shard, STATE_BYTES};
use crate::dtype::DType;
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::launch::{state_bytes, vocab_arg as arg, whole_f32, VocabCall, Whole};
use crate::options::{
    validate_temperature, CrossEntropyOptions, Forward, MaskedRows, Shape, SoftmaxOptions,
};
use crate::params::VocabParams;
use crate::record::TensorRef;
use crate::shader::VocabEntry;
use crate::training::GradOutput;

const WORDS: u64 = (STATE_BYTES / 4) as u64;

/// Arguments of [`Engine::record_partial_states`]. The per-row tensors (targets, states)
/// start at offsets the adapter's `min_storage_buffer_offset_alignment` divides.
#[derive(Clone, Copy, Debug)]
pub struct PartialArgs<'a> {
    /// The shard.
    pub shard: Shard,
    /// Its `[rows, cols]` logits.
    pub logits: TensorRef<'a>,
    /// Cross-entropy: `rows` global class indices (i32; `dtype` ignored). The state then
    /// holds the target's logit and weight where this shard owns the target.
    pub targets: Option<TensorRef<'a>>,
    /// Cross-entropy: this shard's `cols` class weights (f32), or none.
    pub weight: Option<TensorRef<'a>>,
    /// Out: `rows` states, [`STATE_BYTES`] each.
    pub states: TensorRef<'a>,
}

/// Arguments of [`Engine::record_merge_states`].
#[derive(Clone, Copy, Debug)]
pub struct MergeArgs<'a> {
    /// Rows.
    pub rows: usize,
    /// States per row to merge (shards).
    pub count: usize,
    /// `count * rows` states, shard-major: shard k's state of row r at `k * rows + r` (the
    /// layout an all-gather gives).
    pub states: TensorRef<'a>,
    /// Out: `rows` merged states.
    pub merged: TensorRef<'a>,
}

/// Arguments of [`Engine::record_finish_forward`].
#[derive(Clone, Copy, Debug)]
pub struct FinishArgs<'a> {
    /// Softmax, log-softmax or logsumexp.
    pub op: Forward,
    /// The shard.
    pub shard: Shard,
    /// Its `[rows, cols]` logits.
    pub logits: TensorRef<'a>,
    /// `rows` merged states.
    pub merged: TensorRef<'a>,
    /// Out: the shard's `[rows, cols]` slice of the softmax or log-softmax (none for
    /// logsumexp).
    pub output: Option<TensorRef<'a>>,
    /// Out: `rows` logsumexp of `logits / T` (f32), or none.
    pub lse: Option<TensorRef<'a>>,
}

/// Arguments of [`Engine::record_finish_cross_entropy`].
#[derive(Clone, Copy, Debug)]
pub struct FinishCrossEntropyArgs<'a> {
    /// The shard.
    pub shard: Shard,
    /// Its `[rows, cols]` logits.
    pub logits: TensorRef<'a>,
    /// `rows` global class indices (i32).
    pub targets: TensorRef<'a>,
    /// This shard's `cols` class weights (f32), or none.
    pub weight: Option<TensorRef<'a>>,
    /// `rows` merged states.
    pub merged: TensorRef<'a>,
    /// The gradient of the shard's logits: none, in place, or into a tensor.
    pub grad: GradOutput<'a>,
    /// Out: `rows` per-row losses (f32), the same on every shard.
    pub loss: TensorRef<'a>,
    /// Out: `rows` logsumexp of `logits / T` (f32).
    pub lse: TensorRef<'a>,
    /// Out: 16 bytes (STORAGE | COPY_SRC), `[denominator, first invalid row or u32::MAX,
    /// reduced loss, 0]`, as [`crate::CrossEntropyArgs::meta`].
    pub meta: &'a wgpu::Buffer,
}

/// The options of the partial step: the temperature, and for cross-entropy the ignored
/// target and whether label smoothing's sums are wanted.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PartialOptions {
    /// Logits are divided by it, as in the finish.
    pub temperature: f32,
    /// Cross-entropy: rows with this target own no target.
    pub ignore_index: i32,
    /// Cross-entropy: label smoothing (its sums are computed where > 0).
    pub label_smoothing: f32,
}

impl From<&SoftmaxOptions> for PartialOptions {
    fn from(o: &SoftmaxOptions) -> Self {
        PartialOptions {
            temperature: o.temperature,
            ignore_index: -100,
            label_smoothing: 0.0,
        }
    }
}

impl From<&CrossEntropyOptions> for PartialOptions {
    fn from(o: &CrossEntropyOptions) -> Self {
        PartialOptions {
            temperature: o.temperature,
            ignore_index: o.ignore_index,
            label_smoothing: o.label_smoothing,
        }
    }
}

/// A tensor's `TensorRef` read as f32 words.
fn f32s(t: TensorRef<'_>) -> TensorRef<'_> {
    TensorRef {
        dtype: DType::F32,
        ..t
    }
}

/// Buffers of a call in `arg` order.
type Buffers<'a> = [Option<&'a wgpu::Buffer>; arg::COUNT];

fn whole(t: TensorRef<'_>, n: u64) -> Whole {
    whole_f32(t.offset, n)
}

impl Engine {
    /// Records the partial step of a shard into `encoder`: each row's [`super::PartialState`]
    /// over the shard's columns (one dispatch per chunk of rows, a workgroup per row).
    pub fn record_partial_states(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        args: &PartialArgs,
        options: &PartialOptions,
    ) -> Result<()> {
        self.check_alive()?;
        let s = args.shard;
        s.validate()?;
        let inv_t = validate_temperature(options.temperature)?;
        if !(0.0..=1.0).contains(&options.label_smoothing) {
            return Err(Error::InvalidOption {
                name: "label_smoothing",
                value: options.label_smoothing.to_string(),
                reason: "must be in [0, 1]",
            });
        }
        let (rows, cols) = (s.rows as u64, s.cols as u64);
        args.logits.check("logits", rows * cols)?;
        f32s(args.states).check("states", rows * WORDS)?;
        let mut wholes = [None; arg::COUNT];
        let mut buffers: Buffers = [None; arg::COUNT];
        buffers[arg::LOGITS] = Some(args.logits.buffer);
        if let Some(t) = args.targets {
            f32s(t).check("targets", rows)?;
            wholes[arg::TARGETS] = Some(whole(t, rows));
            buffers[arg::TARGETS] = Some(t.buffer);
            if let Some(w) = args.weight {
                f32s(w).check("weight", cols)?;
                wholes[arg::WEIGHT] = Some(whole(w, cols));
                buffers[arg::WEIGHT] = Some(w.buffer);
            }
        }
        wholes[arg::STATES] = Some(Whole {
            at: f32s(args.states).place(),
            bytes: state_bytes(rows),
        });
        buffers[arg::STATES] = Some(args.states.buffer);
        let call = VocabCall {
            shape: s.shape(),
            logits: Some(args.logits.place()),
            output: None,
            in_place: false,
            wholes,
            params: VocabParams {
                first_col: s.first_col as u32,
                ignore_index: options.ignore_index,
                inv_t,
                smoothing: options.label_smoothing,
                ..bytemuck::Zeroable::zeroed()
            },
        };
        let launch = self.profile.launch_vocab(VocabEntry::Partial, &call)?;
        self.execute(
            encoder,
            "softmax-wgpu partial states",
            &launch.passes,
            launch.scratch_bytes,
            &buffers,
        )
    }

    /// Records the merge of `count` states per row (shard-major) into one per row, in
    /// shard order: a lane per row.
    pub fn record_merge_states(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        args: &MergeArgs,
        temperature: f32,
    ) -> Result<()> {
        self.check_alive()?;
        let inv_t = validate_temperature(temperature)?;
        let shape = Shape::new(args.rows, 1);
        shape.validate()?;
        if args.count == 0 || args.count > u32::MAX as usize {
            return Err(Error::InvalidOption {
                name: "count",
                value: args.count.to_string(),
                reason: "must be at least 1 and fit in 32 bits",
            });
        }
        let (rows, count) = (args.rows as u64, args.count as u64);
        f32s(args.states).check("states", count * rows * WORDS)?;
        f32s(args.merged).check("merged", rows * WORDS)?;
        let mut wholes = [None; arg::COUNT];
        let mut buffers: Buffers = [None; arg::COUNT];
        wholes[arg::STATES] = Some(whole(args.states, count * rows * WORDS));
        wholes[arg::MERGED] = Some(whole(args.merged, rows * WORDS));
        buffers[arg::STATES] = Some(args.states.buffer);
        buffers[arg::MERGED] = Some(args.merged.buffer);
        let call = VocabCall {
            shape,
            logits: None,
            output: None,
            in_place: false,
            wholes,
            params: VocabParams {
                count: count as u32,
                inv_t,
                ..bytemuck::Zeroable::zeroed()
            },
        };
        let passes = self.profile.launch_vocab(VocabEntry::Merge, &call)?.passes;
        self.execute(encoder, "softmax-wgpu merge states", &passes, 0, &buffers)
    }

    /// Records the finish of a shard's forward operation: its softmax or log-softmax slice
    /// from the merged states, and where asked the rows' logsumexp (a lane per output pair).
    pub fn record_finish_forward(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        args: &FinishArgs,
        options: &SoftmaxOptions,
    ) -> Result<()> {
        self.check_alive()?;
        let s = args.shard;
        s.validate()?;
        let inv_t = validate_temperature(options.temperature)?;
        let (rows, cols) = (s.rows as u64, s.cols as u64);
        args.logits.check("logits", rows * cols)?;
        f32s(args.merged).check("merged", rows * WORDS)?;
        let output = match (args.op, args.output) {
            (Forward::LogSumExp, _) => None,
            (_, Some(o)) => {
                o.check("output", rows * cols)?;
                if o.buffer == args.logits.buffer {
                    return Err(Error::InvalidBuffer {
                        what: "output",
                        reason: "must not be the logits' buffer".into(),
                    });
                }
                Some(o)
            }
            (_, None) => {
                return Err(Error::InvalidBuffer {
                    what: "output",
                    reason: "softmax and log-softmax need an output".into(),
                })
            }
        };
        if output.is_none() && args.lse.is_none() {
            return Err(Error::InvalidBuffer {
                what: "lse",
                reason: "logsumexp needs an lse tensor".into(),
            });
        }
        let mut wholes = [None; arg::COUNT];
        let mut buffers: Buffers = [None; arg::COUNT];
        buffers[arg::LOGITS] = Some(args.logits.buffer);
        buffers[arg::OUTPUT] = output.map(|o| o.buffer);
        wholes[arg::MERGED] = Some(whole(args.merged, rows * WORDS));
        buffers[arg::MERGED] = Some(args.merged.buffer);
        if let Some(l) = args.lse {
            f32s(l).check("lse", rows)?;
            wholes[arg::LSE] = Some(whole(l, rows));
            buffers[arg::LSE] = Some(l.buffer);
        }
        let call = VocabCall {
            shape: s.shape(),
            logits: Some(args.logits.place()),
            output: output.map(|o| o.place()),
            in_place: false,
            wholes,
            params: VocabParams {
                first_col: s.first_col as u32,
                inv_t,
                op: u32::from(args.op == Forward::LogSoftmax),
                masked_zeros: u32::from(options.masked_rows == MaskedRows::Zeros),
                write_lse: u32::from(args.lse.is_some()),
                ..bytemuck::Zeroable::zeroed()
            },
        };
        let passes = self
            .profile
            .launch_vocab(VocabEntry::Forward, &call)?
            .passes;
        self.execute(encoder, "softmax-wgpu finish forward", &passes, 0, &buffers)
    }

    /// Records the finish of a shard's cross-entropy from the merged states: each row's
    /// loss and logsumexp, the reduced loss in `meta`, and the gradient of the shard's
    /// columns where asked. A row not ignored whose target no shard (or several) held has
    /// a NaN loss and a zero gradient, and `meta[1]` names the first such row.
    pub fn record_finish_cross_entropy(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        args: &FinishCrossEntropyArgs,
        options: &CrossEntropyOptions,
    ) -> Result<()> {
        self.check_alive()?;
        let s = args.shard;
        s.validate()?;
        if options.weight.is_some() {
            return Err(Error::InvalidOption {
                name: "weight",
                value: "Some(..)".into(),
                reason: "device-level calls take the class weights as a tensor (args.weight)",
            });
        }
        let inv_t = options.validate(s.cols)?;
        let (rows, cols) = (s.rows as u64, s.cols as u64);
        args.logits.check("logits", rows * cols)?;
        for (what, t) in [
            ("targets", args.targets),
            ("loss", args.loss),
            ("lse", args.lse),
        ] {
            f32s(t).check(what, rows)?;
        }
        f32s(args.merged).check("merged", rows * WORDS)?;
        if args.meta.size() < 16 || !args.meta.usage().contains(wgpu::BufferUsages::STORAGE) {
            return Err(Error::InvalidBuffer {
                what: "meta",
                reason: "needs 16 bytes and STORAGE usage".into(),
            });
        }
        let mut wholes = [None; arg::COUNT];
        let mut buffers: Buffers = [None; arg::COUNT];
        for (a, t, n) in [
            (arg::TARGETS, args.targets, rows),
            (arg::MERGED, args.merged, rows * WORDS),
            (arg::LOSS, args.loss, rows),
            (arg::LSE, args.lse, rows),
        ] {
            wholes[a] = Some(whole(t, n));
            buffers[a] = Some(t.buffer);
        }
        wholes[arg::META] = Some(whole_f32(0, 4));
        buffers[arg::META] = Some(args.meta);
        if let Some(w) = args.weight {
            f32s(w).check("weight", cols)?;
            wholes[arg::WEIGHT] = Some(whole(w, cols));
            buffers[arg::WEIGHT] = Some(w.buffer);
        }
        let params = VocabParams {
            first_col: s.first_col as u32,
            ignore_index: options.ignore_index,
            reduction: options.reduction.index(),
            inv_t,
            smoothing: options.label_smoothing,
            z_loss: options.z_loss,
            grad_scale: options.grad_scale,
            ..bytemuck::Zeroable::zeroed()
        };
        // The rows' losses and the reduction read only the per-row tensors.
        let rows_call = VocabCall {
            shape: s.shape(),
            logits: None,
            output: None,
            in_place: false,
            wholes: {
                let mut w = wholes;
                w[arg::WEIGHT] = None;
                w
            },
            params,
        };
        let mut passes = self
            .profile
            .launch_vocab(VocabEntry::CeRows, &rows_call)?
            .passes;
        passes.extend(
            self.profile
                .launch_vocab(VocabEntry::CeReduce, &rows_call)?
                .passes,
        );
        let (grad, in_place) = match args.grad {
            GradOutput::None => (None, false),
            GradOutput::InPlace => (Some(args.logits), true),
            GradOutput::To(g) => {
                g.check("grad", rows * cols)?;
                if g.buffer == args.logits.buffer {
                    return Err(Error::InvalidBuffer {
                        what: "grad",
                        reason: "in the logits' buffer: use GradOutput::InPlace".into(),
                    });
                }
                (Some(g), false)
            }
        };
        if let Some(g) = grad {
            buffers[arg::LOGITS] = Some(args.logits.buffer);
            buffers[arg::OUTPUT] = Some(g.buffer);
            let grad_call = VocabCall {
                shape: s.shape(),
                logits: Some(args.logits.place()),
                output: Some(g.place()),
                in_place,
                wholes: {
                    let mut w = wholes;
                    w[arg::LOSS] = None;
                    w[arg::LSE] = None;
                    w
                },
                params,
            };
            passes.extend(
                self.profile
                    .launch_vocab(VocabEntry::CeGrad, &grad_call)?
                    .passes,
            );
        }
        self.execute(
            encoder,
            "softmax-wgpu finish cross-entropy",
            &passes,
            0,
            &buffers,
        )
    }
}
