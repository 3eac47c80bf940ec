// The spectral moment loss and its gradient on the CPU in one call (../spectral/cpu.py,
// _NativeSpectralLoss; the torch-op twin is _FFTSpectralLoss in ../spectral/fft.py). The extern "C"
// prototype is tabled in ../../native.py, which checks every pointer passed.
//
// Why one call: with torch's FFTs the loss is a dozen passes over buffers of about 1 MB each at
// 128 x 128 (transforms, transposes, modulus, weighting, the backward's inverse transforms), with a
// dispatch and an allocation each. Here each pair of images goes through all of it in one core's
// working buffers, with no torch op in between (measured about 2x faster at 64^2 to 512^2).
//
// Layouts (row-major, contiguous; S is float or double):
//   pred_rgb, gt_rgb, grad_rgb  [V, H, W, C]     (the renderer's layout)
//   pred_mask, gt_mask, grad_mask  [V, H, W]     (or null: no mask term)
//   factor [N+1, P]  per-cell weight without the band weight (band averaging, 1 / (H W), the doubling
//                    of kx > 0; 0 for cells outside the band square), P = 2 max(H, W), row kx,
//                    column ky mod P
//   band   [N+1, P]  int32 band index of each cell
//   w      [K]       band weights w_k(t), double
//   coeff  [V (C+1)] ([V C] without masks) per-image coefficient (1 / (V C) for colour, lambda_mask / V for the mask), double
//   d(X) = sqrt(|X|^2 + eps^2) for eps > 0 (smoothed l1), |X|^2 for eps == 0 (l2)
//
// Threads: OpenMP over image pairs (sharing torch's pool where torch's OpenMP runtime is GNU libgomp,
// as for ../../render/csrc: see ../../native.py); the loss is summed over per-pair partial sums in a
// fixed order, so the result does not depend on the thread count.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>
#include <cstdlib>
#include <new>
#include <vector>
#ifdef __linux__
#include <sys/mman.h>
#endif
#ifdef __AVX__
#include <immintrin.h>
#endif

// ---- the whole loss and its gradient in one call ------------------------------------------------
//
// st_spectral_fused: the spectral loss of every image and, when grad_rgb is given, its gradient with
// respect to the images (pred; the gradient with respect to gt is its negative).
//
// Two real images a and b (colour channels and masks, in order) go through one complex 2D transform
// of z = a + i b, zero padded to P x P (P = 2L): rows first (length P along x, vectorised over the H
// image rows), then columns (length P along y, vectorised over the kept kx only: 0..N and -N..-1, M =
// 2N + 1 of them, or all P when N = L). With Z = F(z), the transforms of the two real images are
// A(k) = (Z(k) + conj Z(-k)) / 2 and B(k) = (Z(k) - conj Z(-k)) / (2 i). The loss needs them on the
// half plane kx = 0..N (cells as in ../spectral/bands.py, _fft_cells: factor and band per [N+1, P]
// cell, ky mod P).
//
// Gradient: for l = sum cw * d(A) (and likewise B), dl/da(p) = Re sum_{half plane} G(k) e^{+i k.p}
// with G = cw * A / d(A) (l1) or 2 cw A (l2) (the identity of the torch-op twin's backward, whose
// irfft doubling and 0.5 row scale cancel). Re of an inverse transform of a half-plane G is the
// inverse transform of its Hermitian part H(G)(k) = (G(k) + conj G(-k)) / 2, so a and b again share
// one inverse transform: a_grad + i b_grad = F^-1(H(G_A) + i H(G_B)) (unnormalised), which is built
// in place of Z, each cell together with its mirror -k.
//
// Transforms: Stockham autosort (no bit reversal), radices 8, 4, 2, 3 and 5, along the rows of a
// split-complex [n][ld] array, each butterfly a loop over the ld-padded columns (SIMD). Row strides
// are padded to an odd multiple of 32 bytes: power-of-two strides put a butterfly's inputs in the
// same cache sets (measured 2-3x slower). The first stage skips rows known to be zero (the padding,
// and the kx rows outside the band square in the inverse). Lengths with other prime factors return
// status -1 (spectral_loss checks the length first, ../spectral/cpu.py _native_supported, and uses the
// torch-op twin for them).

