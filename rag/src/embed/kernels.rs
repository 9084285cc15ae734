//! The numeric kernels of the encoder, on plain row-major `f32` slices: the one
//! matrix multiply (a linear layer, through `gemm`), layer norm, softmax and GELU.
//!
//! GELU is the exact (erf) form BERT was trained with, with erf as a rational
//! function of x² (no `exp`, no branch), so the loop vectorises; it agrees with
//! erf to 5e-7 (tested below).

/// `out[m×n] += a[m×k] · wᵀ`, where `w` is `[n×k]` row-major (a linear layer's
/// weight as stored), on the calling thread.
///
/// # Panics
/// If a slice's length does not match its shape.
#[allow(unsafe_code)]
pub(super) fn add_matmul_t(out: &mut [f32], a: &[f32], w: &[f32], m: usize, n: usize, k: usize) {
    assert_eq!(out.len(), m * n, "out is m×n");
    assert_eq!(a.len(), m * k, "a is m×k");
    assert_eq!(w.len(), n * k, "w is n×k");
    if m == 0 || n == 0 {
        return;
    }
    let (n_i, k_i) = (n as isize, k as isize);
    // SAFETY: the asserts above make every index gemm reads or writes in bounds:
    // dst (i, j) is out[i·n + j] for i < m, j < n; lhs (i, p) is a[i·k + p] for
    // p < k; rhs (p, j) is w[j·k + p], element (j, p) of the n×k weight. `out` is
    // borrowed mutably, so it aliases neither input.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            out.as_mut_ptr(),
            1,
            n_i,
            true,
            a.as_ptr(),
            1,
            k_i,
            w.as_ptr(),
            k_i,
            1,
            1.0f32,
            1.0f32,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

/// Sets every `width`-wide row of `out` to `bias`.
pub(super) fn fill_rows(out: &mut [f32], bias: &[f32]) {
    for row in out.chunks_exact_mut(bias.len()) {
        row.copy_from_slice(bias);
    }
}

/// `x = LayerNorm(x + residual)` row by row (`gamma`, `beta` of the row width).
pub(super) fn add_layer_norm(
    x: &mut [f32],
    residual: &[f32],
    gamma: &[f32],
    beta: &[f32],
    eps: f32,
) {
    let width = gamma.len();
    for (row, res) in x.chunks_exact_mut(width).zip(residual.chunks_exact(width)) {
        for (v, r) in row.iter_mut().zip(res) {
            *v += r;
        }
        layer_norm_row(row, gamma, beta, eps);
    }
}

/// `x = LayerNorm(x)` row by row.
pub(super) fn layer_norm(x: &mut [f32], gamma: &[f32], beta: &[f32], eps: f32) {
    for row in x.chunks_exact_mut(gamma.len()) {
        layer_norm_row(row, gamma, beta, eps);
    }
}

fn layer_norm_row(row: &mut [f32], gamma: &[f32], beta: &[f32], eps: f32) {
    let n = row.len() as f32;
    let mean = row.iter().sum::<f32>() / n;
    let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / n;
    let inv = 1.0 / (var + eps).sqrt();
    for ((v, g), b) in row.iter_mut().zip(gamma).zip(beta) {
        *v = (*v - mean) * inv * g + b;
    }
}

/// Dot product in eight lanes (so it vectorises; the order of the sum differs
/// from a left-to-right loop only by rounding).
pub(super) fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0f32; 8];
    let (a8, b8) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = a8
        .remainder()
        .iter()
        .zip(b8.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in a8.zip(b8) {
        for l in 0..8 {
            lanes[l] += x[l] * y[l];
        }
    }
    lanes.iter().sum::<f32>() + tail
}

/// `out += scale · x`.
pub(super) fn axpy(out: &mut [f32], scale: f32, x: &[f32]) {
    for (o, v) in out.iter_mut().zip(x) {
        *o += scale * v;
    }
}

/// Softmax of one row in place.
pub(super) fn softmax(row: &mut [f32]) {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0;
    for v in row.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    let inv = 1.0 / sum;
    for v in row.iter_mut() {
        *v *= inv;
    }
}

