//! The partial state of one row over a shard of its vocabulary, and its merge: the host
//! twins of `struct State` and `merge_states` in shaders/vocab_parallel.wgsl.

use crate::error::{Error, Result};
use crate::options::validate_temperature;

/// Bytes of one row's [`PartialState`]: nine 4-byte words.
pub const STATE_BYTES: usize = 36;

/// One row's statistics over the columns a state covers, as nine little-endian 4-byte
/// words (f32 or u32) in this order. WGSL side: `struct State` in
/// shaders/vocab_parallel.wgsl. All fields but `max` and `sum` only add up when states merge.
///
/// A state is plain data (`bytemuck::Pod`): send it through any collective library as
/// bytes or as `[u32; 9]`, and merge with [`merge`] or [`PartialState::merge`] in any order
/// and grouping (the merge is commutative exactly and associative up to f32 rounding).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct PartialState {
    /// The largest finite logit (before the temperature); `f32::MIN` where there is none.
    pub max: f32,
    /// `sum exp((z - max) / T)` over the finite logits.
    pub sum: f32,
    /// [`PartialState::FLAG_NAN`] and [`PartialState::FLAG_POS_INF`]: a NaN or a `+inf`
    /// among the logits.
    pub flags: u32,
    /// Columns covered.
    pub cols: u32,
    /// States that hold the row's target (cross-entropy; 0 for an ignored row). A merged
    /// state of a counted row has exactly 1.
    pub owners: u32,
    /// The target's logit, where this state holds it (0 otherwise).
    pub target_logit: f32,
    /// The target's class weight, where this state holds it (0 otherwise).
    pub target_weight: f32,
    /// Label smoothing: `sum_j w_j (max - z_j)` (0 without smoothing).
    pub smooth_sum: f32,
    /// Label smoothing: `sum_j w_j` (0 without smoothing).
    pub weight_sum: f32,
}

const _: () = assert!(std::mem::size_of::<PartialState>() == STATE_BYTES);

impl Default for PartialState {
    fn default() -> Self {
        PartialState::EMPTY
    }
}

/// exp2 of the shift, as the kernels compute `exp((m_part - m) / T)` (common.wgsl's
/// `exp_t`).
fn exp_t(d: f32, inv_t: f32) -> f32 {
    (d * (inv_t * std::f32::consts::LOG2_E)).exp2()
}

impl PartialState {
    /// A NaN among the logits.
    pub const FLAG_NAN: u32 = 1;
    /// A `+inf` among the logits.
    pub const FLAG_POS_INF: u32 = 2;

    /// The state of no columns: the identity of the merge.
    pub const EMPTY: PartialState = PartialState {
        max: f32::MIN,
        sum: 0.0,
        flags: 0,
        cols: 0,
        owners: 0,
        target_logit: 0.0,
        target_weight: 0.0,
        smooth_sum: 0.0,
        weight_sum: 0.0,
    };

    /// The state of the columns of `self` and `other`, for logits divided by `temperature`
    /// (the temperature every shard used). As the kernels merge: sums rescaled to the larger
    /// maximum, flags or-ed, counts and target fields added.
    pub fn merge(&self, other: &PartialState, temperature: f32) -> PartialState {
        let inv_t = 1.0 / temperature;
        let m = self.max.max(other.max);
        let rescale = |p: &PartialState| {
            if p.sum == 0.0 {
                0.0
            } else {
                p.sum * exp_t(p.max - m, inv_t)
            }
        };
        // sum w_j (m_part - z_j) moved to m; a part without weight adds nothing.
        let smooth = |p: &PartialState| {
            let shift = if p.weight_sum == 0.0 || m == p.max {
                0.0
            } else {
                p.weight_sum * (m - p.max)
            };
            p.smooth_sum + shift
        };
        PartialState {
            max: m,
            sum: rescale(self) + rescale(other),
            flags: self.flags | other.flags,
            cols: self.cols + other.cols,
            owners: self.owners + other.owners,
            target_logit: self.target_logit + other.target_logit,
            target_weight: self.target_weight + other.target_weight,
            smooth_sum: smooth(self) + smooth(other),
            weight_sum: self.weight_sum + other.weight_sum,
        }
    }

    /// The row's logsumexp of `logits / temperature` with PyTorch's special values: NaN
    /// with a NaN, `+inf` with a `+inf`, `-inf` for a row of only `-inf`.
    pub fn logsumexp(&self, temperature: f32) -> f32 {
        if self.flags & Self::FLAG_NAN != 0 {
            f32::NAN
        } else if self.flags & Self::FLAG_POS_INF != 0 {
            f32::INFINITY
        } else if self.sum == 0.0 {
            f32::NEG_INFINITY
        } else {
            self.max / temperature + self.sum.ln()
        }
    }
}

