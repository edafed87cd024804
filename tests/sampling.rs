//! Sampling on every adapter against the f64 oracle (`oracle::sample`): the token exactly
//! (where the oracle's margin says f32 sums cannot move it), the status, the kept count
//! and the log-probability; every filter, greedy ties, the rows without a token, every
//! dtype, Philox draws that do not depend on the batch, and the errors.

mod common;

use common::{on_every_tuning, random_logits};
use half::{bf16, f16};
use softmax_wgpu::oracle::{self, SampleOracle};
use softmax_wgpu::sampling::{
    uniform, DeviceUniforms, Sample, SampleArgs, SampleStatus, SamplingParams, Uniforms, NO_TOKEN,
};
use softmax_wgpu::{DType, Element, Engine, Shape, TensorRef};
use wgpu::util::DeviceExt;

/// The f32 error of a GPU's kept-mass sums, relative to the mass: rows of up to 2^20 terms
/// summed in trees, each term within a few ulp (`exp`'s allowance): well below 1e-5.
const MARGIN: f64 = 1e-5;

/// Checks `got` against the oracle row by row. The kept count must match unless a filter's
/// boundary lies within `MARGIN` of a token (`filter_margin`), and then the token unless `u`
/// lies within `MARGIN` of a step of the kept CDF (`margin`): there f32 sums may differ from
/// f64's, and either neighbour is accepted.
fn check(got: &[Sample], want: &[SampleOracle], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}");
    for (row, (g, w)) in got.iter().zip(want).enumerate() {
        assert_eq!(g.status, w.status, "{what} row {row}");
        if w.status != SampleStatus::Ok {
            assert_eq!(g.token, NO_TOKEN, "{what} row {row}");
            assert!(g.logprob.is_nan(), "{what} row {row}");
            continue;
        }
        if w.margin > MARGIN {
            assert_eq!(g.token, w.token, "{what} row {row}: {g:?} want {w:?}");
        }
        assert_eq!(
            g.kept as usize, w.kept,
            "{what} row {row}: {g:?} want {w:?}"
        );
        if g.token == w.token {
            // The log-probability is log_softmax's, within eps (8 + 4|a| + 2 log2 C) (rows of
            // up to 2^20 here); the token's |a| is at most |logprob| (= |a| + log of the sum).
            let tol = 2f64.powi(-24) * (8.0 + 4.0 * w.logprob.abs() + 2.0 * 20.0);
            assert!(
                (f64::from(g.logprob) - w.logprob).abs() <= tol,
                "{what} row {row}: logprob {} want {}",
                g.logprob,
                w.logprob
            );
        }
    }
}

/// Uniforms in [0, 1), deterministic.
fn uniforms(rows: usize, seed: u64) -> Vec<f32> {
    random_logits(rows, 0.5, seed)
        .iter()
        .map(|v| v + 0.5)
        .map(|v| v.min(0.999_999))
        .collect()
}

fn run<T: Element>(e: &Engine, x: &[f32], shape: Shape, params: &[SamplingParams], u: &[f32]) {
    let xt: Vec<T> = x.iter().map(|&v| T::from_f32(v)).collect();
    let got = e
        .sample(&xt, shape, params, Uniforms::Given(u))
        .unwrap_or_else(|err| panic!("{:?} {shape:?}: {err}", T::DTYPE));
    let full: Vec<SamplingParams> = (0..shape.rows)
        .map(|r| params[r.min(params.len() - 1)])
        .collect();
    let want = oracle::sample(&xt, shape, &full, u);
    check(&got, &want, &format!("{:?} {shape:?}", T::DTYPE));
}

