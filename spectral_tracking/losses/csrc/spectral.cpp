// The spectral moment loss and its gradient on the CPU in one call (../spectral.py,
// _NativeSpectralLoss; the torch-op twin is _FFTSpectralLoss there).
//
// Why one call: with torch's FFTs the loss is a dozen passes over buffers of about 1 MB each at
// 128 x 128 (transforms, transposes, modulus, weighting, the backward's inverse transforms), with a
// dispatch and an allocation each; after a render has evicted them from the cache these passes cost
// as much as the transforms. Here each pair of images goes through all of it in the core's cache.
//
// Layouts (row-major, contiguous; S is float or double):
//   pred_rgb, gt_rgb, grad_rgb  [V, H, W, C]     (the renderer's layout)
//   pred_mask, gt_mask, grad_mask  [V, H, W]     (or null: no mask term)
//   factor [N+1, P]  per-cell weight without the band weight (band averaging, 1 / (H W), the doubling
//                    of kx > 0; 0 for cells outside the band square), P = 2 max(H, W), row kx,
//                    column ky mod P
//   band   [N+1, P]  int32 band index of each cell
//   w      [K]       band weights w_k(t), double
//   coeff  [V (C+1)] per-image coefficient (1 / (V C) for colour, lambda_mask / V for the mask), double
//   d(X) = sqrt(|X|^2 + eps^2) for eps > 0 (smoothed l1), |X|^2 for eps == 0 (l2)
//
// Threads: OpenMP over image pairs (the library binds to the libgomp torch has loaded, as
// ../../render/csrc does); the loss is summed over per-pair partial sums in a fixed order, so the
// result does not depend on the thread count.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

