// Skinning on the CPU: the per-Gaussian end, fused, forward and backward (the C++ twin of the torch
// lines at the end of ../control_points.py's ``skin``), the blend before it (`blend`'s sparse
// products; below), and both in one pass each way (``st_skin_fused_*``, what tracking takes: the
// weights and the canonical asset are constants there). The tests compare each with its torch twin,
// and the fused pass with the two steps (the same bits, float32 and float64, any K).
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
constexpr int kMix = 16;  // a Gaussian's blend of the motion table: A (9), b (3), dq (4)

// One Gaussian's end, forward: mean' and quat' from its blend m [16] (A, b, dq), mean p [3] and quat b [4].
template <typename S>
inline void tail_fwd(const S *m, const S *p, const S *b, S *new_mean, S *o) {
    for (int r = 0; r < 3; ++r)
        new_mean[r] = p[r] + (m[3 * r] * p[0] + m[3 * r + 1] * p[1] + m[3 * r + 2] * p[2]) + m[9 + r];
    S a[4] = {m[12] + S(1), m[13], m[14], m[15]};
    const S norm = std::max(std::sqrt(a[0] * a[0] + a[1] * a[1] + a[2] * a[2] + a[3] * a[3]), S(1e-12));
    for (int k = 0; k < 4; ++k) a[k] /= norm;
    o[0] = a[0] * b[0] - a[1] * b[1] - a[2] * b[2] - a[3] * b[3];
    o[1] = a[0] * b[1] + a[1] * b[0] + a[2] * b[3] - a[3] * b[2];
    o[2] = a[0] * b[2] - a[1] * b[3] + a[2] * b[0] + a[3] * b[1];
    o[3] = a[0] * b[3] + a[1] * b[2] - a[2] * b[1] + a[3] * b[0];
}

// Whether no gradient reached a Gaussian (hidden or off screen: most of a dense asset): every gradient
// of its end is then a product with a zero.
template <typename S>
inline bool no_gradient(const S *gm, const S *g) {
    return gm[0] == S(0) && gm[1] == S(0) && gm[2] == S(0) && g[0] == S(0) && g[1] == S(0) && g[2] == S(0) &&
           g[3] == S(0);
}

// One Gaussian's end, backward: vm [16] (the blend's gradient) and, where not null, v_mean [3] and
// v_quat [4], from the gradients gm [3] and g [4] of mean' and quat'.
template <typename S>
inline void tail_bwd(const S *m, const S *p, const S *b, const S *gm, const S *g, S *vm, S *v_mean, S *v_quat) {
    // mean' = mean + A mean + b
    for (int r = 0; r < 3; ++r) {
        for (int c = 0; c < 3; ++c) vm[3 * r + c] = gm[r] * p[c];
        vm[9 + r] = gm[r];
    }
    if (v_mean)
        for (int c = 0; c < 3; ++c) v_mean[c] = gm[c] + m[c] * gm[0] + m[3 + c] * gm[1] + m[6 + c] * gm[2];
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
    if (v_quat) {
        v_quat[0] = g[0] * a[0] + g[1] * a[1] + g[2] * a[2] + g[3] * a[3];
        v_quat[1] = -g[0] * a[1] + g[1] * a[0] + g[2] * a[3] - g[3] * a[2];
        v_quat[2] = -g[0] * a[2] - g[1] * a[3] + g[2] * a[0] + g[3] * a[1];
        v_quat[3] = -g[0] * a[3] + g[1] * a[2] - g[2] * a[1] + g[3] * a[0];
    }
    if (length > S(1e-12)) {  // through the normalisation
        const S dot = a[0] * ga[0] + a[1] * ga[1] + a[2] * ga[2] + a[3] * ga[3];
        for (int k = 0; k < 4; ++k) vm[12 + k] = (ga[k] - a[k] * dot) / norm;
    } else {  // the norm clamped at 1e-12: a constant
        for (int k = 0; k < 4; ++k) vm[12 + k] = ga[k] / norm;
    }
}

template <typename S>
void skin_fwd(int64_t N, const S *mixed, const S *means, const S *quats, S *new_means, S *new_quats, int n_threads) {
    const int nt = N < kSerialBelow ? 1 : std::max(1, n_threads);
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int64_t n = 0; n < N; ++n)
        tail_fwd(mixed + kMix * n, means + 3 * n, quats + 4 * n, new_means + 3 * n, new_quats + 4 * n);
}

template <typename S>
void skin_bwd(int64_t N, const S *mixed, const S *means, const S *quats, const S *v_new_means, const S *v_new_quats,
              S *v_mixed, S *v_means, S *v_quats, int n_threads) {
    const int nt = N < kSerialBelow ? 1 : std::max(1, n_threads);
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int64_t n = 0; n < N; ++n) {
        const S *gm = v_new_means + 3 * n, *g = v_new_quats + 4 * n;
        S *vm = v_mixed + kMix * n;
        if (no_gradient(gm, g)) {  // write the zeros (their sign aside) directly
            std::fill(vm, vm + kMix, S(0));
            if (v_means) std::fill(v_means + 3 * n, v_means + 3 * n + 3, S(0));
            if (v_quats) std::fill(v_quats + 4 * n, v_quats + 4 * n + 4, S(0));
            continue;
        }
        tail_bwd(mixed + kMix * n, means + 3 * n, quats + 4 * n, gm, g, vm, v_means ? v_means + 3 * n : nullptr,
                 v_quats ? v_quats + 4 * n : nullptr);
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

// One Gaussian's blend: o [C] = sum_k w[k] * table[idx[k]] (k ascending), each term a fused multiply-add
// written out: left to the compiler's contraction, the fused pass (C fixed at 16) was vectorised over k
// from K = 8 on with the product rounded before the sum, so its bits differed from the two steps'.
template <typename S>
inline void blend_row(int K, int C, const int64_t *idx, const S *w, const S *table, S *o) {
    for (int c = 0; c < C; ++c) o[c] = S(0);
    for (int k = 0; k < K; ++k) {
        const S *row = table + C * idx[k];
        for (int c = 0; c < C; ++c) o[c] = std::fma(w[k], row[c], o[c]);
    }
}

template <typename S>
void blend_fwd(int64_t N, int K, int C, const int64_t *index, const S *weights, const S *table, S *out, int n_threads) {
    const int nt = N < kSerialBelow ? 1 : std::max(1, n_threads);
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int64_t n = 0; n < N; ++n) blend_row(K, C, index + K * n, weights + K * n, table, out + C * n);
}