/// Per-row parameters that mix every filter, greedy among them.
#[test]
fn every_path_through_the_kernel() {
    on_every_tuning(|e| {
        // Rows of 600 (one piece): top-k's ties past the candidates' capacity (256), alone
        // and under top-p (a plateau: all kept), and fewer finite logits than k, below and
        // above the capacity.
        let cols = 600;
        let noise = random_logits(cols, 1.0, 41);
        let ties: Vec<f32> = (0..cols)
            .map(|i| if i % 2 == 0 { 2.0 } else { noise[i].min(1.0) })
            .collect();
        let finite = |n: usize| -> Vec<f32> {
            (0..cols)
                .map(|i| {
                    if i % 2 == 1 && i / 2 < n {
                        noise[i]
                    } else {
                        f32::NEG_INFINITY
                    }
                })
                .collect()
        };
        let x = [ties.clone(), ties, finite(20), finite(290)].concat();
        let params = [
            SamplingParams {
                top_k: 2,
                ..Default::default()
            },
            SamplingParams {
                top_k: 2,
                top_p: 0.5,
                ..Default::default()
            },
            SamplingParams {
                top_k: 100,
                ..Default::default()
            },
            SamplingParams {
                top_k: 300,
                top_p: 0.99,
                ..Default::default()
            },
        ];
        let shape = Shape::new(4, cols);
        for u in [0.0f32, 0.37, 0.999] {
            run::<f32>(e, &x, shape, &params, &[u; 4]);
        }
        let got = e
            .sample(&x, shape, &params, Uniforms::Given(&[0.5; 4]))
            .unwrap();
        assert_eq!(got[0].kept, 300, "top-k 2 keeps the 300 tied maxima");
        assert_eq!(got[1].kept, 300, "top-p keeps a plateau whole");
        assert_eq!(got[2].kept, 20, "top-k keeps every finite logit");
        assert!((200..290).contains(&got[3].kept), "{}", got[3].kept);
        assert!(got[..2].iter().all(|s| s.token % 2 == 0));
        assert!(got[2..].iter().all(|s| s.token % 2 == 1));

        // Rows of several pieces on every tuning (pieces of 49153 with CPU tuning, whose odd
        // starts split bf16's words): top-k through the candidates, top-k and top-p together,
        // top-p's rounds, min-p.
        let cols = 196_611;
        let x = random_logits(5 * cols, 6.0, 43);
        let params = [
            SamplingParams {
                top_k: 30,
                ..Default::default()
            },
            SamplingParams {
                temperature: 0.5,
                top_k: 200,
                ..Default::default()
            },
            SamplingParams {
                top_k: 50,
                top_p: 0.9,
                ..Default::default()
            },
            SamplingParams {
                top_p: 0.9,
                ..Default::default()
            },
            SamplingParams {
                temperature: 0.7,
                min_p: 0.05,
                ..Default::default()
            },
        ];
        let u = uniforms(5, 44);
        run::<f32>(e, &x, Shape::new(5, cols), &params, &u);
        run::<bf16>(e, &x, Shape::new(5, cols), &params, &u);
    });
}

fn mixed_params(rows: usize) -> Vec<SamplingParams> {
    let kinds = [
        SamplingParams::default(),
        SamplingParams::greedy(),
        SamplingParams {
            temperature: 0.7,
            top_k: 50,
            ..Default::default()
        },
        SamplingParams {
            temperature: 1.3,
            top_p: 0.9,
            ..Default::default()
        },
        SamplingParams {
            min_p: 0.05,
            ..Default::default()
        },
        SamplingParams {
            temperature: 0.8,
            top_k: 40,
            top_p: 0.95,
            min_p: 0.02,
        },
        SamplingParams {
            top_k: 1,
            ..Default::default()
        },
        SamplingParams {
            temperature: 0.05,
            top_p: 0.5,
            ..Default::default()
        },
    ];
    (0..rows).map(|r| kinds[r % kinds.len()]).collect()
}

#[test]
fn every_filter_against_the_oracle_in_every_dtype() {
    on_every_tuning(|e| {
        for (rows, cols, scale) in [(16usize, 1000usize, 6.0f32), (8, 32000, 10.0), (3, 5, 2.0)] {
            let shape = Shape::new(rows, cols);
            let x = random_logits(shape.len(), scale, 11);
            let params = mixed_params(rows);
            let u = uniforms(rows, 12);
            run::<f32>(e, &x, shape, &params, &u);
            run::<f16>(e, &x, shape, &params, &u);
            run::<bf16>(e, &x, shape, &params, &u);
        }
    });
}