namespace {

template <typename S>
struct Tables {
    int n = 0;
    std::vector<S> cos_, sin_;  // e^{-2 pi i k / n} = cos_[k] + i sin_[k]
    std::vector<int> radices;
    void build(int size) {
        n = size;
        cos_.resize(n);
        sin_.resize(n);
        for (int k = 0; k < n; ++k) {
            const double angle = -2.0 * M_PI * double(k) / double(n);
            cos_[k] = S(std::cos(angle));
            sin_[k] = S(std::sin(angle));
        }
        radices.clear();
        int rem = n;
        while (rem % 8 == 0) radices.push_back(8), rem /= 8;
        while (rem % 4 == 0) radices.push_back(4), rem /= 4;
        while (rem % 2 == 0) radices.push_back(2), rem /= 2;
        while (rem % 3 == 0) radices.push_back(3), rem /= 3;
        while (rem % 5 == 0) radices.push_back(5), rem /= 5;
        if (rem != 1) radices.clear();  // unsupported length
    }
};

// Padded row stride (in elements): at least m, an odd multiple of 32 bytes.
template <typename S>
int64_t padded_stride(int m) {
    const int64_t unit = 32 / int64_t(sizeof(S));
    int64_t blocks = (m + unit - 1) / unit;
    if (blocks % 2 == 0) ++blocks;
    return blocks * unit;
}

template <typename S>
struct C4 {  // four complex values
    S r0, i0, r1, i1, r2, i2, r3, i3;
};

// The 4-point DFT z_k = sum_j x_j u^{j k}, u = w^{n/4} = -sign * i (w = e^{-sign 2 pi i / n}).
template <typename S>
inline C4<S> butterfly4(S x0r, S x0i, S x1r, S x1i, S x2r, S x2i, S x3r, S x3i, S sign) {
    const S ar = x0r + x2r, ai = x0i + x2i, br = x0r - x2r, bi = x0i - x2i;
    const S cr = x1r + x3r, ci = x1i + x3i, dr = x1r - x3r, di = x1i - x3i;
    const S er = sign * di, ei = -sign * dr;  // u (x1 - x3)
    return {ar + cr, ai + ci, br + er, bi + ei, ar - cr, ai - ci, br - er, bi - ei};
}

// One Stockham stage of radix r: input rows (j l + p) s + q, output rows (p r + k) s + q,
// y_k = w^{p k s} sum_j x_j w^{j k n / r} with w = e^{-sign 2 pi i / n} (sign +1: forward
// transform, -1: unnormalised inverse). zero_lo..zero_hi: input rows
// that are zero (first stage only), read from `zero` instead.
template <typename S>
void stockham_stage(int r, int l, int s, int m, int64_t ld, const S *xr, const S *xi, S *yr, S *yi,
                    const Tables<S> &tw, S sign, int zero_lo, int zero_hi, const S *zero) {
    const int n = tw.n;
    auto row = [&](const S *base, int index) -> const S * {
        return (index >= zero_lo && index < zero_hi) ? zero : base + int64_t(index) * ld;
    };
    for (int p = 0; p < l; ++p) {
        for (int q = 0; q < s; ++q) {
            if (r == 8) {
                // radix 4 on the even and on the odd inputs, combined with u^k = w^{k n / 8}
                const S *x_r[8], *x_i[8];
                for (int j = 0; j < 8; ++j) {
                    x_r[j] = row(xr, (j * l + p) * s + q);
                    x_i[j] = row(xi, (j * l + p) * s + q);
                }
                S wr[8], wi[8];  // stage twiddles w^{p k s}
                for (int k = 1; k < 8; ++k) {
                    const int t = int((int64_t(p) * k * s) % n);
                    wr[k] = tw.cos_[t];
                    wi[k] = sign * tw.sin_[t];
                }
                S *y_r[8], *y_i[8];
                for (int k = 0; k < 8; ++k) {
                    y_r[k] = yr + int64_t((p * 8 + k) * s + q) * ld;
                    y_i[k] = yi + int64_t((p * 8 + k) * s + q) * ld;
                }
                const S c = S(0.70710678118654752440);
#pragma omp simd
                for (int j = 0; j < m; ++j) {
                    // radix-4 DFTs of the even inputs (x0, x2, x4, x6) and of the odd ones
                    const C4<S> e = butterfly4(x_r[0][j], x_i[0][j], x_r[2][j], x_i[2][j], x_r[4][j], x_i[4][j],
                                               x_r[6][j], x_i[6][j], sign);
                    const C4<S> o = butterfly4(x_r[1][j], x_i[1][j], x_r[3][j], x_i[3][j], x_r[5][j], x_i[5][j],
                                               x_r[7][j], x_i[7][j], sign);
                    const S e0r = e.r0, e0i = e.i0, e1r = e.r1, e1i = e.i1, e2r = e.r2, e2i = e.i2, e3r = e.r3,
                            e3i = e.i3;
                    const S o0r = o.r0, o0i = o.i0, o1r = o.r1, o1i = o.i1, o2r = o.r2, o2i = o.i2, o3r = o.r3,
                            o3i = o.i3;
                    // u^1 = c (1 - sign i), u^2 = -sign i, u^3 = c (-1 - sign i)
                    const S t1r = c * (o1r + sign * o1i), t1i = c * (o1i - sign * o1r);
                    const S t2r = sign * o2i, t2i = -sign * o2r;
                    const S t3r = c * (-o3r + sign * o3i), t3i = c * (-o3i - sign * o3r);
                    const S zr_[8] = {e0r + o0r, e1r + t1r, e2r + t2r, e3r + t3r, e0r - o0r, e1r - t1r, e2r - t2r, e3r - t3r};
                    const S zi_[8] = {e0i + o0i, e1i + t1i, e2i + t2i, e3i + t3i, e0i - o0i, e1i - t1i, e2i - t2i, e3i - t3i};
                    y_r[0][j] = zr_[0];
                    y_i[0][j] = zi_[0];
                    for (int k = 1; k < 8; ++k) {
                        y_r[k][j] = zr_[k] * wr[k] - zi_[k] * wi[k];
                        y_i[k][j] = zr_[k] * wi[k] + zi_[k] * wr[k];
                    }
                }
            } else if (r == 4) {
                const int t = p * s;
                const S w1r = tw.cos_[t], w1i = sign * tw.sin_[t];
                const S w2r = tw.cos_[2 * t], w2i = sign * tw.sin_[2 * t];
                const S w3r = tw.cos_[3 * t], w3i = sign * tw.sin_[3 * t];
                const int i0 = (0 * l + p) * s + q, i1 = (1 * l + p) * s + q, i2 = (2 * l + p) * s + q,
                          i3 = (3 * l + p) * s + q;
                const S *x0r = row(xr, i0), *x0i = row(xi, i0), *x1r = row(xr, i1), *x1i = row(xi, i1);
                const S *x2r = row(xr, i2), *x2i = row(xi, i2), *x3r = row(xr, i3), *x3i = row(xi, i3);
                S *y0r = yr + int64_t((p * 4 + 0) * s + q) * ld, *y0i = yi + int64_t((p * 4 + 0) * s + q) * ld;
                S *y1r = yr + int64_t((p * 4 + 1) * s + q) * ld, *y1i = yi + int64_t((p * 4 + 1) * s + q) * ld;
                S *y2r = yr + int64_t((p * 4 + 2) * s + q) * ld, *y2i = yi + int64_t((p * 4 + 2) * s + q) * ld;
                S *y3r = yr + int64_t((p * 4 + 3) * s + q) * ld, *y3i = yi + int64_t((p * 4 + 3) * s + q) * ld;
#pragma omp simd
                for (int j = 0; j < m; ++j) {
                    const C4<S> z = butterfly4(x0r[j], x0i[j], x1r[j], x1i[j], x2r[j], x2i[j], x3r[j], x3i[j], sign);
                    y0r[j] = z.r0;
                    y0i[j] = z.i0;
                    y1r[j] = z.r1 * w1r - z.i1 * w1i;
                    y1i[j] = z.r1 * w1i + z.i1 * w1r;
                    y2r[j] = z.r2 * w2r - z.i2 * w2i;
                    y2i[j] = z.r2 * w2i + z.i2 * w2r;
                    y3r[j] = z.r3 * w3r - z.i3 * w3i;
                    y3i[j] = z.r3 * w3i + z.i3 * w3r;
                }
            } else if (r == 2) {
                const int t = p * s;
                const S wr = tw.cos_[t], wi = sign * tw.sin_[t];
                const int i0 = p * s + q, i1 = (l + p) * s + q;
                const S *ar_ = row(xr, i0), *ai_ = row(xi, i0), *br_ = row(xr, i1), *bi_ = row(xi, i1);
                S *y0r = yr + int64_t((2 * p) * s + q) * ld, *y0i = yi + int64_t((2 * p) * s + q) * ld;
                S *y1r = yr + int64_t((2 * p + 1) * s + q) * ld, *y1i = yi + int64_t((2 * p + 1) * s + q) * ld;
#pragma omp simd
                for (int j = 0; j < m; ++j) {
                    const S ur = ar_[j], ui = ai_[j], vr = br_[j], vi = bi_[j];
                    const S dr = ur - vr, di = ui - vi;
                    y0r[j] = ur + vr;
                    y0i[j] = ui + vi;
                    y1r[j] = dr * wr - di * wi;
                    y1i[j] = dr * wi + di * wr;
                }
            } else if (r == 3) {
                // y0 = x0 + x1 + x2, y1,2 = x0 - (x1 + x2) / 2 -+ i sign (sqrt(3) / 2) (x1 - x2), then twiddled
                const int t = p * s;
                const S w1r = tw.cos_[t], w1i = sign * tw.sin_[t], w2r = tw.cos_[2 * t], w2i = sign * tw.sin_[2 * t];
                const S h3 = sign * S(0.86602540378443864676);
                const int i0 = p * s + q, i1 = (l + p) * s + q, i2 = (2 * l + p) * s + q;
                const S *x0r = row(xr, i0), *x0i = row(xi, i0), *x1r = row(xr, i1), *x1i = row(xi, i1);
                const S *x2r = row(xr, i2), *x2i = row(xi, i2);
                S *y0r = yr + int64_t((p * 3 + 0) * s + q) * ld, *y0i = yi + int64_t((p * 3 + 0) * s + q) * ld;
                S *y1r = yr + int64_t((p * 3 + 1) * s + q) * ld, *y1i = yi + int64_t((p * 3 + 1) * s + q) * ld;
                S *y2r = yr + int64_t((p * 3 + 2) * s + q) * ld, *y2i = yi + int64_t((p * 3 + 2) * s + q) * ld;
#pragma omp simd
                for (int j = 0; j < m; ++j) {
                    const S sr = x1r[j] + x2r[j], si = x1i[j] + x2i[j], dr = x1r[j] - x2r[j], di = x1i[j] - x2i[j];
                    const S mr = x0r[j] - S(0.5) * sr, mi = x0i[j] - S(0.5) * si;
                    const S z1r = mr + h3 * di, z1i = mi - h3 * dr, z2r = mr - h3 * di, z2i = mi + h3 * dr;
                    y0r[j] = x0r[j] + sr;
                    y0i[j] = x0i[j] + si;
                    y1r[j] = z1r * w1r - z1i * w1i;
                    y1i[j] = z1r * w1i + z1i * w1r;
                    y2r[j] = z2r * w2r - z2i * w2i;
                    y2i[j] = z2r * w2i + z2i * w2r;
                }
            } else {  // 5: the small DFT written as a sum
                const S *xr_[5], *xi_[5];
                for (int j = 0; j < r; ++j) {
                    xr_[j] = row(xr, (j * l + p) * s + q);
                    xi_[j] = row(xi, (j * l + p) * s + q);
                }
                for (int k = 0; k < r; ++k) {
                    S cr_[5], ci_[5];  // w^{j k n / r} times the stage twiddle w^{p k s}
                    for (int j = 0; j < r; ++j) {
                        const int t = int((int64_t(j) * k * (n / r) + int64_t(p) * k * s) % n);
                        cr_[j] = tw.cos_[t];
                        ci_[j] = sign * tw.sin_[t];
                    }
                    S *ykr = yr + int64_t((p * r + k) * s + q) * ld, *yki = yi + int64_t((p * r + k) * s + q) * ld;
#pragma omp simd
                    for (int jj = 0; jj < m; ++jj) {
                        S sr = 0, si = 0;
                        for (int j = 0; j < r; ++j) {
                            sr += xr_[j][jj] * cr_[j] - xi_[j][jj] * ci_[j];
                            si += xr_[j][jj] * ci_[j] + xi_[j][jj] * cr_[j];
                        }
                        ykr[jj] = sr;
                        yki[jj] = si;
                    }
                }
            }
        }
    }
}

// Transform along the rows of the split-complex [n][ld] array (re, im), first m columns; (re2, im2)
// is scratch of the same size. Returns 0 if the result is in (re, im), 1 if in (re2, im2).
template <typename S>
int stockham(int m, int64_t ld, S *re, S *im, S *re2, S *im2, const Tables<S> &tw, S sign, int zero_lo,
             int zero_hi, const S *zero) {
    int s = 1, rem = tw.n, which = 0;
    S *ar = re, *ai = im, *br = re2, *bi = im2;
    for (int r : tw.radices) {
        const int l = rem / r;
        stockham_stage(r, l, s, m, ld, ar, ai, br, bi, tw, sign, s == 1 ? zero_lo : 0, s == 1 ? zero_hi : 0, zero);
        std::swap(ar, br);
        std::swap(ai, bi);
        which ^= 1;
        s *= r;
        rem = l;
    }
    return which;
}

// dst[c][r] = src[r][c] for r < rows, c < cols, one plane: 8 x 8 register blocks (AVX, float), the
// edges and double element by element.
template <typename S>
void transpose_plane(int rows, int cols, const S *src, int64_t src_ld, S *dst, int64_t dst_ld) {
    int r8 = 0, c8 = 0;
#ifdef __AVX__
    if constexpr (std::is_same_v<S, float>) {
        r8 = rows / 8 * 8;
        c8 = cols / 8 * 8;
        for (int r0 = 0; r0 < r8; r0 += 8)
            for (int c0 = 0; c0 < c8; c0 += 8) {
                const float *s0 = src + int64_t(r0) * src_ld + c0;
                __m256 x0 = _mm256_loadu_ps(s0), x1 = _mm256_loadu_ps(s0 + src_ld),
                       x2 = _mm256_loadu_ps(s0 + 2 * src_ld), x3 = _mm256_loadu_ps(s0 + 3 * src_ld),
                       x4 = _mm256_loadu_ps(s0 + 4 * src_ld), x5 = _mm256_loadu_ps(s0 + 5 * src_ld),
                       x6 = _mm256_loadu_ps(s0 + 6 * src_ld), x7 = _mm256_loadu_ps(s0 + 7 * src_ld);
                const __m256 t0 = _mm256_unpacklo_ps(x0, x1), t1 = _mm256_unpackhi_ps(x0, x1),
                             t2 = _mm256_unpacklo_ps(x2, x3), t3 = _mm256_unpackhi_ps(x2, x3),
                             t4 = _mm256_unpacklo_ps(x4, x5), t5 = _mm256_unpackhi_ps(x4, x5),
                             t6 = _mm256_unpacklo_ps(x6, x7), t7 = _mm256_unpackhi_ps(x6, x7);
                const __m256 u0 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(1, 0, 1, 0)),
                             u1 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(3, 2, 3, 2)),
                             u2 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(1, 0, 1, 0)),
                             u3 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(3, 2, 3, 2)),
                             u4 = _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(1, 0, 1, 0)),
                             u5 = _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(3, 2, 3, 2)),
                             u6 = _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(1, 0, 1, 0)),
                             u7 = _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(3, 2, 3, 2));
                float *d0 = dst + int64_t(c0) * dst_ld + r0;
                _mm256_storeu_ps(d0, _mm256_permute2f128_ps(u0, u4, 0x20));
                _mm256_storeu_ps(d0 + dst_ld, _mm256_permute2f128_ps(u1, u5, 0x20));
                _mm256_storeu_ps(d0 + 2 * dst_ld, _mm256_permute2f128_ps(u2, u6, 0x20));
                _mm256_storeu_ps(d0 + 3 * dst_ld, _mm256_permute2f128_ps(u3, u7, 0x20));
                _mm256_storeu_ps(d0 + 4 * dst_ld, _mm256_permute2f128_ps(u0, u4, 0x31));
                _mm256_storeu_ps(d0 + 5 * dst_ld, _mm256_permute2f128_ps(u1, u5, 0x31));
                _mm256_storeu_ps(d0 + 6 * dst_ld, _mm256_permute2f128_ps(u2, u6, 0x31));
                _mm256_storeu_ps(d0 + 7 * dst_ld, _mm256_permute2f128_ps(u3, u7, 0x31));
            }
    }
