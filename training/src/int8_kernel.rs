//! The int8 layer product on AVX2: the one place in this crate with `unsafe` (a measured hot
//! path: batched int8 inference was 4.3× slower than the f32 path on the baseline x86-64 code).
//!
//! Weights are packed in pairs of inputs: for inputs 2k and 2k+1 and output c, one i32 holds
//! w[2k][c] in its low 16 bits and w[2k+1][c] in its high 16 bits; a row of inputs is packed the
//! same way. `vpmaddwd` multiplies the 16-bit halves and adds each pair into a 32-bit lane, so
//! one instruction does 16 multiply-adds, and the sums are exact (|q|, |w| ≤ 127: a layer would
//! need over 66,000 inputs to overflow i32). The results are bit for bit those of the portable
//! loop in `quantize.rs` (test below).
#![allow(unsafe_code)]

/// Outputs rounded up to whole 256-bit registers of i32 (8 lanes).
pub(crate) fn padded(outputs: usize) -> usize {
    outputs.div_ceil(8) * 8
}

/// Weights `w` ([in][out], values in [−127, 127]) packed as [⌈in/2⌉][padded(out)] pairs.
pub(crate) fn pack_weights(w: &[i16], inputs: usize, outputs: usize) -> Vec<i32> {
    let width = padded(outputs);
    let mut packed = vec![0i32; inputs.div_ceil(2) * width];
    for k in 0..inputs {
        for c in 0..outputs {
            let half = i32::from(w[k * outputs + c] as u16) << (16 * (k % 2));
            packed[(k / 2) * width + c] |= half;
        }
    }
    packed
}

/// `v` quantized with the inverse scale `inv`: round(v · inv) clamped to [−127, 127], ties to
/// even. Adding 1.5 · 2²³ leaves no fraction bits, so the float's low bits are the integer
/// (no float-to-int conversion, which vectorizes poorly); NaN gives 0.
#[inline]
pub(crate) fn quantize_input(v: f32, inv: f32) -> i16 {
    const MAGIC: f32 = 12_582_912.0;
    let t = (v * inv).clamp(-127.0, 127.0);
    if t.is_nan() {
        return 0;
    }
    ((t + MAGIC).to_bits() as i32 - MAGIC.to_bits() as i32) as i16
}

/// Whether this CPU runs the vector kernel ([`layer`]).
pub(crate) fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx2")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// One quantized dense layer, as the kernel reads it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Packed<'a> {
    pub(crate) inputs: usize,
    pub(crate) outputs: usize,
    /// [`pack_weights`] of the layer's weights.
    pub(crate) weights: &'a [i32],
    /// 1 / the input's scale.
    pub(crate) inv_input_scale: f32,
    /// Per output: input scale × weight scale.
    pub(crate) out_scale: &'a [f32],
    pub(crate) bias: &'a [f32],
}