#[test]
fn ties_masks_and_rows_without_a_token() {
    let inf = f32::INFINITY;
    on_every_tuning(|e| {
        let rows: Vec<Vec<f32>> = vec![
            vec![1.0, 3.0, 2.0, 3.0],      // greedy: the first of the tied maxima
            vec![1.0, f32::NAN, 2.0, 0.0], // NaN: no token
            vec![inf, 1.0, 2.0, 0.0],      // +inf: no token
            vec![-inf, -inf, -inf, -inf],  // all masked: no token
            vec![-inf, 0.5, -inf, 0.5],    // -inf never drawn
            vec![2.0, 2.0, 2.0, 1.0],      // top-k 1 keeps the three ties
            vec![5.0, -inf, 4.0, 3.0],     // top-k 3 with -inf among them
            vec![0.0, -0.0, 0.0, -1.0],    // -0 ties with +0
        ];
        let params = [
            SamplingParams::greedy(),
            SamplingParams::default(),
            SamplingParams::default(),
            SamplingParams::default(),
            SamplingParams::default(),
            SamplingParams {
                top_k: 1,
                ..Default::default()
            },
            SamplingParams {
                top_k: 3,
                ..Default::default()
            },
            SamplingParams {
                top_k: 2,
                ..Default::default()
            },
        ];
        let x: Vec<f32> = rows.concat();
        let shape = Shape::new(rows.len(), 4);
        for u in [0.0f32, 0.3, 0.7, 0.999] {
            let u = vec![u; rows.len()];
            run::<f32>(e, &x, shape, &params, &u);
        }
        let got = e
            .sample(&x, shape, &params, Uniforms::Given(&[0.9; 8]))
            .unwrap();
        assert_eq!(got[0].token, 1);
        assert_eq!(got[3].status, SampleStatus::AllMasked);
        assert_eq!(got[5].kept, 3);
        assert_eq!(got[7].kept, 3, "-0 and +0 tie");
        assert!(got[4].token == 1 || got[4].token == 3);
    });
}

#[test]
fn philox_draws_do_not_depend_on_the_batch() {
    on_every_tuning(|e| {
        let cols = 4099;
        let rows = 70;
        let x = random_logits(rows * cols, 5.0, 13);
        let params = mixed_params(rows);
        let offsets: Vec<u64> = (0..rows as u64).map(|r| 1000 + 7 * r).collect();
        let seed = 0x1234_5678_9abc_def0;
        let all = e
            .sample(
                &x,
                Shape::new(rows, cols),
                &params,
                Uniforms::Philox {
                    seed,
                    offsets: &offsets,
                },
            )
            .unwrap();
        // The same as the caller's uniforms from the CPU generator, and as the oracle.
        let u: Vec<f32> = offsets.iter().map(|&o| uniform(seed, o)).collect();
        let given = e
            .sample(&x, Shape::new(rows, cols), &params, Uniforms::Given(&u))
            .unwrap();
        assert_eq!(all, given, "Philox on the GPU equals the CPU twin");
        check(
            &all,
            &oracle::sample(&x, Shape::new(rows, cols), &params, &u),
            "philox",
        );
        // Each row alone, and a middle slice, give the same results bit for bit.
        for r in [0, 33, rows - 1] {
            let one = e
                .sample(
                    &x[r * cols..(r + 1) * cols],
                    Shape::new(1, cols),
                    &params[r..r + 1],
                    Uniforms::Philox {
                        seed,
                        offsets: &offsets[r..r + 1],
                    },
                )
                .unwrap();
            assert_eq!(one[0], all[r], "row {r} alone");
        }
        let mid = e
            .sample(
                &x[10 * cols..40 * cols],
                Shape::new(30, cols),
                &params[10..40],
                Uniforms::Philox {
                    seed,
                    offsets: &offsets[10..40],
                },
            )
            .unwrap();
        assert_eq!(&mid[..], &all[10..40]);
    });
}