/// Merges the states of several shards row by row, in the order given: `shards[k][r]` is
/// shard k's state of row r. Every rank or engine that merges the same states in the same
/// order gets the same bits.
pub fn merge(shards: &[&[PartialState]], temperature: f32) -> Result<Vec<PartialState>> {
    validate_temperature(temperature)?;
    let rows = shards.first().map_or(0, |s| s.len());
    if let Some((k, s)) = shards.iter().enumerate().find(|(_, s)| s.len() != rows) {
        return Err(Error::ShapeMismatch {
            what: "partial states of a shard",
            got: s.len(),
            expected: rows,
            rows,
            cols: k + 1,
        });
    }
    let mut out = vec![PartialState::EMPTY; rows];
    for s in shards {
        merge_into(&mut out, s, temperature)?;
    }
    Ok(out)
}

/// `acc[r] = acc[r].merge(other[r])` for every row: the reduction step of a collective's
/// user-defined operation.
pub fn merge_into(
    acc: &mut [PartialState],
    other: &[PartialState],
    temperature: f32,
) -> Result<()> {
    validate_temperature(temperature)?;
    if acc.len() != other.len() {
        return Err(Error::ShapeMismatch {
            what: "partial states to merge",
            got: other.len(),
            expected: acc.len(),
            rows: acc.len(),
            cols: 1,
        });
    }
    for (a, b) in acc.iter_mut().zip(other) {
        *a = a.merge(b, temperature);
    }
    Ok(())
}

/// Checks merged states for cross-entropy: every row not ignored has its target in exactly
/// one shard, and every row covers `cols` columns where given.
pub(crate) fn check_merged_targets(
    merged: &[PartialState],
    targets: &[i64],
    ignore_index: i32,
) -> Result<()> {
    for (row, (s, &t)) in merged.iter().zip(targets).enumerate() {
        if t != i64::from(ignore_index) && s.owners != 1 {
            return Err(Error::invalid_target(row, t, s.cols as usize));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(max: f32, sum: f32) -> PartialState {
        PartialState {
            max,
            sum,
            cols: 1,
            ..PartialState::EMPTY
        }
    }

    #[test]
    fn empty_is_the_identity_and_the_merge_commutes() {
        let a = PartialState {
            smooth_sum: 3.0,
            weight_sum: 2.0,
            owners: 1,
            target_logit: -4.0,
            ..state(1.5, 2.25)
        };
        assert_eq!(a.merge(&PartialState::EMPTY, 0.7), a);
        assert_eq!(PartialState::EMPTY.merge(&a, 0.7), a);
        let b = state(-3.0, 1.0);
        assert_eq!(a.merge(&b, 0.7), b.merge(&a, 0.7));
        let m = a.merge(&b, 1.0);
        assert_eq!(m.max, 1.5);
        assert!((m.sum - (2.25 + (-4.5f32).exp())).abs() < 1e-6);
        assert_eq!(m.cols, 2);
    }

    #[test]
    fn special_values_survive_the_merge() {
        let nan = PartialState {
            flags: PartialState::FLAG_NAN,
            ..PartialState::EMPTY
        };
        let masked = PartialState {
            cols: 3,
            ..PartialState::EMPTY
        };
        assert!(state(0.0, 1.0).merge(&nan, 1.0).logsumexp(1.0).is_nan());
        assert_eq!(masked.merge(&masked, 1.0).logsumexp(1.0), f32::NEG_INFINITY);
        assert_eq!(masked.merge(&state(2.0, 1.0), 1.0).logsumexp(1.0), 2.0);
    }

    /// The fields sit at the words the kernel reads them from (`S_*` in
    /// shaders/vocab_parallel.wgsl).
    #[test]
    fn fields_match_the_kernels_words() {
        let wgsl = include_str!("../../shaders/vocab_parallel.wgsl");
        let word = |name: &str| -> usize {
            let decl = format!("const {name}: u32 = ");
            let rest = &wgsl[wgsl.find(&decl).unwrap_or_else(|| panic!("{name}")) + decl.len()..];
            rest[..rest.find('u').unwrap()].parse().unwrap()
        };
        use std::mem::offset_of;
        for (name, offset) in [
            ("S_M", offset_of!(PartialState, max)),
            ("S_S", offset_of!(PartialState, sum)),
            ("S_FLAGS", offset_of!(PartialState, flags)),
            ("S_COLS", offset_of!(PartialState, cols)),
            ("S_OWNERS", offset_of!(PartialState, owners)),
            ("S_Z_T", offset_of!(PartialState, target_logit)),
            ("S_W_T", offset_of!(PartialState, target_weight)),
            ("S_SMOOTH", offset_of!(PartialState, smooth_sum)),
            ("S_W_SUM", offset_of!(PartialState, weight_sum)),
        ] {
            assert_eq!(4 * word(name), offset, "{name}");
        }
        assert_eq!(4 * word("STATE_WORDS"), STATE_BYTES);
        assert_eq!(STATE_BYTES as u64, crate::shader::VOCAB_STATE_BYTES);
        let flags = include_str!("../../shaders/common.wgsl");
        assert!(flags.contains("const FLAG_NAN: u32 = 1u;"));
        assert!(flags.contains("const FLAG_POS_INF: u32 = 2u;"));
    }

    #[test]
    fn shards_of_different_lengths_are_refused() {
        let a = [state(0.0, 1.0); 2];
        let b = [state(0.0, 1.0); 3];
        assert!(merge(&[&a, &b], 1.0).is_err());
        assert!(merge(&[&a, &a], 0.0).is_err());
    }
}