#endif
    // the rest: columns c8.. of all rows, and rows r8.. of the first c8 columns
    constexpr int T = 16;
    auto block = [&](int ra, int rb, int ca, int cb) {
        for (int r0 = ra; r0 < rb; r0 += T)
            for (int c0 = ca; c0 < cb; c0 += T) {
                const int r1 = std::min(rb, r0 + T), c1 = std::min(cb, c0 + T);
                for (int c = c0; c < c1; ++c)
                    for (int r = r0; r < r1; ++r) dst[int64_t(c) * dst_ld + r] = src[int64_t(r) * src_ld + c];
            }
    };
    block(0, rows, c8, cols);
    block(r8, rows, 0, c8);
}

template <typename S>
void transpose_planes(int rows, int cols, const S *sr, const S *si, int64_t src_ld, S *dr, S *di, int64_t dst_ld) {
    transpose_plane(rows, cols, sr, src_ld, dr, dst_ld);
    transpose_plane(rows, cols, si, src_ld, di, dst_ld);
}

// One thread's buffers, in one block of memory (asked for as transparent huge pages on Linux, so that
// the first touch after a render, which has evicted them, costs fewer page walks).
template <typename S>
struct Workspace {
    S *base = nullptr;
    size_t capacity = 0;  // elements
    std::vector<S> zero;  // a zero row
    Tables<S> tables;
    Workspace() = default;
    Workspace(const Workspace &) = delete;
    Workspace &operator=(const Workspace &) = delete;
    ~Workspace() { std::free(base); }
    S *reserve(size_t elements) {
        if (elements > capacity) {
            std::free(base);
            constexpr size_t huge = size_t(2) << 20;
            const size_t bytes = (elements * sizeof(S) + huge - 1) / huge * huge;
            base = static_cast<S *>(std::aligned_alloc(huge, bytes));
            if (!base) throw std::bad_alloc();
#ifdef MADV_HUGEPAGE
            madvise(base, bytes, MADV_HUGEPAGE);
#endif
            capacity = bytes / sizeof(S);
        }
        return base;
    }
};

