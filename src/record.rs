//! The device-level API: records operations on the caller's buffers into the caller's
//! command encoder. Nothing is submitted here.

use crate::dtype::DType;
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::launch::{ForwardCall, TensorAt};
use crate::options::{Forward, Shape, SoftmaxOptions};

/// A tensor in a caller's buffer: `dtype` elements starting `offset` bytes in.
///
/// The buffer needs `STORAGE` usage. `offset` must be a multiple of the element size; the
/// buffer must extend to the end of the tensor rounded up to a whole 4-byte word.
#[derive(Clone, Copy, Debug)]
pub struct TensorRef<'a> {
    /// The buffer.
    pub buffer: &'a wgpu::Buffer,
    /// Byte offset of the first element.
    pub offset: u64,
    /// Element type.
    pub dtype: DType,
}

impl<'a> TensorRef<'a> {
    /// The tensor at the start of `buffer`.
    pub fn new(buffer: &'a wgpu::Buffer, dtype: DType) -> Self {
        TensorRef {
            buffer,
            offset: 0,
            dtype,
        }
    }

    /// Where the tensor lies, for the planner (src/launch/).
    pub(crate) fn place(&self) -> TensorAt {
        TensorAt {
            dtype: self.dtype,
            offset: self.offset,
        }
    }

    /// The same tensor `offset` bytes into the buffer.
    pub fn at(self, offset: u64) -> Self {
        TensorRef { offset, ..self }
    }

    /// Checks usage, alignment and bounds for `n` elements.
    pub(crate) fn check(&self, what: &'static str, n: u64) -> Result<()> {
        let fail = |reason: String| Err(Error::InvalidBuffer { what, reason });
        if !self.buffer.usage().contains(wgpu::BufferUsages::STORAGE) {
            return fail(format!(
                "needs STORAGE usage, has {:?}",
                self.buffer.usage()
            ));
        }
        if !self.offset.is_multiple_of(self.dtype.size()) {
            return fail(format!(
                "offset {} is not a multiple of the {:?} element size",
                self.offset, self.dtype
            ));
        }
        let end = (self.offset + n * self.dtype.size()).div_ceil(4) * 4;
        if end > self.buffer.size() {
            return fail(format!(
                "{n} {:?} elements from offset {} need {end} bytes (rounded up to 4), buffer has {}",
                self.dtype,
                self.offset,
                self.buffer.size()
            ));
        }
        Ok(())
    }

    fn byte_range(&self, n: u64) -> std::ops::Range<u64> {
        self.offset..self.offset + n * self.dtype.size()
    }
}

/// Arguments of [`Engine::record_forward`].
#[derive(Clone, Copy, Debug)]
pub struct ForwardArgs<'a> {
    /// The operation.
    pub op: Forward,
    /// The logits' shape.
    pub shape: Shape,
    /// The logits.
    pub input: TensorRef<'a>,
    /// Where softmax and log_softmax write `[rows, cols]`; `None` overwrites the input in
    /// place. Must be `None` for logsumexp.
    pub output: Option<TensorRef<'a>>,
    /// Per-row logsumexp (f32, `rows` values): required for logsumexp, optional for the
    /// others, which then write it at no extra pass.
    pub lse: Option<TensorRef<'a>>,
    /// Temperature and masked-row behaviour.
    pub options: SoftmaxOptions,
}

impl<'a> ForwardArgs<'a> {
    /// Checks every tensor against the (validated) shape and the operation: the output
    /// (the input where in place, none for logsumexp) and whether it is in place.
    fn checked_output(&self) -> Result<(Option<TensorRef<'a>>, bool)> {
        let rows = self.shape.rows as u64;
        let n = rows * self.shape.cols as u64;
        self.input.check("input", n)?;
        if let Some(lse) = &self.lse {
            if lse.dtype != DType::F32 {
                return Err(Error::UnsupportedDType {
                    dtype: lse.dtype,
                    reason: "logsumexp outputs are f32",
                });
            }
            lse.check("lse", rows)?;
        }
        let mut in_place = false;
        let output = match (self.op, self.output) {
            (Forward::LogSumExp, Some(_)) => {
                return Err(Error::InvalidBuffer {
                    what: "output",
                    reason: "logsumexp writes only `lse`; pass output: None".into(),
                })
            }
            (Forward::LogSumExp, None) => {
                if self.lse.is_none() {
                    return Err(Error::InvalidBuffer {
                        what: "lse",
                        reason: "logsumexp needs an lse buffer".into(),
                    });
                }
                None
            }
            (_, None) => {
                in_place = true;
                Some(self.input)
            }
            (_, Some(out)) => {
                out.check("output", n)?;
                if out.buffer == self.input.buffer
                    && overlaps(&out.byte_range(n), &self.input.byte_range(n))
                {
                    if out.offset != self.input.offset || out.dtype != self.input.dtype {
                        return Err(Error::InvalidBuffer {
                            what: "output",
                            reason: "overlaps the input without being exactly in place".into(),
                        });
                    }
                    in_place = true;
                }
                Some(out)
            }
        };
        if let (Some(lse), Some(out)) = (&self.lse, &output) {
            if lse.buffer == out.buffer && overlaps(&lse.byte_range(rows), &out.byte_range(n)) {
                return Err(Error::InvalidBuffer {
                    what: "lse",
                    reason: "overlaps the output".into(),
                });
            }
        }
        Ok((output, in_place))
    }
}

fn overlaps(a: &std::ops::Range<u64>, b: &std::ops::Range<u64>) -> bool {
    a.start < b.end && b.start < a.end
}

impl Engine {
    /// Records a forward operation into `encoder`. The caller submits.
    ///
    /// Rows are split into as many dispatches as the adapter's binding-size and
    /// dispatch limits need; all go into one compute pass.
    pub fn record_forward(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        args: &ForwardArgs,
    ) -> Result<()> {
        self.check_alive()?;
        let shape = args.shape;
        shape.validate()?;
        let inv_t = args.options.inv_temperature()?;
        let (output, in_place) = args.checked_output()?;
        let launch = self.profile.launch_forward(&ForwardCall {
            op: args.op,
            shape,
            input: args.input.place(),
            output: output.map(|o| o.place()),
            in_place,
            lse: args.lse.map(|t| t.place()),
            variant: args.options.variant,
            inv_t,
            masked_rows: args.options.masked_rows,
        })?;
        let buffers = [
            Some(args.input.buffer),
            output.map(|o| o.buffer),
            args.lse.map(|t| t.buffer),
        ];
        self.execute(
            encoder,
            "softmax-wgpu forward",
            &launch.passes(),
            launch.scratch_bytes(),
            &buffers,
        )
    }
}