#[test]
fn filtered_probabilities_against_the_oracle() {
    on_every_tuning(|e| {
        let shape = Shape::new(16, 1000);
        let x = random_logits(shape.len(), 6.0, 21);
        let mut x = x;
        x[3 * 1000 + 5] = f32::NAN; // row 3: NaN throughout
        let params = mixed_params(shape.rows);
        for dtype in [DType::F32, DType::BF16] {
            let (got, want) = match dtype {
                DType::F32 => (
                    e.sample_probs(&x, shape, &params).unwrap(),
                    oracle::sample_probs(&x, shape, &params),
                ),
                _ => {
                    let b: Vec<bf16> = x.iter().map(|&v| bf16::from_f32(v)).collect();
                    (
                        e.sample_probs(&b, shape, &params).unwrap(),
                        oracle::sample_probs(&b, shape, &params),
                    )
                }
            };
            for (i, (&g, &w)) in got.iter().zip(&want).enumerate() {
                let (row, t) = (i / 1000, f64::from(params[i / 1000].temperature));
                // The softmax contract over the kept set: eps (8 + 4|a| + 2 log2 C) p + tiny,
                // |a| <= 12 / T (logits within +-6), twice (the kept mass is a second sum).
                let a = if t > 0.0 { 12.0 / t } else { 0.0 };
                let tol = 2.0 * 2f64.powi(-24) * (8.0 + 4.0 * a + 20.0) * w.abs()
                    + f64::from(f32::MIN_POSITIVE);
                let same = (w.is_nan() && g.is_nan()) || (f64::from(g) - w).abs() <= tol;
                assert!(same, "{dtype:?} row {row} [{i}]: {g} want {w}");
            }
            // Each kept row sums to 1.
            for row in (0..16).filter(|&r| r != 3) {
                let sum: f64 = got[row * 1000..(row + 1) * 1000]
                    .iter()
                    .map(|&v| f64::from(v))
                    .sum();
                assert!((sum - 1.0).abs() < 1e-5, "row {row} sums to {sum}");
            }
        }
    });
}

#[test]
fn adversarial_rows() {
    on_every_tuning(|e| {
        let inf = f32::INFINITY;
        let rows: Vec<(Vec<f32>, SamplingParams)> = vec![
            // Ties at the k-th value: top-k 2 keeps 5 and the three 4s.
            (
                vec![4.0, 5.0, 4.0, 3.0, 4.0, 1.0],
                SamplingParams {
                    top_k: 2,
                    ..Default::default()
                },
            ),
            // A plateau across the top-p boundary: all four 3s are kept.
            (
                vec![3.0, 1.0, 3.0, 3.0, 1.0, 3.0],
                SamplingParams {
                    top_p: 0.5,
                    ..Default::default()
                },
            ),
            // A dominant logit at T = 0.01: the runner-up has probability e^-1.
            (
                vec![10.0, 9.99, 0.0, -5.0, 9.0, 1.0],
                SamplingParams {
                    temperature: 0.01,
                    ..Default::default()
                },
            ),
            // -inf entries with every filter.
            (
                vec![-inf, 2.0, -inf, 1.0, 0.5, -inf],
                SamplingParams {
                    temperature: 0.9,
                    top_k: 4,
                    top_p: 0.99,
                    min_p: 0.1,
                },
            ),
            // min-p 1 keeps the maxima only.
            (
                vec![1.0, 2.0, 2.0, 0.0, 2.0, 1.5],
                SamplingParams {
                    min_p: 1.0,
                    ..Default::default()
                },
            ),
        ];
        let x: Vec<f32> = rows.iter().flat_map(|r| r.0.clone()).collect();
        let params: Vec<SamplingParams> = rows.iter().map(|r| r.1).collect();
        let shape = Shape::new(rows.len(), 6);
        for u in [0.0f32, 0.2, 0.45, 0.55, 0.8, 0.99] {
            let u = vec![u; rows.len()];
            run::<f32>(e, &x, shape, &params, &u);
            run::<f16>(e, &x, shape, &params, &u);
        }
        let got = e
            .sample(&x, shape, &params, Uniforms::Given(&[0.5; 5]))
            .unwrap();
        assert_eq!(
            got.iter().map(|s| s.kept).collect::<Vec<_>>(),
            [4, 4, 6, 3, 3]
        );
    });
}