template <typename S>
Workspace<S> &workspace() {
    thread_local Workspace<S> ws;
    return ws;
}

// The image accessor: image i is colour channel i % images of view i / images when
// i % images < C, else the mask of that view; value = pred - gt.
template <typename S>
struct Images {
    int V, H, W, C, images;
    const S *pred_rgb, *gt_rgb, *pred_mask, *gt_mask;
    S *grad_rgb, *grad_mask;
    int count() const { return V * images; }
};

// Cells whose mirror -k is not a loss cell, n of them: Z(k) = (r1, i1)[j], Z(-k) = (mr, mi)[j], weight
// cw[j] (the two ranges do not overlap). Returns sum cw * (sa d(A) + sb d(B)); overwrites Z(k) with T(k) = (G_A + i G_B) / 2 and Z(-k)
// with T(-k) = (conj G_A + i conj G_B) / 2, G_A = sa cw d'(A) A, G_B likewise.
template <typename S, bool SMOOTH>
S open_cells(int n, S *r1, S *i1, S *mr, S *mi, const S *cw, S sa, S sb, S eps2) {
    S acc = 0;
#pragma omp simd reduction(+ : acc)
    for (int j = 0; j < n; ++j) {
        const S z1r = r1[j], z1i = i1[j], z2r = mr[j], z2i = mi[j];
        // A = (Z(k) + conj Z(-k)) / 2, B = (Z(k) - conj Z(-k)) / (2 i)
        const S ar = S(0.5) * (z1r + z2r), ai = S(0.5) * (z1i - z2i);
        const S br = S(0.5) * (z1i + z2i), bi = S(-0.5) * (z1r - z2r);
        S ga, gb;
        if constexpr (SMOOTH) {
            const S da = std::sqrt(ar * ar + ai * ai + eps2), db = std::sqrt(br * br + bi * bi + eps2);
            acc += cw[j] * (sa * da + sb * db);
            ga = sa * cw[j] / da;
            gb = sb * cw[j] / db;
        } else {
            acc += cw[j] * (sa * (ar * ar + ai * ai) + sb * (br * br + bi * bi));
            ga = 2 * sa * cw[j];
            gb = 2 * sb * cw[j];
        }
        const S gar = ga * ar, gai = ga * ai, gbr = gb * br, gbi = gb * bi;
        r1[j] = S(0.5) * (gar - gbi);
        i1[j] = S(0.5) * (gai + gbr);
        mr[j] = S(0.5) * (gar + gbi);
        mi[j] = S(0.5) * (-gai + gbr);
    }
    return acc;
}