/// GELU in place: `x · Φ(x) = x/2 · (1 + erf(x/√2))`.
pub(super) fn gelu(x: &mut [f32]) {
    for v in x.iter_mut() {
        *v = 0.5 * *v * (1.0 + erf(*v * std::f32::consts::FRAC_1_SQRT_2));
    }
}

/// erf(x) for f32: `x·P(x²)/Q(x²)` on [-4, 4] (erf is ±1 in f32 beyond it).
#[inline(always)]
fn erf(x: f32) -> f32 {
    const P: [f32; 7] = [
        -2.726_142_3e-10,
        2.770_681_4e-8,
        -2.101_024e-6,
        -5.692_506_4e-5,
        -7.349_906_3e-4,
        -2.954_600_1e-3,
        -1.609_603_3e-2,
    ];
    const Q: [f32; 5] = [
        -1.456_607_2e-5,
        -2.133_740_6e-4,
        -1.682_827e-3,
        -7.373_329e-3,
        -1.426_474e-2,
    ];
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    // Plain multiply-adds: `mul_add` without FMA in the target is a library call.
    let p = P[1..].iter().fold(P[0], |acc, c| acc * x2 + c);
    let q = Q[1..].iter().fold(Q[0], |acc, c| acc * x2 + c);
    x * p / q
}

#[cfg(test)]
mod tests {
    use super::*;

    /// erf in f64 by its series (accurate to ~1e-11 on [-4, 4]).
    fn erf_reference(x: f64) -> f64 {
        let (mut term, mut sum) = (x, x);
        for n in 1..200 {
            term *= -x * x / n as f64;
            sum += term / (2 * n + 1) as f64;
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    }

    #[test]
    fn erf_agrees_with_the_series() {
        let mut worst = 0f64;
        for i in -40_000..=40_000 {
            let x = i as f64 / 10_000.0;
            worst = worst.max((f64::from(erf(x as f32)) - erf_reference(x)).abs());
        }
        assert!(worst < 5e-7, "worst error {worst:e}");
        assert_eq!(erf(9.0), erf(4.0));
        assert!((erf(-30.0) + 1.0).abs() < 1e-6);
    }

    #[test]
    fn gelu_is_x_times_the_normal_cdf() {
        let xs: Vec<f32> = (-80..=80).map(|i| i as f32 / 10.0).collect();
        let mut ys = xs.clone();
        gelu(&mut ys);
        for (x, y) in xs.iter().zip(&ys) {
            let x64 = f64::from(*x);
            let want = 0.5 * x64 * (1.0 + erf_reference((x64 / 2f64.sqrt()).clamp(-4.0, 4.0)));
            assert!(
                (f64::from(*y) - want).abs() < 5e-6,
                "gelu({x}) = {y}, want {want}"
            );
        }
    }

    #[test]
    fn matmul_adds_a_times_w_transposed() {
        let (m, n, k) = (3, 5, 7);
        let a: Vec<f32> = (0..m * k).map(|i| (i as f32 * 0.37).sin()).collect();
        let w: Vec<f32> = (0..n * k).map(|i| (i as f32 * 0.11).cos()).collect();
        let mut out = vec![1.0; m * n];
        add_matmul_t(&mut out, &a, &w, m, n, k);
        for i in 0..m {
            for j in 0..n {
                let want: f32 = 1.0 + (0..k).map(|p| a[i * k + p] * w[j * k + p]).sum::<f32>();
                assert!((out[i * n + j] - want).abs() < 1e-5, "({i}, {j})");
            }
        }
    }

    #[test]
    #[should_panic(expected = "w is n×k")]
    fn matmul_refuses_a_mis_sized_weight() {
        add_matmul_t(&mut [0.0; 4], &[0.0; 4], &[0.0; 3], 2, 2, 2);
    }

    #[test]
    fn softmax_and_layer_norm() {
        let mut row = [1.0, 2.0, 3.0, 1000.0];
        softmax(&mut row);
        assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!(row[3] > 0.999);
        let mut x = [1.0, 2.0, 3.0, 4.0];
        layer_norm(&mut x, &[1.0; 4], &[0.5; 4], 1e-12);
        let mean: f32 = x.iter().sum::<f32>() / 4.0;
        assert!((mean - 0.5).abs() < 1e-6);
        assert!((x[3] - x[0] - 2.0 * 1.5 / 1.25f32.sqrt()).abs() < 1e-5);
    }
}