// grad_table [J, C] = sum_n sum_k weights[n, k] * g_n over the (n, k) with index[n, k] = j, where
// row_grad(n, scratch) gives g_n [C] (in scratch, which holds kMix values, or elsewhere), or null where
// it is all zeros: a Gaussian no pixel saw adds nothing (the sums start at +0 and never become -0, so
// skipping it keeps every bit). By chunks of kBlendChunk Gaussians, each into its own table, summed in
// chunk order.
template <typename S, typename RowGrad>
void table_gradient(int64_t N, int K, int C, int64_t J, const int64_t *index, const S *weights, S *grad_table,
                    int n_threads, RowGrad row_grad) {
    const int64_t chunks = (N + kBlendChunk - 1) / kBlendChunk;
    std::vector<S> scratch(static_cast<size_t>(chunks * J * C));  // the chunks' tables (12.5 MB at 1M Gaussians)
    S *partials = scratch.data();
    const int nt = N < kSerialBelow ? 1 : std::max(1, n_threads);
#pragma omp parallel num_threads(nt)
    {
        alignas(64) S local[kMix];  // row_grad writes at most kMix values here (C = kMix: the fused pass)
#pragma omp for schedule(static)
        for (int64_t b = 0; b < chunks; ++b) {
            S *part = partials + b * J * C;
            std::fill(part, part + J * C, S(0));
            const int64_t end = std::min(N, (b + 1) * kBlendChunk);
            for (int64_t n = b * kBlendChunk; n < end; ++n) {
                const S *g = row_grad(n, local);
                if (g == nullptr) continue;
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

template <typename S>
void blend_bwd_table(int64_t N, int K, int C, int64_t J, const int64_t *index, const S *weights, const S *grad,
                     S *grad_table, int n_threads) {
    table_gradient(N, K, C, J, index, weights, grad_table, n_threads, [&](int64_t n, S *) -> const S * {
        const S *g = grad + C * n;
        return std::all_of(g, g + C, [](S x) { return x == S(0); }) ? nullptr : g;
    });
}

// The blend and the end in one pass each way, for tracking, where the weights and the canonical asset
// are constants: the blend (m [16]) is never written as an [N, 16] array (at 1M Gaussians 64 MB, past
// the cache, written and read back each way), and the backward computes it again.
template <typename S>
void skin_fused_fwd(int64_t N, int K, const int64_t *index, const S *weights, const S *table, const S *means,
                    const S *quats, S *new_means, S *new_quats, int n_threads) {
    const int nt = N < kSerialBelow ? 1 : std::max(1, n_threads);
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int64_t n = 0; n < N; ++n) {
        alignas(64) S m[kMix];
        blend_row(K, kMix, index + K * n, weights + K * n, table, m);
        tail_fwd(m, means + 3 * n, quats + 4 * n, new_means + 3 * n, new_quats + 4 * n);
    }
}

template <typename S>
void skin_fused_bwd(int64_t N, int K, int64_t J, const int64_t *index, const S *weights, const S *table,
                    const S *means, const S *quats, const S *v_new_means, const S *v_new_quats, S *grad_table,
                    int n_threads) {
    table_gradient(N, K, kMix, J, index, weights, grad_table, n_threads, [&](int64_t n, S *vm) -> const S * {
        const S *gm = v_new_means + 3 * n, *g = v_new_quats + 4 * n;
        if (no_gradient(gm, g)) return nullptr;
        alignas(64) S m[kMix];
        blend_row(K, kMix, index + K * n, weights + K * n, table, m);
        tail_bwd(m, means + 3 * n, quats + 4 * n, gm, g, vm, static_cast<S *>(nullptr), static_cast<S *>(nullptr));
        return vm;
    });
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
    }                                                                                                 \
    extern "C" void st_skin_fused_fwd_##SUFFIX(int64_t N, int K, int64_t J, const int64_t *index,     \
                                               const S *weights, const S *table, const S *means,      \
                                               const S *quats, S *new_means, S *new_quats,            \
                                               int n_threads) {                                       \
        (void)J;                                                                                      \
        skin_fused_fwd<S>(N, K, index, weights, table, means, quats, new_means, new_quats, n_threads); \
    }                                                                                                 \
    extern "C" void st_skin_fused_bwd_##SUFFIX(int64_t N, int K, int64_t J, const int64_t *index,     \
                                               const S *weights, const S *table, const S *means,      \
                                               const S *quats, const S *v_new_means,                  \
                                               const S *v_new_quats, S *grad_table, int n_threads) {  \
        skin_fused_bwd<S>(N, K, J, index, weights, table, means, quats, v_new_means, v_new_quats,     \
                          grad_table, n_threads);                                                     \
    }

ST_EXPORT(float, f32)
ST_EXPORT(double, f64)