// Two loss cells that are each other's mirror, Z(k) = z1 and Z(-k) = z2, weights cw1 and cw2 (or one
// cell that is its own mirror: same location, then A and B are real). A(-k) = conj A(k), so both
// cells have the same distance; H(G_A)(k) = (cw1 + cw2) / 2 * sa d'(A) A, H(G_A)(-k) its conjugate.
template <typename S>
S mirror_cells(S *z1r, S *z1i, S *z2r, S *z2i, S cw1, S cw2, S sa, S sb, S eps2, bool smooth) {
    const bool same = z1r == z2r;
    const S ar = S(0.5) * (*z1r + *z2r), ai = S(0.5) * (*z1i - *z2i);
    const S br = S(0.5) * (*z1i + *z2i), bi = S(-0.5) * (*z1r - *z2r);
    const S w = same ? cw1 : cw1 + cw2, half = same ? cw1 : S(0.5) * (cw1 + cw2);
    S da, db, loss;
    if (smooth) {
        const S na = std::sqrt(ar * ar + ai * ai + eps2), nb = std::sqrt(br * br + bi * bi + eps2);
        loss = w * (sa * na + sb * nb);
        da = sa * half / na;
        db = sb * half / nb;
    } else {
        loss = w * (sa * (ar * ar + ai * ai) + sb * (br * br + bi * bi));
        da = 2 * sa * half;
        db = 2 * sb * half;
    }
    const S gar = da * ar, gai = da * ai, gbr = db * br, gbi = db * bi;
    *z1r = gar - gbi;
    *z1i = gai + gbr;
    *z2r = gar + gbi;  // for one self-mirrored cell ai = bi = 0 and both writes agree
    *z2i = -gai + gbr;
    return loss;
}

