//! Every distinct WGSL module the crate can build, for `tests/shaders_naga.rs`, which
//! validates them all with naga and needs no adapter.

use super::{
    BackwardKey, CeEntry, CeKey, CopyKey, CopyKind, CopyWord, KernelKey, Layout, PipelineKey,
    SampleKey, SplitEntry, VocabEntry, VocabKey,
};
use crate::dtype::Storage;
use crate::options::Forward;

/// Every distinct WGSL module the crate can build, for validation without an adapter: each
/// named by its key.
#[doc(hidden)]
pub fn all_sources() -> Vec<(String, String)> {
    catalog()
        .into_iter()
        .map(|(name, key)| (name, key.source()))
        .collect()
}

/// Every distinct WGSL module the crate can build, written for `dialect`, with every entry
/// point it holds, for the browser test (`tests/tint.rs`): each named by its key.
#[doc(hidden)]
pub fn all_modules(dialect: super::Dialect) -> Vec<(String, String, &'static [&'static str])> {
    catalog()
        .into_iter()
        .map(|(name, key)| (name, key.source_in(dialect), key.module_entry_points()))
        .collect()
}

/// Every distinct module the crate can build, as its key's name and a pipeline key of it (the
/// first entry point; the module is the same for all).
pub(crate) fn catalog() -> Vec<(String, PipelineKey)> {
    let storages = [
        Storage::F32,
        Storage::F16Native,
        Storage::F16Packed,
        Storage::Bf16Packed,
    ];
    let mut out = Vec::new();
    for input in storages {
        for half_builtins in [false, true] {
            if half_builtins && input == Storage::F32 {
                continue;
            }
            for (philox, filtered) in [(false, false), (true, false), (false, true)] {
                for workgroup in [16, 256] {
                    let key = SampleKey {
                        input,
                        workgroup,
                        half_builtins,
                        philox,
                        filtered,
                    };
                    out.push((format!("{key:?}"), PipelineKey::Sample(key)));
                }
            }
        }
    }
    for contiguous in [false, true] {
        for word in [CopyWord::Bytes16, CopyWord::Bytes32] {
            use crate::DType;
            // Each ceiling over each element type, f16 with and without the builtins.
            let mut kinds = vec![(CopyKind::Copy, false)];
            for (element, half_builtins) in [
                (DType::F32, false),
                (DType::F16, false),
                (DType::F16, true),
                (DType::BF16, false),
            ] {
                kinds.push((CopyKind::Exp(element), half_builtins));
                kinds.push((CopyKind::ExpSum(element), half_builtins));
            }
            for (kind, half_builtins) in kinds {
                let key = CopyKey {
                    contiguous,
                    workgroup: 256,
                    word,
                    kind,
                    half_builtins,
                };
                out.push((format!("{key:?}"), PipelineKey::Copy(key)));
            }
        }
    }
    for op in [Forward::Softmax, Forward::LogSoftmax, Forward::LogSumExp] {
        for input in storages {
            let outputs: Vec<Option<Storage>> = if op == Forward::LogSumExp {
                vec![None]
            } else {
                storages.iter().copied().map(Some).collect()
            };
            for output in outputs {
                for in_place in [false, true] {
                    if in_place && output != Some(input) {
                        continue;
                    }
                    for (contiguous, layout) in test_layouts() {
                        let key = KernelKey {
                            aligned: contiguous || in_place,
                            op,
                            input,
                            output,
                            in_place,
                            lse: true,
                            contiguous,
                            workgroup: 256,
                            layout,
                            half_builtins: !contiguous,
                            row_loop: in_place,
                            wide_words: contiguous,
                        };
                        out.push((
                            format!("{key:?}"),
                            PipelineKey::Forward(key, SplitEntry::Main),
                        ));
                    }
                }
            }
        }
    }
    for input in storages {
        for grad in [None, Some(input), Some(Storage::F32)] {
            for in_place in [false, true] {
                if in_place && grad != Some(input) {
                    continue;
                }
                for weight in [false, true] {
                    let key = CeKey {
                        input,
                        grad,
                        in_place,
                        weight,
                        contiguous: in_place,
                        workgroup: 256,
                        half_builtins: weight,
                        row_loop: !weight,
                        blocks: in_place || weight,
                        columns: in_place && !weight,
                        wide_words: weight,
                        // Both values, with and without CONTIGUOUS.
                        row_per_lane: weight != (grad == Some(input)),
                        // An unrolled run of 4 rows of 10, or a windowed one of 8 rows of
                        // 33 (generated whatever the layout: `main` calls it only with
                        // ROW_PER_LANE and BLOCKS).
                        packed_cols: if weight { 33 } else { 10 },
                        split: !weight,
                    };
                    out.push((
                        format!("{key:?}"),
                        PipelineKey::CrossEntropy(key, CeEntry::Main),
                    ));
                }
            }
        }
        for output in [input, Storage::F32] {
            for log in [false, true] {
                let key = BackwardKey {
                    log,
                    input,
                    output,
                    contiguous: log,
                    workgroup: 256,
                    half_builtins: !log,
                    row_loop: log,
                    blocks: output == input,
                    columns: output == input && !log,
                    wide_words: log,
                    row_per_lane: output == Storage::F32,
                    // An unrolled run of 8 rows of 13, or a windowed one of 8 rows of 33.
                    packed_cols: if log { 33 } else { 13 },
                    split: !log,
                };
                out.push((
                    format!("{key:?}"),
                    PipelineKey::Backward(key, SplitEntry::Main),
                ));
            }
        }
    }
    // The vocabulary-parallel modules: each entry point with the logits in every storage,
    // the outputs it writes, with and without class weights.
    for (workgroup, contiguous) in [(16, true), (256, false)] {
        let key = |entry, input, output, in_place, ce, weight, lse, half_builtins| VocabKey {
            contiguous,
            entry,
            input,
            output,
            in_place,
            ce,
            weight,
            lse,
            workgroup,
            half_builtins,
        };
        let mut keys = vec![
            key(
                VocabEntry::Merge,
                None,
                None,
                false,
                false,
                false,
                false,
                false,
            ),
            key(
                VocabEntry::CeRows,
                None,
                None,
                false,
                true,
                false,
                false,
                false,
            ),
            key(
                VocabEntry::CeReduce,
                None,
                None,
                false,
                true,
                false,
                false,
                false,
            ),
        ];
        for input in storages {
            for half_builtins in [false, true] {
                if half_builtins && input == Storage::F32 {
                    continue;
                }
                let x = Some(input);
                for (ce, weight) in [(false, false), (true, false), (true, true)] {
                    keys.push(key(
                        VocabEntry::Partial,
                        x,
                        None,
                        false,
                        ce,
                        weight,
                        false,
                        half_builtins,
                    ));
                }
                for weight in [false, true] {
                    keys.push(key(
                        VocabEntry::CeGrad,
                        x,
                        x,
                        false,
                        true,
                        weight,
                        false,
                        half_builtins,
                    ));
                    keys.push(key(
                        VocabEntry::CeGrad,
                        x,
                        x,
                        true,
                        true,
                        weight,
                        false,
                        half_builtins,
                    ));
                }
                keys.push(key(
                    VocabEntry::Forward,
                    x,
                    x,
                    false,
                    false,
                    false,
                    true,
                    half_builtins,
                ));
                keys.push(key(
                    VocabEntry::Forward,
                    x,
                    Some(Storage::F32),
                    false,
                    false,
                    false,
                    false,
                    half_builtins,
                ));
                keys.push(key(
                    VocabEntry::Forward,
                    x,
                    None,
                    false,
                    false,
                    false,
                    true,
                    half_builtins,
                ));
            }
        }
        out.extend(
            keys.into_iter()
                .map(|k| (format!("{k:?}"), PipelineKey::Vocab(k))),
        );
    }
    out
}