/// `out` (rows × outputs) = the layer on `a` (rows × inputs): inputs quantized by
/// [`quantize_input`], exact integer sums, rescaled by `out_scale`, plus `bias`, then max(0, ·)
/// if `relu`. Returns false (and leaves `out` alone) when the CPU lacks AVX2.
pub(crate) fn layer(a: &[f32], l: Packed<'_>, relu: bool, out: &mut [f32]) -> bool {
    #[cfg(target_arch = "x86_64")]
    if available() {
        assert!(
            l.weights.len() == l.inputs.div_ceil(2) * padded(l.outputs)
                && l.out_scale.len() == l.outputs
                && l.bias.len() == l.outputs
                && a.len() / l.inputs.max(1) == out.len() / l.outputs.max(1)
        );
        // SAFETY: the CPU has AVX2, checked just above; `x86::layer` reads and writes only
        // through bounds-checked slices.
        unsafe { x86::layer(a, l, relu, out) };
        return true;
    }
    let _ = (a, l, relu, out);
    false
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::{
        __m256i, _mm256_add_epi32, _mm256_loadu_si256, _mm256_madd_epi16, _mm256_set1_epi32,
        _mm256_setzero_si256, _mm256_storeu_si256,
    };

    use super::{Packed, padded, quantize_input};

    /// [`super::layer`], row by row; the quantization and rescaling loops are plain code
    /// that the compiler vectorizes with AVX2 here.
    #[target_feature(enable = "avx2")]
    pub(super) fn layer(a: &[f32], l: Packed<'_>, relu: bool, out: &mut [f32]) {
        let mut pairs = Vec::with_capacity(l.inputs.div_ceil(2));
        let mut acc = vec![0i32; padded(l.outputs)];
        for (x, y) in a
            .chunks_exact(l.inputs)
            .zip(out.chunks_exact_mut(l.outputs))
        {
            pairs.clear();
            let whole = x.chunks_exact(2);
            let odd = whole.remainder().first().copied();
            pairs.extend(whole.map(|p| {
                let lo = i32::from(quantize_input(p[0], l.inv_input_scale) as u16);
                lo | i32::from(quantize_input(p[1], l.inv_input_scale)) << 16
            }));
            if let Some(v) = odd {
                pairs.push(i32::from(quantize_input(v, l.inv_input_scale) as u16));
            }
            accumulate(&mut acc, &pairs, l.weights);
            for (((y, s), b), v) in y.iter_mut().zip(l.out_scale).zip(l.bias).zip(&acc) {
                let z = *v as f32 * s + b;
                *y = if relu { z.max(0.0) } else { z };
            }
        }
    }

    /// acc[c] = Σ_k q_k · w[k][c] for a row packed in pairs and packed weights, in column
    /// blocks of 64, 32, 16 and 8 outputs, each accumulated in registers over all pairs.
    #[target_feature(enable = "avx2")]
    pub(super) fn accumulate(acc: &mut [i32], row: &[i32], packed: &[i32]) {
        let width = acc.len();
        let mut cb = 0;
        while width - cb >= 64 {
            block::<8>(acc, row, packed, cb);
            cb += 64;
        }
        if width - cb >= 32 {
            block::<4>(acc, row, packed, cb);
            cb += 32;
        }
        if width - cb >= 16 {
            block::<2>(acc, row, packed, cb);
            cb += 16;
        }
        if width - cb >= 8 {
            block::<1>(acc, row, packed, cb);
        }
    }

    /// Outputs cb..cb + 8N: N registers of sums; pairs of zero inputs (ReLU's) are skipped.
    #[target_feature(enable = "avx2")]
    #[inline]
    fn block<const N: usize>(acc: &mut [i32], row: &[i32], packed: &[i32], cb: usize) {
        let width = acc.len();
        let mut sums = [_mm256_setzero_si256(); N];
        for (kp, &pair) in row.iter().enumerate() {
            if pair == 0 {
                continue;
            }
            let x = _mm256_set1_epi32(pair);
            let w = &packed[kp * width + cb..kp * width + cb + 8 * N];
            for (v, s) in sums.iter_mut().enumerate() {
                // SAFETY: `w` holds 8·N i32s, so the 8 from 8·v are in it; loadu needs no
                // alignment.
                let wv = unsafe { _mm256_loadu_si256(w.as_ptr().add(8 * v).cast::<__m256i>()) };
                *s = _mm256_add_epi32(*s, _mm256_madd_epi16(wv, x));
            }
        }
        let out = &mut acc[cb..cb + 8 * N];
        for (v, s) in sums.iter().enumerate() {
            // SAFETY: `out` holds 8·N i32s, so the 8 from 8·v are in it.
            unsafe { _mm256_storeu_si256(out.as_mut_ptr().add(8 * v).cast::<__m256i>(), *s) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_vector_layer_equals_the_definition_exactly() {
        let mut state = 7u64;
        let mut next = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 33) % 255) as i16 - 127
        };
        // Odd and even inputs, widths around every block size, extreme values, zero pairs.
        for (inputs, outputs) in [(1, 1), (3, 7), (64, 128), (128, 10), (65, 121), (9, 200)] {
            let w: Vec<i16> = (0..inputs * outputs).map(|_| next()).collect();
            let rows = 3;
            // Inputs that quantize (inverse scale 2) to q = next() / 2 rounded, with a zero pair.
            let mut a: Vec<f32> = (0..rows * inputs)
                .map(|_| f32::from(next()) / 4.0)
                .collect();
            a[0] = -1000.0;
            if inputs > 3 {
                a[2] = 0.0;
                a[3] = 0.0;
            }
            let out_scale: Vec<f32> = (0..outputs).map(|c| 0.5 + c as f32 / 8.0).collect();
            let bias: Vec<f32> = (0..outputs).map(|c| c as f32 - 3.0).collect();
            let packed = pack_weights(&w, inputs, outputs);
            let l = Packed {
                inputs,
                outputs,
                weights: &packed,
                inv_input_scale: 2.0,
                out_scale: &out_scale,
                bias: &bias,
            };
            for relu in [false, true] {
                let mut out = vec![f32::NAN; rows * outputs];
                if !layer(&a, l, relu, &mut out) {
                    eprintln!("no AVX2 here: the vector kernel is not exercised");
                    return;
                }
                for r in 0..rows {
                    let q: Vec<i32> = a[r * inputs..(r + 1) * inputs]
                        .iter()
                        .map(|v| i32::from(quantize_input(*v, 2.0)))
                        .collect();
                    for c in 0..outputs {
                        let sum: i32 = (0..inputs)
                            .map(|k| q[k] * i32::from(w[k * outputs + c]))
                            .sum();
                        let z = sum as f32 * out_scale[c] + bias[c];
                        let want = if relu { z.max(0.0) } else { z };
                        assert_eq!(out[r * outputs + c], want, "{inputs}×{outputs} row {r}");
                    }
                }
            }
        }
    }

    #[test]
    fn inputs_quantize_by_rounding_half_to_even_within_127() {
        let q = |v: f32| quantize_input(v, 1.0);
        assert_eq!(
            [
                q(0.5),
                q(1.5),
                q(-2.5),
                q(2.4),
                q(126.6),
                q(1e9),
                q(-1e9),
                q(f32::NAN)
            ],
            [0, 2, -2, 2, 127, 127, -127, 0]
        );
    }
}