template <typename S>
double fused(const Images<S> &im, int N, const S *cw, const double *coeff, double eps, bool grad_out, int n_threads,
             int *status) {
    // cw: [P, N+1] cell weights, row ky, column kx
    const int H = im.H, W = im.W, L = std::max(H, W), P = 2 * L;
    const int M = N < L ? 2 * N + 1 : P;  // kept kx: 0..N, then -N..-1 (all P when N = L)
    const int n_open = std::min(N, L - 1);  // kx = 1..n_open pair with -kx in another column
    const int count = im.count(), pairs = (count + 1) / 2;
    const bool smooth = eps > 0;
    const S eps2 = S(eps * eps);
    std::vector<double> partial(pairs, 0.0);
    int failed = 0;
    n_threads = std::max(1, std::min(n_threads, pairs));
#pragma omp parallel for schedule(static) num_threads(n_threads) reduction(| : failed)
    for (int pair = 0; pair < pairs; ++pair) {
        Workspace<S> &ws = workspace<S>();
        if (ws.tables.n != P) ws.tables.build(P);
        if (ws.tables.radices.empty()) {
            failed = 1;
            continue;
        }
        const int64_t ldw = padded_stride<S>(W), ldh = padded_stride<S>(H), ldm = padded_stride<S>(M);
        // Buffers: x0, x1 (row stage) and y0..y3 (column stage); they take turns: y2, y3 are also the row
        // stage's scratch, and y0, y1 hold the images in their own layout when loading and storing.
        const size_t xs = size_t(P) * ldh, ys = std::max({size_t(P) * ldm, size_t(P) * ldh, size_t(H) * ldw});
        S *arena = ws.reserve(2 * xs + 4 * ys);
        S *x_buf[4] = {arena, arena + xs, arena + 2 * xs + 2 * ys, arena + 2 * xs + 3 * ys};
        S *y_buf[4] = {arena + 2 * xs, arena + 2 * xs + ys, arena + 2 * xs + 2 * ys, arena + 2 * xs + 3 * ys};
        ws.zero.assign(size_t(std::max({ldw, ldh, ldm})), S(0));
        const S *zero = ws.zero.data();
        const int ia = 2 * pair, ib = 2 * pair + 1;
        const bool has_b = ib < count;
        const S sa = S(coeff[ia]), sb = has_b ? S(coeff[ib]) : S(0);

        // 1. z = a + i b in the image layout [h][w], transposed to [w][h] for the row stage
        S *gr = y_buf[0], *gi = y_buf[1];  // the images, [h][w]
        auto load = [&](int image, S *dst) {
            const int v = image / im.images, c = image % im.images;
            for (int h = 0; h < H; ++h) {
                S *out = dst + int64_t(h) * ldw;
                const int64_t base = (int64_t(v) * H + h) * W;
                if (c < im.C) {
                    const S *p = im.pred_rgb + base * im.C + c, *g = im.gt_rgb + base * im.C + c;
                    for (int w = 0; w < W; ++w) out[w] = p[int64_t(w) * im.C] - g[int64_t(w) * im.C];
                } else {
#pragma omp simd
                    for (int w = 0; w < W; ++w) out[w] = im.pred_mask[base + w] - im.gt_mask[base + w];
                }
            }
        };
        load(ia, gr);
        if (has_b)
            load(ib, gi);
        else
            for (int h = 0; h < H; ++h) std::fill(gi + int64_t(h) * ldw, gi + int64_t(h) * ldw + W, S(0));
        S *xr = x_buf[0], *xi = x_buf[1];
        transpose_planes<S>(H, W, gr, gi, ldw, xr, xi, ldh);

        // 2. rows: along x (length P, rows w >= W zero), vectorised over h
        int at = stockham<S>(H, ldh, xr, xi, x_buf[2], x_buf[3], ws.tables, S(1), W, P, zero);
        const S *fr = x_buf[2 * at], *fi = x_buf[2 * at + 1];  // [kx][h]
        // 3. the kept kx rows, transposed to [h][column]: kx = 0..N to columns 0..N, and -kx (row P - kx)
        //    to column N + kx for kx = 1..tail (tail = N, or L - 1 when N = L), so that a cell's mirror
        //    column runs in the same direction as the cell's
        S *yr = y_buf[0], *yi = y_buf[1];
        const int tail = M - N - 1, tail_row = P - tail;
        transpose_planes<S>(N + 1, H, fr, fi, ldh, yr, yi, ldm);
        if (tail > 0)
            transpose_planes<S>(tail, H, fr + int64_t(P - 1) * ldh, fi + int64_t(P - 1) * ldh, -ldh, yr + N + 1,
                                yi + N + 1, ldm);
        // 4. columns: along y (length P, rows h >= H zero), vectorised over the M kept kx
        at = stockham<S>(M, ldm, yr, yi, y_buf[2], y_buf[3], ws.tables, S(1), H, P, zero);
        S *zr = y_buf[2 * at], *zi = y_buf[2 * at + 1];  // Z[ky][column]
        S *sr = y_buf[2 * (1 - at)], *si = y_buf[2 * (1 - at) + 1];

        // 5. loss on the half plane kx = 0..N, and the Hermitian-paired gradient spectrum T in place
        // cells (ky, 1..n_open) of row r1, their mirrors (-ky, -kx) in row r2 at columns N+1..N+n_open
        auto open_segment = [&](S *r1r, S *r1i, S *r2r, S *r2i, const S *weights) -> S {
            return smooth ? open_cells<S, true>(n_open, r1r + 1, r1i + 1, r2r + N + 1, r2i + N + 1, weights + 1, sa, sb,
                                                eps2)
                          : open_cells<S, false>(n_open, r1r + 1, r1i + 1, r2r + N + 1, r2i + N + 1, weights + 1, sa,
                                                 sb, eps2);
        };
        double total = 0.0;
        for (int ky = 0; ky <= P / 2; ++ky) {
            const int kym = ky == 0 ? 0 : P - ky;
            S *r1r = zr + int64_t(ky) * ldm, *r1i = zi + int64_t(ky) * ldm;
            S *r2r = zr + int64_t(kym) * ldm, *r2i = zi + int64_t(kym) * ldm;
            const S *w1 = cw + int64_t(ky) * (N + 1), *w2 = cw + int64_t(kym) * (N + 1);
            S acc = mirror_cells<S>(r1r, r1i, r2r, r2i, w1[0], w2[0], sa, sb, eps2, smooth);  // kx = 0
            if (N >= L) acc += mirror_cells<S>(r1r + L, r1i + L, r2r + L, r2i + L, w1[L], w2[L], sa, sb, eps2, smooth);
            if (n_open > 0) {
                acc += open_segment(r1r, r1i, r2r, r2i, w1);
                if (kym != ky) acc += open_segment(r2r, r2i, r1r, r1i, w2);
            }
            total += double(acc);
        }
        partial[pair] = total;
        if (!grad_out) continue;

        // 6. inverse columns (along ky), rows h < H used
        at = stockham<S>(M, ldm, zr, zi, sr, si, ws.tables, S(-1), 0, 0, zero);
        const S *tr = at ? sr : zr, *ti = at ? si : zi;  // [h][column]
        // 7. back to [kx][h] (rows N+1 .. P-tail-1 are zero: skipped), inverse rows (along kx), w < W used
        S *ur = x_buf[0], *ui = x_buf[1];
        transpose_planes<S>(H, N + 1, tr, ti, ldm, ur, ui, ldh);
        if (tail > 0)
            transpose_planes<S>(H, tail, tr + N + 1, ti + N + 1, ldm, ur + int64_t(P - 1) * ldh,
                                ui + int64_t(P - 1) * ldh, -ldh);
        at = stockham<S>(H, ldh, ur, ui, x_buf[2], x_buf[3], ws.tables, S(-1), N + 1, tail_row, zero);
        const S *vr = x_buf[2 * at], *vi = x_buf[2 * at + 1];  // a_grad + i b_grad, [w][h]
        transpose_planes<S>(W, H, vr, vi, ldh, gr, gi, ldw);
        auto store = [&](int image, const S *src) {
            const int v = image / im.images, c = image % im.images;
            for (int h = 0; h < H; ++h) {
                const S *in = src + int64_t(h) * ldw;
                const int64_t base = (int64_t(v) * H + h) * W;
                if (c < im.C) {
                    S *out = im.grad_rgb + base * im.C + c;
                    for (int w = 0; w < W; ++w) out[int64_t(w) * im.C] = in[w];
                } else {
#pragma omp simd
                    for (int w = 0; w < W; ++w) im.grad_mask[base + w] = in[w];
                }
            }
        };
        store(ia, gr);
        if (has_b) store(ib, gi);
    }
    *status = failed ? -1 : 0;
    double total = 0.0;
    for (int pair = 0; pair < pairs; ++pair) total += partial[pair];  // fixed order
    return total;
}

}  // namespace