/// One layout of each kind of variant, each with both access patterns.
fn test_layouts() -> Vec<(bool, Layout)> {
    let base = Layout {
        lanes: 256,
        subgroups: false,
        subgroup_rows: false,
        resident_blocks: 0,
        split: false,
        packed_cols: 0,
        columns: false,
    };
    let layouts = [
        base,
        Layout {
            resident_blocks: 8,
            ..base
        },
        Layout { lanes: 16, ..base },
        // A row per lane (multi-row on CPU adapters).
        Layout {
            lanes: 1,
            resident_blocks: 32,
            ..base
        },
        // A row per lane, looped (multi-row on CPU adapters past a subgroup's registers).
        Layout { lanes: 1, ..base },
        // Packed rows, unrolled: 3 logits (8 rows in 3 blocks) and 31 (8 rows in 31 blocks, the
        // most).
        Layout {
            lanes: 1,
            resident_blocks: 1,
            packed_cols: 3,
            ..base
        },
        Layout {
            lanes: 1,
            resident_blocks: 4,
            packed_cols: 31,
            ..base
        },
        // Windowed packed rows: 77 logits (8 rows, a window of 11 blocks at a time).
        Layout {
            lanes: 1,
            resident_blocks: 16,
            packed_cols: 77,
            ..base
        },
        Layout {
            split: true,
            ..base
        },
        Layout {
            subgroups: true,
            ..base
        },
        Layout {
            lanes: 32,
            subgroups: true,
            subgroup_rows: true,
            resident_blocks: 2,
            ..base
        },
        // Rows in clusters of a subgroup.
        Layout {
            lanes: 4,
            subgroups: true,
            subgroup_rows: true,
            resident_blocks: 1,
            ..base
        },
        Layout {
            subgroups: true,
            split: true,
            ..base
        },
        // Batch-invariant mode: the row's columns in their own order, split-row and online
        // in one module.
        Layout {
            split: true,
            columns: true,
            ..base
        },
    ];
    layouts
        .into_iter()
        .flat_map(|l| [(false, l), (true, l)])
        .collect()
}

