// Skinning on the CPU: the per-Gaussian end, fused, forward and backward (the C++ twin of the torch
// lines at the end of ../control_points.py's ``skin``), and the blend before it (`blend`'s sparse
// products; below). The tests compare each with its torch twin.
//
// Given each Gaussian's blend of its control points' motion table, mixed [N, 16] = (A [3x3] =
// sum_k w_k (R_k - I), b [3] = sum_k w_k (dc_k - (R_k - I) c_k), dq [4] = sum_k w_k (q_k - (1,0,0,0))):
//     mean'  = mean + A mean + b
//     quat'  = normalise(dq + (1, 0, 0, 0)) (x) quat        (Hamilton product, w x y z)
// In torch these are some 40 small ops forward and 60 backward on [N] tensors, each a few
// microseconds whatever N (about 1 ms a step at 3,000 Gaussians); here one pass each way.
//
// Layouts (row-major, contiguous; S float or double): mixed [N, 16], means [N, 3], quats [N, 4],
// outputs new_means [N, 3], new_quats [N, 4]; backward: v_new_means, v_new_quats -> v_mixed [N, 16],
// v_means [N, 3], v_quats [N, 4] (written; either may be null when the canonical asset is fixed, as
// in tracking: then it is neither computed nor written). OpenMP over the Gaussians from kSerialBelow on.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

namespace {

constexpr int64_t kSerialBelow = 16384;

template <typename S>
void skin_fwd(int64_t N, const S *mixed, const S *means, const S *quats, S *new_means, S *new_quats, int n_threads) {
    const int nt = N < kSerialBelow ? 1 : std::max(1, n_threads);
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int64_t n = 0; n < N; ++n) {
        const S *m = mixed + 16 * n, *p = means + 3 * n, *b = quats + 4 * n;
        for (int r = 0; r < 3; ++r)
            new_means[3 * n + r] = p[r] + (m[3 * r] * p[0] + m[3 * r + 1] * p[1] + m[3 * r + 2] * p[2]) + m[9 + r];
        S a[4] = {m[12] + S(1), m[13], m[14], m[15]};
        const S norm = std::max(std::sqrt(a[0] * a[0] + a[1] * a[1] + a[2] * a[2] + a[3] * a[3]), S(1e-12));
        for (int k = 0; k < 4; ++k) a[k] /= norm;
        S *o = new_quats + 4 * n;
        o[0] = a[0] * b[0] - a[1] * b[1] - a[2] * b[2] - a[3] * b[3];
        o[1] = a[0] * b[1] + a[1] * b[0] + a[2] * b[3] - a[3] * b[2];
        o[2] = a[0] * b[2] - a[1] * b[3] + a[2] * b[0] + a[3] * b[1];
        o[3] = a[0] * b[3] + a[1] * b[2] - a[2] * b[1] + a[3] * b[0];
    }
}

template <typename S>
void skin_bwd(int64_t N, const S *mixed, const S *means, const S *quats, const S *v_new_means, const S *v_new_quats,
              S *v_mixed, S *v_means, S *v_quats, int n_threads) {
    const int nt = N < kSerialBelow ? 1 : std::max(1, n_threads);
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int64_t n = 0; n < N; ++n) {
        const S *m = mixed + 16 * n, *p = means + 3 * n, *b = quats + 4 * n;
        const S *gm = v_new_means + 3 * n, *g = v_new_quats + 4 * n;
        S *vm = v_mixed + 16 * n;
        if (gm[0] == S(0) && gm[1] == S(0) && gm[2] == S(0) && g[0] == S(0) && g[1] == S(0) && g[2] == S(0) &&
            g[3] == S(0)) {
            // no gradient reached this Gaussian (hidden or off screen: most of a dense asset); every
            // output below is a product with a zero, so write the zeros (their sign aside) directly
            std::fill(vm, vm + 16, S(0));
            if (v_means) std::fill(v_means + 3 * n, v_means + 3 * n + 3, S(0));
            if (v_quats) std::fill(v_quats + 4 * n, v_quats + 4 * n + 4, S(0));
            continue;
        }
        // mean' = mean + A mean + b
        for (int r = 0; r < 3; ++r) {
            for (int c = 0; c < 3; ++c) vm[3 * r + c] = gm[r] * p[c];
            vm[9 + r] = gm[r];
        }
        if (v_means)
            for (int c = 0; c < 3; ++c) v_means[3 * n + c] = gm[c] + m[c] * gm[0] + m[3 + c] * gm[1] + m[6 + c] * gm[2];
        // quat' = a (x) b with a = normalise(dq + (1, 0, 0, 0))
        const S raw[4] = {m[12] + S(1), m[13], m[14], m[15]};
        const S length = std::sqrt(raw[0] * raw[0] + raw[1] * raw[1] + raw[2] * raw[2] + raw[3] * raw[3]);
        const S norm = std::max(length, S(1e-12));
        S a[4];
        for (int k = 0; k < 4; ++k) a[k] = raw[k] / norm;
        const S ga[4] = {g[0] * b[0] + g[1] * b[1] + g[2] * b[2] + g[3] * b[3],
                         -g[0] * b[1] + g[1] * b[0] - g[2] * b[3] + g[3] * b[2],
                         -g[0] * b[2] + g[1] * b[3] + g[2] * b[0] - g[3] * b[1],
                         -g[0] * b[3] - g[1] * b[2] + g[2] * b[1] + g[3] * b[0]};
        if (v_quats) {
            S *vq = v_quats + 4 * n;
            vq[0] = g[0] * a[0] + g[1] * a[1] + g[2] * a[2] + g[3] * a[3];
            vq[1] = -g[0] * a[1] + g[1] * a[0] + g[2] * a[3] - g[3] * a[2];
            vq[2] = -g[0] * a[2] - g[1] * a[3] + g[2] * a[0] + g[3] * a[1];
            vq[3] = -g[0] * a[3] + g[1] * a[2] - g[2] * a[1] + g[3] * a[0];
        }
        if (length > S(1e-12)) {  // through the normalisation
            const S dot = a[0] * ga[0] + a[1] * ga[1] + a[2] * ga[2] + a[3] * ga[3];
            for (int k = 0; k < 4; ++k) vm[12 + k] = (ga[k] - a[k] * dot) / norm;
        } else {  // the norm clamped at 1e-12: a constant
            for (int k = 0; k < 4; ++k) vm[12 + k] = ga[k] / norm;
        }
    }
}