#[test]
fn philox_draws_follow_the_kept_distribution() {
    // 20000 draws of one row of 8 logits under top-k 6 and top-p 0.95 (Philox offsets 0..N),
    // counted and checked with Pearson's chi-square against the kept, renormalised
    // probabilities of the f64 oracle, at significance 1e-4: with k kept tokens the
    // statistic must stay below the 0.9999 quantile of chi-square with k - 1 degrees of
    // freedom (3: 21.11, 4: 23.51, 5: 25.74).
    let quantile = [0.0, 0.0, 15.14, 18.42, 21.11, 23.51, 25.74];
    on_every_tuning(|e| {
        let row = [1.0f32, 0.2, 2.0, -0.5, 1.5, 0.8, -2.0, 1.1];
        let n = 20_000;
        let x: Vec<f32> = row.iter().copied().cycle().take(8 * n).collect();
        let p = SamplingParams {
            top_k: 6,
            top_p: 0.95,
            ..Default::default()
        };
        let offsets: Vec<u64> = (0..n as u64).collect();
        let got = e
            .sample(
                &x,
                Shape::new(n, 8),
                &[p],
                Uniforms::Philox {
                    seed: 42,
                    offsets: &offsets,
                },
            )
            .unwrap();
        let mut counts = [0usize; 8];
        for s in &got {
            counts[s.token as usize] += 1;
        }
        let probs = oracle::sample_probs(&row, Shape::new(1, 8), &[p]);
        let kept = probs.iter().filter(|&&q| q > 0.0).count();
        let mut chi2 = 0.0;
        for (j, &q) in probs.iter().enumerate() {
            if q == 0.0 {
                assert_eq!(counts[j], 0, "token {j} was filtered out");
                continue;
            }
            let expected = q * n as f64;
            chi2 += (counts[j] as f64 - expected).powi(2) / expected;
        }
        assert!((3..=6).contains(&kept), "{kept} kept");
        assert!(
            chi2 < quantile[kept],
            "chi-square {chi2:.2} with {kept} kept: {counts:?}"
        );
    });
}

#[test]
fn the_same_tokens_on_every_adapter() {
    // Philox draws on every engine (adapters and tunings) agree wherever the oracle's margin
    // leaves no room for rounding.
    let (rows, cols) = (64usize, 3000usize);
    let x = random_logits(rows * cols, 5.0, 31);
    let params = mixed_params(rows);
    let offsets: Vec<u64> = (0..rows as u64).collect();
    let u: Vec<f32> = offsets.iter().map(|&o| uniform(5, o)).collect();
    let want = oracle::sample(&x, Shape::new(rows, cols), &params, &u);
    let first: std::cell::RefCell<Option<Vec<Sample>>> = Default::default();
    let engines = std::cell::Cell::new(0);
    on_every_tuning(|e| {
        let got = e
            .sample(
                &x,
                Shape::new(rows, cols),
                &params,
                Uniforms::Philox {
                    seed: 5,
                    offsets: &offsets,
                },
            )
            .unwrap();
        engines.set(engines.get() + 1);
        let mut first = first.borrow_mut();
        match first.as_ref() {
            None => *first = Some(got),
            Some(f) => {
                for (row, (a, b)) in f.iter().zip(&got).enumerate() {
                    if want[row].margin > MARGIN {
                        assert_eq!(a.token, b.token, "row {row}");
                    }
                }
            }
        }
    });
    assert!(
        engines.get() >= 2,
        "compared across {} engines",
        engines.get()
    );
}