/// The WGSL of every module, as digests in `tests/snapshots/wgsl.sha256` (see
/// src/snapshot.rs): a refactor of how modules are assembled proves them byte-identical.
#[cfg(test)]
mod tests {
    use crate::shader::slot;
    use crate::snapshot::{check, digest};
    use std::collections::BTreeMap;

    /// The WGSL name of a type naga reflected: scalars, vectors, atomics and structs.
    fn type_name(module: &naga::Module, ty: naga::Handle<naga::Type>) -> String {
        let scalar = |s: naga::Scalar| {
            let kind = match s.kind {
                naga::ScalarKind::Float => "f",
                naga::ScalarKind::Uint => "u",
                naga::ScalarKind::Sint => "i",
                other => panic!("{other:?}"),
            };
            format!("{kind}{}", 8 * s.width)
        };
        let t = &module.types[ty];
        match t.inner {
            naga::TypeInner::Scalar(s) => scalar(s),
            naga::TypeInner::Vector { size, scalar: s } => {
                format!("vec{}<{}>", size as u8, scalar(s))
            }
            naga::TypeInner::Atomic(s) => format!("atomic<{}>", scalar(s)),
            naga::TypeInner::Struct { .. } => t.name.clone().expect("a named struct"),
            naga::TypeInner::Array { base, .. } => format!("array<{}>", type_name(module, base)),
            ref other => panic!("{other:?}"),
        }
    }

    /// Each module's resource bindings, reflected by naga, are those its key declares
    /// (`PipelineKey::bindings`, src/shader/spec.rs, from which the bind-group layout in
    /// src/pipeline.rs and the passes' bind entries also come): the same slots, names,
    /// types and access, in group 0.
    #[test]
    fn every_module_declares_the_bindings_of_its_spec() {
        use crate::shader::Access;
        for (name, key) in super::catalog() {
            let module = naga::front::wgsl::parse_str(&key.source()).expect("parses");
            let mut declared: Vec<(u32, String, String, Access)> = module
                .global_variables
                .iter()
                .filter_map(|(_, g)| {
                    let b = g.binding.as_ref()?;
                    assert_eq!(b.group, 0, "{name}");
                    let access = match g.space {
                        naga::AddressSpace::Uniform => Access::Uniform,
                        naga::AddressSpace::Storage { access } => {
                            if access.contains(naga::StorageAccess::STORE) {
                                Access::ReadWrite
                            } else {
                                Access::Read
                            }
                        }
                        other => panic!("{name}: binding {} in {other:?}", b.binding),
                    };
                    let ty = type_name(&module, g.ty);
                    let name = g.name.clone().expect("named");
                    Some((b.binding, name, ty, access))
                })
                .collect();
            declared.sort_by_key(|d| d.0);
            let spec: Vec<(u32, String, String, Access)> = key
                .bindings()
                .into_iter()
                .map(|b| {
                    let ty = match b.access {
                        Access::Uniform => b.elem.to_string(),
                        _ => format!("array<{}>", b.elem),
                    };
                    (b.slot, b.name.to_string(), ty, b.access)
                })
                .collect();
            let mut sorted = spec.clone();
            sorted.sort_by_key(|d| d.0);
            assert_eq!(declared, sorted, "{name}");
            assert_eq!(spec[0].0, slot::PARAMS, "{name}: the uniforms first");
        }
    }

    #[test]
    fn every_module_matches_its_wgsl_snapshot() {
        // A repeated key gets ` #2`, ` #3`... so that no module hides another.
        let mut now = BTreeMap::new();
        for (name, wgsl) in super::all_sources() {
            let mut unique = name.clone();
            for n in 2.. {
                if !now.contains_key(&unique) {
                    break;
                }
                unique = format!("{name} #{n}");
            }
            now.insert(unique, digest(&wgsl));
        }
        check("wgsl.sha256", &now);
    }
}
