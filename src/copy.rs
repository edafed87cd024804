//! The copy kernel, the roofline every benchmark divides by (natively and in a browser), and
//! the exp ceilings the native benchmark also runs (shaders/copy.wgsl).

use crate::dtype::DType;
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::launch::{Binding, ChunkBinding, Pass};
use crate::params::CopyParams;
use crate::shader::{slot, CopyKey, PipelineKey};
pub use crate::shader::{CopyKind, CopyWord};

impl Engine {
    /// The words the copy kernel can move on this device: 16 bytes everywhere, 32 where the
    /// device has SHADER_INT64. The benchmarks time each and divides by the faster.
    pub fn copy_words(&self) -> Vec<CopyWord> {
        let mut words = vec![CopyWord::Bytes16];
        if self
            .device()
            .features()
            .contains(wgpu::Features::SHADER_INT64)
        {
            words.push(CopyWord::Bytes32);
        }
        words
    }

    /// Records a copy of `bytes` (a multiple of the word) from the start of `src` to the
    /// start of `dst` with the plain copy kernel, the roofline the benchmarks compare
    /// against, moving `word`s (one of [`Engine::copy_words`]).
    pub fn record_copy(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        src: &wgpu::Buffer,
        dst: &wgpu::Buffer,
        bytes: u64,
        word: CopyWord,
    ) -> Result<()> {
        self.record_copy_kind(encoder, src, dst, bytes, word, CopyKind::Copy)
    }

    /// [`Engine::record_copy`] doing `kind` with the words: with [`CopyKind::Exp`], `dst`
    /// receives the exponential of every element of `src`, in the same dtype; with
    /// [`CopyKind::ExpSum`], `dst` is left as it was.
    pub fn record_copy_kind(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        src: &wgpu::Buffer,
        dst: &wgpu::Buffer,
        bytes: u64,
        word: CopyWord,
        kind: CopyKind,
    ) -> Result<()> {
        self.check_alive()?;
        let w = word.bytes();
        if !self.copy_words().contains(&word) {
            return Err(Error::InvalidBuffer {
                what: "copy",
                reason: format!("copies in {word} need SHADER_INT64, which this device lacks"),
            });
        }
        if bytes == 0 || !bytes.is_multiple_of(w) || bytes > src.size() || bytes > dst.size() {
            return Err(Error::InvalidBuffer {
                what: "copy",
                reason: format!(
                    "{bytes} bytes must be a non-zero multiple of {w} within both buffers"
                ),
            });
        }
        // 256 lanes of 128 bytes each: the fastest plain copy on both lavapipe and GPUs.
        let workgroup = self.profile.largest_workgroup(256);
        let key = PipelineKey::Copy(CopyKey {
            contiguous: self.profile.contiguous(),
            workgroup,
            word,
            kind,
            half_builtins: kind.element() == DType::F16 && self.half_builtins(),
        });
        let limits = &self.info.limits;
        let max_binding = limits
            .max_storage_buffer_binding_size
            .min(limits.max_buffer_size);
        // Chunks start at multiples of 256 bytes, a valid offset on every adapter.
        let chunk = (max_binding / 256 * 256).max(256);
        let max_groups = u64::from(limits.max_compute_workgroups_per_dimension);
        let words_per_group = u64::from(workgroup) * u64::from(word.per_thread());
        let mut passes = Vec::new();
        let mut start = 0;
        while start < bytes {
            let size = chunk.min(bytes - start);
            let words = size / w;
            let groups = words.div_ceil(words_per_group);
            let groups_x = groups.min(max_groups);
            let params = CopyParams {
                words: words as u32,
                groups_x: groups_x as u32,
                sentinel: f32::NAN.to_bits(),
                _pad: 0,
            };
            let chunk = ChunkBinding {
                offset: start,
                size,
                base: 0,
            };
            passes.push(Pass {
                key,
                params: bytemuck::bytes_of(&params).to_vec(),
                bindings: vec![
                    (slot::X, Binding::Chunk { arg: 0, chunk }),
                    (slot::Y, Binding::Chunk { arg: 1, chunk }),
                ],
                groups: (groups_x as u32, groups.div_ceil(groups_x) as u32),
            });
            start += size;
        }
        self.execute(
            encoder,
            "softmax-wgpu copy",
            &passes,
            0,
            &[Some(src), Some(dst)],
        )
    }
}