// The blend before it: out [N, C] = sum_k weights[n, k] * table[index[n, k]] (k ascending), and its
// gradient with respect to the table, grad_table [J, C] = sum_n sum_k weights[n, k] * grad[n] over the
// (n, k) with index[n, k] = j. The gradient streams the Gaussians once and adds into the small table:
// the Gaussians in fixed chunks of kBlendChunk, each chunk into its own copy of the table (partials
// [chunks, J, C], in chunk order n ascending), then the copies summed in chunk order, so the same sums
// come in the same order at any number of threads. (Gathering each control point's Gaussians from W^T's
// rows instead reads one cache line per entry at random: 3x slower at 300k Gaussians.)

constexpr int64_t kBlendChunk = 4096;

template <typename S>
void blend_fwd(int64_t N, int K, int C, const int64_t *index, const S *weights, const S *table, S *out, int n_threads) {
    const int nt = N < kSerialBelow ? 1 : std::max(1, n_threads);
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int64_t n = 0; n < N; ++n) {
        S *o = out + C * n;
        for (int c = 0; c < C; ++c) o[c] = S(0);
        for (int k = 0; k < K; ++k) {
            const S w = weights[K * n + k];
            const S *row = table + C * index[K * n + k];
            for (int c = 0; c < C; ++c) o[c] += w * row[c];
        }
    }
}

template <typename S>
void blend_bwd_table(int64_t N, int K, int C, int64_t J, const int64_t *index, const S *weights, const S *grad,
                     S *grad_table, int n_threads) {
    const int64_t chunks = (N + kBlendChunk - 1) / kBlendChunk;
    std::vector<S> scratch(static_cast<size_t>(chunks * J * C));  // the chunks' tables (12.5 MB at 1M Gaussians)
    S *partials = scratch.data();
    const int nt = N < kSerialBelow ? 1 : std::max(1, n_threads);
#pragma omp parallel num_threads(nt)
    {
#pragma omp for schedule(static)
        for (int64_t b = 0; b < chunks; ++b) {
            S *part = partials + b * J * C;
            std::fill(part, part + J * C, S(0));
            const int64_t end = std::min(N, (b + 1) * kBlendChunk);
            for (int64_t n = b * kBlendChunk; n < end; ++n) {
                const S *g = grad + C * n;
                // a row of zeros (a Gaussian no pixel saw) adds nothing: the sums start at +0 and never
                // become -0, so skipping it keeps every bit
                if (std::all_of(g, g + C, [](S x) { return x == S(0); })) continue;
                for (int k = 0; k < K; ++k) {
                    const S w = weights[K * n + k];
                    S *row = part + C * index[K * n + k];
                    for (int c = 0; c < C; ++c) row[c] += w * g[c];
                }
            }
        }
#pragma omp for schedule(static)
        for (int64_t j = 0; j < J; ++j) {
            S *o = grad_table + C * j;
            for (int c = 0; c < C; ++c) o[c] = S(0);
            for (int64_t b = 0; b < chunks; ++b) {
                const S *row = partials + (b * J + j) * C;
                for (int c = 0; c < C; ++c) o[c] += row[c];
            }
        }
    }
}

}  // namespace

#define ST_EXPORT(S, SUFFIX)                                                                          \
    extern "C" void st_skin_fwd_##SUFFIX(int64_t N, const S *mixed, const S *means, const S *quats,   \
                                         S *new_means, S *new_quats, int n_threads) {                 \
        skin_fwd<S>(N, mixed, means, quats, new_means, new_quats, n_threads);                         \
    }                                                                                                 \
    extern "C" void st_skin_bwd_##SUFFIX(int64_t N, const S *mixed, const S *means, const S *quats,   \
                                         const S *v_new_means, const S *v_new_quats, S *v_mixed,      \
                                         S *v_means, S *v_quats, int n_threads) {                     \
        skin_bwd<S>(N, mixed, means, quats, v_new_means, v_new_quats, v_mixed, v_means, v_quats,      \
                    n_threads);                                                                       \
    }                                                                                                 \
    extern "C" void st_blend_fwd_##SUFFIX(int64_t N, int K, int C, int64_t J, const int64_t *index,     \
                                          const S *weights, const S *table, S *out, int n_threads) {  \
        (void)J;                                                                                      \
        blend_fwd<S>(N, K, C, index, weights, table, out, n_threads);                                 \
    }                                                                                                 \
    extern "C" void st_blend_bwd_table_##SUFFIX(int64_t N, int K, int C, int64_t J, const int64_t *index, \
                                                const S *weights, const S *grad, S *grad_table,       \
                                                int n_threads) {                                      \
        blend_bwd_table<S>(N, K, C, J, index, weights, grad, grad_table, n_threads);                  \
    }

ST_EXPORT(float, f32)
ST_EXPORT(double, f64)