// ---- the whole loss and its gradient in one call ------------------------------------------------
//
// st_spectral_fused: the spectral loss of every image and, when grad_rgb is given, its gradient with
// respect to the images (pred; the gradient with respect to gt is its negative).
//
// Two real images a and b (colour channels and masks, in order) go through one complex 2D transform
// of z = a + i b, zero padded to P x P (P = 2L): columns first (length P along y, vectorised over the
// W image columns), then rows (length P along x, vectorised over all P values of ky). With Z = F(z),
// the transforms of the two real images are A(k) = (Z(k) + conj Z(-k)) / 2 and
// B(k) = (Z(k) - conj Z(-k)) / (2 i). The loss needs them on the half plane kx = 0..N (cells as in
// ../spectral.py: factor and band per [N+1, P] cell, ky taken mod P).
//
// Gradient: for l = sum cw * d(A) (and likewise B), dl/da(p) = Re sum_{half plane} G(k) e^{+i k.p}
// with G = cw * A / d(A) (l1) or 2 cw A (l2) (the same identity as the staged backward, whose
// irfft doubling and 0.5 row scale cancel). Re of an inverse transform of a half-plane G is the
// inverse transform of its Hermitian part H(G)(k) = (G(k) + conj G(-k)) / 2, so a and b again share
// one inverse transform: a_grad + i b_grad = F^-1(H(G_A) + i H(G_B)) (unnormalised), which is built
// in place of Z, row kx together with its mirror row -kx.
//
// Transforms: Stockham autosort (no bit reversal), radices 4, 2, 3 and 5, along the rows of a
// split-complex [n][ld] array, each butterfly a loop over the ld-padded columns (SIMD). Row strides
// are padded to an odd multiple of 32 bytes: power-of-two strides put a butterfly's inputs in the
// same cache sets (measured 2-3x slower). The first stage skips rows known to be zero (the padding).
// Lengths with other prime factors return -1 (the caller uses the staged path).

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
            if (r == 4) {
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
                    const S ar = x0r[j] + x2r[j], ai = x0i[j] + x2i[j], br = x0r[j] - x2r[j], bi = x0i[j] - x2i[j];
                    const S cr = x1r[j] + x3r[j], ci = x1i[j] + x3i[j], dr = x1r[j] - x3r[j], di = x1i[j] - x3i[j];
                    // (x1 - x3) times w^{n/4} = -sign * i (w = e^{-sign 2 pi i / n})
                    const S er = sign * di, ei = -sign * dr;
                    const S z1r = br + er, z1i = bi + ei, z2r = ar - cr, z2i = ai - ci, z3r = br - er, z3i = bi - ei;
                    y0r[j] = ar + cr;
                    y0i[j] = ai + ci;
                    y1r[j] = z1r * w1r - z1i * w1i;
                    y1i[j] = z1r * w1i + z1i * w1r;
                    y2r[j] = z2r * w2r - z2i * w2i;
                    y2i[j] = z2r * w2i + z2i * w2r;
                    y3r[j] = z3r * w3r - z3i * w3i;
                    y3i[j] = z3r * w3i + z3i * w3r;
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
            } else {  // 3 or 5: the small DFT written as a sum
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

// dst[c][r] = src[r][c] for r < rows, c < cols, both split-complex planes.
template <typename S>
void transpose_planes(int rows, int cols, const S *sr, const S *si, int64_t src_ld, S *dr, S *di, int64_t dst_ld) {
    constexpr int T = 16;
    for (int r0 = 0; r0 < rows; r0 += T)
        for (int c0 = 0; c0 < cols; c0 += T) {
            const int r1 = std::min(rows, r0 + T), c1 = std::min(cols, c0 + T);
            for (int c = c0; c < c1; ++c)
                for (int r = r0; r < r1; ++r) {
                    dr[int64_t(c) * dst_ld + r] = sr[int64_t(r) * src_ld + c];
                    di[int64_t(c) * dst_ld + r] = si[int64_t(r) * src_ld + c];
                }
        }
}

template <typename S>
struct Workspace {
    std::vector<S> y[4], x[4], zero, mirror[2];  // column stage (re, im, scratch re, im), row stage, a zero row
    Tables<S> tables;
};

template <typename S>
Workspace<S> &workspace() {
    thread_local Workspace<S> ws;
    return ws;
}

// Cell loss and gradient. d(A) = sqrt(|A|^2 + eps^2) (eps > 0) or |A|^2; returns cw * d(A) and
// sets g = cw * d'(A) (so that G = g * A).
template <typename S>
inline S cell(S ar, S ai, S cw, S eps2, bool smooth, S &g) {
    const S p = ar * ar + ai * ai;
    if (smooth) {
        const S d = std::sqrt(p + eps2);
        g = cw / d;
        return cw * d;
    }
    g = 2 * cw;
    return cw * p;
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

template <typename S>
double fused(const Images<S> &im, int N, const S *cell_w, const double *coeff, double eps, bool grad_out,
             int n_threads, int *status) {
    const int H = im.H, W = im.W, L = std::max(H, W), P = 2 * L;
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
        const int64_t ldw = padded_stride<S>(W), ldp = padded_stride<S>(P);
        for (auto &v : ws.y) v.resize(size_t(P) * ldw);
        for (auto &v : ws.x) v.resize(size_t(P) * ldp);
        ws.zero.assign(size_t(std::max(ldw, ldp)), S(0));
        for (auto &v : ws.mirror) v.resize(size_t(P));
        const S *zero = ws.zero.data();
        const int ia = 2 * pair, ib = 2 * pair + 1;
        const bool has_b = ib < count;
        const double ca = coeff[ia], cb = has_b ? coeff[ib] : 0.0;

        // 1. z = a + i b into the column-stage input, rows h < H (rows >= H are zero: skipped).
        S *yr = ws.y[0].data(), *yi = ws.y[1].data();
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
        load(ia, yr);
        if (has_b) {
            load(ib, yi);
        } else {
            for (int h = 0; h < H; ++h) std::fill(yi + int64_t(h) * ldw, yi + int64_t(h) * ldw + W, S(0));
        }
        // 2. columns: along y, length P, rows >= H zero
        int at = stockham<S>(W, ldw, yr, yi, ws.y[2].data(), ws.y[3].data(), ws.tables, S(1), H, P, zero);
        const S *cr = ws.y[2 * at].data(), *ci = ws.y[2 * at + 1].data();
        // 3. transpose to [w][ky], then rows: along x, length P, rows w >= W zero
        S *xr = ws.x[0].data(), *xi = ws.x[1].data();
        transpose_planes<S>(P, W, cr, ci, ldw, xr, xi, ldp);
        at = stockham<S>(P, ldp, xr, xi, ws.x[2].data(), ws.x[3].data(), ws.tables, S(1), W, P, zero);
        S *zr = ws.x[2 * at].data(), *zi = ws.x[2 * at + 1].data();  // Z[kx][ky]
        S *sr = ws.x[2 * (1 - at)].data(), *si = ws.x[2 * (1 - at) + 1].data();  // scratch

        // 4. loss on the half plane, and the Hermitian-paired gradient spectrum T in place of Z
        double total = 0.0;
        const S sa = S(ca), sb = S(cb);
        S *mr = ws.mirror[0].data(), *mi = ws.mirror[1].data();
        auto row_pair = [&](int kx) {  // kx in [1, L-1]: rows kx and P - kx
            const int km = P - kx;
            S *r1 = zr + int64_t(kx) * ldp, *i1 = zi + int64_t(kx) * ldp;
            S *r2 = zr + int64_t(km) * ldp, *i2 = zi + int64_t(km) * ldp;
            const S *cw = cell_w + int64_t(kx) * P;
            // the mirror row in ky order (Z(-k) at index ky), so that the loop below is contiguous
            mr[0] = r2[0];
            mi[0] = i2[0];
            for (int ky = 1; ky < P; ++ky) {
                mr[ky] = r2[P - ky];
                mi[ky] = i2[P - ky];
            }
            S acc = 0;
            if (smooth) {
#pragma omp simd reduction(+ : acc)
                for (int ky = 0; ky < P; ++ky) {
                    const S z1r = r1[ky], z1i = i1[ky], z2r = mr[ky], z2i = mi[ky];
                    // A = (Z(k) + conj Z(-k)) / 2, B = (Z(k) - conj Z(-k)) / (2 i)
                    const S ar = S(0.5) * (z1r + z2r), ai = S(0.5) * (z1i - z2i);
                    const S br = S(0.5) * (z1i + z2i), bi = S(-0.5) * (z1r - z2r);
                    const S da = std::sqrt(ar * ar + ai * ai + eps2), db = std::sqrt(br * br + bi * bi + eps2);
                    acc += cw[ky] * (sa * da + sb * db);
                    const S ga = sa * cw[ky] / da, gb = sb * cw[ky] / db;
                    // G_A = ga A, G_B = gb B; T(k) = (G_A + i G_B) / 2, T(-k) = (conj G_A + i conj G_B) / 2
                    const S gar = ga * ar, gai = ga * ai, gbr = gb * br, gbi = gb * bi;
                    r1[ky] = S(0.5) * (gar - gbi);
                    i1[ky] = S(0.5) * (gai + gbr);
                    mr[ky] = S(0.5) * (gar + gbi);
                    mi[ky] = S(0.5) * (-gai + gbr);
                }
            } else {
#pragma omp simd reduction(+ : acc)
                for (int ky = 0; ky < P; ++ky) {
                    const S z1r = r1[ky], z1i = i1[ky], z2r = mr[ky], z2i = mi[ky];
                    const S ar = S(0.5) * (z1r + z2r), ai = S(0.5) * (z1i - z2i);
                    const S br = S(0.5) * (z1i + z2i), bi = S(-0.5) * (z1r - z2r);
                    acc += cw[ky] * (sa * (ar * ar + ai * ai) + sb * (br * br + bi * bi));
                    const S ga = 2 * sa * cw[ky], gb = 2 * sb * cw[ky];
                    const S gar = ga * ar, gai = ga * ai, gbr = gb * br, gbi = gb * bi;
                    r1[ky] = S(0.5) * (gar - gbi);
                    i1[ky] = S(0.5) * (gai + gbr);
                    mr[ky] = S(0.5) * (gar + gbi);
                    mi[ky] = S(0.5) * (-gai + gbr);
                }
            }
            r2[0] = mr[0];
            i2[0] = mi[0];
            for (int ky = 1; ky < P; ++ky) {
                r2[P - ky] = mr[ky];
                i2[P - ky] = mi[ky];
            }
            total += double(acc);
        };
        auto self_row = [&](int kx) {  // kx = 0 or L: its own mirror; cells ky and -ky paired
            S *rr = zr + int64_t(kx) * ldp, *ii = zi + int64_t(kx) * ldp;
            const S *cw = cell_w + int64_t(kx) * P;
            S acc = 0;
            for (int ky = 0; ky <= P / 2; ++ky) {
                const int kym = ky == 0 ? 0 : P - ky;
                const S z1r = rr[ky], z1i = ii[ky], z2r = rr[kym], z2i = ii[kym];
                const S ar = S(0.5) * (z1r + z2r), ai = S(0.5) * (z1i - z2i);
                const S br = S(0.5) * (z1i + z2i), bi = S(-0.5) * (z1r - z2r);
                // A(-ky) = conj A(ky): the same distance; both cells' weights
                const S w = kym == ky ? cw[ky] : cw[ky] + cw[kym];
                const S half = kym == ky ? cw[ky] : S(0.5) * (cw[ky] + cw[kym]);
                S ga, gb;
                const S la = cell(ar, ai, w, eps2, smooth, ga), lb = cell(br, bi, w, eps2, smooth, gb);
                acc += sa * la + sb * lb;
                // T(ky) = (G_A(ky) + conj G_A(-ky)) / 2 + i (...) = half * (g_a A + i g_b B) with g = d'
                S da, db;
                cell(ar, ai, half, eps2, smooth, da);
                cell(br, bi, half, eps2, smooth, db);
                da *= sa;
                db *= sb;
                const S gar = da * ar, gai = da * ai, gbr = db * br, gbi = db * bi;
                rr[ky] = gar - gbi;
                ii[ky] = gai + gbr;
                rr[kym] = gar + gbi;
                ii[kym] = -gai + gbr;
            }
            total += double(acc);
        };
        self_row(0);
        for (int kx = 1; kx <= std::min(N, L - 1); ++kx) row_pair(kx);
        if (N >= L) self_row(L);
        partial[pair] = total;
        if (!grad_out) continue;

        // 5. inverse rows (along kx; rows N+1 .. P-N-1 are zero), then columns (along ky)
        at = stockham<S>(P, ldp, zr, zi, sr, si, ws.tables, S(-1), N + 1, P - N, zero);
        const S *tr = at ? sr : zr, *ti = at ? si : zi;  // t[w][ky], rows w < W used
        S *ur = ws.y[0].data(), *ui = ws.y[1].data();
        transpose_planes<S>(W, P, tr, ti, ldp, ur, ui, ldw);
        at = stockham<S>(W, ldw, ur, ui, ws.y[2].data(), ws.y[3].data(), ws.tables, S(-1), 0, 0, zero);
        const S *gr = ws.y[2 * at].data(), *gi = ws.y[2 * at + 1].data();  // a_grad + i b_grad, [h][w]
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
        const int L = std::max(H, W), P = 2 * L;                                                          \
        std::vector<S> cell_w(size_t(N + 1) * P);                                                         \
        for (size_t i = 0; i < cell_w.size(); ++i) cell_w[i] = factor[i] * S(w[band[i]]);                 \
        Images<S> im{V, H, W, C, C + (pred_mask ? 1 : 0), pred_rgb, gt_rgb, pred_mask, gt_mask,           \
                     grad_rgb, grad_mask};                                                                \
        return fused<S>(im, N, cell_w.data(), coeff, eps, grad_rgb != nullptr, n_threads, status);        \
    }

ST_FUSED_EXPORT(float, f32)
ST_FUSED_EXPORT(double, f64)