#[test]
fn a_row_of_a_million() {
    on_every_tuning(|e| {
        // Every filter over a row of 2^20 + 3 logits.
        let shape = Shape::new(1, (1 << 20) + 3);
        let x = random_logits(shape.len(), 8.0, 14);
        let params = [SamplingParams {
            temperature: 0.8,
            top_k: 1000,
            top_p: 0.9,
            min_p: 0.01,
        }];
        run::<f32>(e, &x, shape, &params, &uniforms(1, 15));
    });
}

#[test]
fn rows_past_one_dispatch_dimension() {
    common::on_every_adapter(|e| {
        // Plain sampling: the rows' indexing is what is tested here.
        let shape = Shape::new(70_000, 2);
        let x = random_logits(shape.len(), 8.0, 16);
        let u = uniforms(70_000, 17);
        run::<f32>(e, &x, shape, &[SamplingParams::default()], &u);
    });
}

#[test]
fn bad_parameters_are_errors_naming_the_row_and_flags_on_the_device() {
    let e = &common::engines()[0];
    let x = [0.0f32; 8];
    let shape = Shape::new(2, 4);
    let ok = SamplingParams::default();
    let u = [0.5f32, 0.5];
    for (params, needle) in [
        (
            vec![
                ok,
                SamplingParams {
                    temperature: -1.0,
                    ..ok
                },
            ],
            "row 1",
        ),
        (vec![SamplingParams { top_p: 0.0, ..ok }, ok], "top_p"),
        (vec![ok, SamplingParams { min_p: 2.0, ..ok }], "min_p"),
        (vec![ok, ok, ok], "parameters"),
    ] {
        let err = e
            .sample(&x, shape, &params, Uniforms::Given(&u))
            .unwrap_err();
        assert!(err.to_string().contains(needle), "{err}");
    }
    let err = e
        .sample(&x, shape, &[ok], Uniforms::Given(&[0.5, 1.0]))
        .unwrap_err();
    assert!(err.to_string().contains("row 1"), "{err}");
    assert!(e
        .sample(&x[..7], shape, &[ok], Uniforms::Given(&u))
        .is_err());
    // The device-level call cannot read its buffers' contents: bad rows are flagged.
    let d = e.device();
    let init = |contents: &[u8]| {
        d.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: None,
            contents,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
        })
    };
    let logits = init(bytemuck::cast_slice(&x));
    let words: Vec<[u32; 4]> = [
        ok,
        SamplingParams {
            temperature: f32::NAN,
            ..ok
        },
    ]
    .iter()
    .map(SamplingParams::to_words)
    .collect();
    let params = init(bytemuck::cast_slice(&words));
    let rand = init(bytemuck::cast_slice(&[
        [0.25f32.to_bits(), 0u32],
        [0.5f32.to_bits(), 0],
    ]));
    let results = init(&[0u8; 32]);
    let mut encoder = d.create_command_encoder(&Default::default());
    e.record_sample(
        &mut encoder,
        &SampleArgs {
            shape,
            logits: TensorRef::new(&logits, DType::F32),
            params: &params,
            uniforms: DeviceUniforms::Given(&rand),
            results: &results,
        },
    )
    .unwrap();
    e.queue().submit([encoder.finish()]);
    let out: Vec<[u32; 4]> = e.read_buffer(&results, 0, 2).unwrap();
    let out: Vec<Sample> = out.into_iter().map(Sample::from_words).collect();
    assert_eq!(
        (out[0].status, out[0].token),
        (SampleStatus::Ok, 1),
        "u = 0.25 of 4 equal"
    );
    assert_eq!(out[1].status, SampleStatus::InvalidParams);
    // Buffers too small are refused before recording.
    let mut encoder = d.create_command_encoder(&Default::default());
    let err = e
        .record_sample(
            &mut encoder,
            &SampleArgs {
                shape: Shape::new(3, 4),
                logits: TensorRef::new(&logits, DType::F32),
                params: &params,
                uniforms: DeviceUniforms::Given(&rand),
                results: &results,
            },
        )
        .unwrap_err();
    assert!(err.to_string().contains("logits"), "{err}");
}