#define ST_FUSED_EXPORT(S, SUFFIX)                                                                         \
    extern "C" double st_spectral_fused_##SUFFIX(int V, int H, int W, int C, const S *pred_rgb,            \
                                                 const S *gt_rgb, const S *pred_mask, const S *gt_mask,    \
                                                 int N, const S *factor, const int32_t *band,              \
                                                 const double *w, const double *coeff, double eps,         \
                                                 S *grad_rgb, S *grad_mask, int n_threads, int *status) {  \
        const int P = 2 * std::max(H, W);                                                                 \
        std::vector<S> cw(size_t(N + 1) * P); /* [ky][kx] from the [kx][ky] factor and band */            \
        for (int kx = 0; kx <= N; ++kx)                                                                   \
            for (int ky = 0; ky < P; ++ky)                                                                \
                cw[size_t(ky) * (N + 1) + kx] = factor[size_t(kx) * P + ky] * S(w[band[size_t(kx) * P + ky]]); \
        Images<S> im{V, H, W, C, C + (pred_mask ? 1 : 0), pred_rgb, gt_rgb, pred_mask, gt_mask,           \
                     grad_rgb, grad_mask};                                                                \
        return fused<S>(im, N, cw.data(), coeff, eps, grad_rgb != nullptr, n_threads, status);            \
    }

ST_FUSED_EXPORT(float, f32)
ST_FUSED_EXPORT(double, f64)
