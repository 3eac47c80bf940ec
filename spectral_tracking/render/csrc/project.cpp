// EWA projection of 3D Gaussians into pinhole cameras on the CPU, fused: forward and backward.
//
// The C++ twin of ../projection.py's ``project`` (means, quaternions and log-scales to screen-space
// means, conics, depths and radii), and so of gsplat 1.5.3's ProjectionEWA3DGSFused.cu; see that file
// for the maths and the conventions. ``project`` runs some 300 tensor ops forward and 450 backward on
// [V, N] tensors; each costs a few microseconds whatever N, so at the CPU scale (3,000 Gaussians) the
// projection took 3 ms of a 15 ms training step. Here one pass per direction, per Gaussian.
//
// Layouts (row-major, contiguous; S is float or double):
//   in:  means [N, 3], quats [N, 4] (w, x, y, z; normalised here), log_scales [N, 3],
//        opacities [N] (sigmoid of the logits: only the radii read them), viewmats [V, 4, 4]
//        (world to camera), Ks [V, 3, 3]
//   out: means2d [V, N, 2], conics [V, N, 3] = inverse 2D covariance (a, b, c), depths [V, N]
//        (camera z), radii [V, N, 2] int32 (0 where culled)
//   backward: v_means2d, v_conics, v_depths of the outputs -> v_means, v_quats, v_log_scales,
//        summed over the views (the camera is a constant here: ../cpu.py uses the torch projection
//        when the cameras need a gradient).
//
// What the torch twin does for culled Gaussians is kept, gradients included: behind the near plane
// the depth used is 1 (so x, y still get a gradient through means2d), and where the 2D covariance is
// not positive definite the conic is (c, -b, a) (its determinant replaced by 1).
//
// Threads: an OpenMP loop over the Gaussians (each thread owns its Gaussians' gradient rows, so no
// atomics), one thread below ``kSerialBelow`` Gaussians x views, where starting the team costs more
// than the arithmetic.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

namespace {

constexpr double kEps2d = 0.3;            // projection.EPS2D
constexpr double kNearPlane = 0.01;       // projection.NEAR_PLANE
constexpr double kAlphaThreshold = 1.0 / 255.0;
constexpr double kMaxExtent = 3.33;       // projection.MAX_EXTENT
constexpr int64_t kSerialBelow = 16384;

template <typename S>
struct Camera {
    S R[3][3], t[3], fx, fy, cx, cy, lim_x_neg, lim_x_pos, lim_y_neg, lim_y_pos;
};

template <typename S>
Camera<S> camera(const S *viewmat, const S *K, int W, int H) {
    Camera<S> c;
    for (int i = 0; i < 3; ++i) {
        for (int j = 0; j < 3; ++j) c.R[i][j] = viewmat[4 * i + j];
        c.t[i] = viewmat[4 * i + 3];
    }
    c.fx = K[0], c.fy = K[4], c.cx = K[2], c.cy = K[5];
    c.lim_x_pos = (S(W) - c.cx) / c.fx + S(0.3) * (S(0.5) * S(W) / c.fx);
    c.lim_x_neg = c.cx / c.fx + S(0.3) * (S(0.5) * S(W) / c.fx);
    c.lim_y_pos = (S(H) - c.cy) / c.fy + S(0.3) * (S(0.5) * S(H) / c.fy);
    c.lim_y_neg = c.cy / c.fy + S(0.3) * (S(0.5) * S(H) / c.fy);
    return c;
}

// What the blocked forward and backward compute alike, for one Gaussian in one SIMD lane (inlined
// into their ``omp simd`` loops): its world covariance Sigma = M M^T, M = R(q) diag(s), from its
// quaternion and scales (the scales' exponentials are taken before the lanes), and its view by one
// camera up to the 2D covariance (a, b, c) and its determinant.
template <typename S>
struct LaneShape {
    S nrm, nc, qn[4], R[9], sig[6];  // |q|, max(|q|, 1e-12), q / nc, R(qn) row-major, Sigma 00 01 02 11 12 22
};

template <typename S>
[[gnu::always_inline]] inline LaneShape<S> lane_shape(const S *q, S s0, S s1, S s2) {
    LaneShape<S> g;
    g.nrm = std::sqrt(q[0] * q[0] + q[1] * q[1] + q[2] * q[2] + q[3] * q[3]);
    g.nc = std::max(g.nrm, S(1e-12));
    const S w = q[0] / g.nc, x = q[1] / g.nc, y = q[2] / g.nc, z = q[3] / g.nc;
    g.qn[0] = w, g.qn[1] = x, g.qn[2] = y, g.qn[3] = z;
    g.R[0] = 1 - 2 * (y * y + z * z), g.R[1] = 2 * (x * y - w * z), g.R[2] = 2 * (x * z + w * y);
    g.R[3] = 2 * (x * y + w * z), g.R[4] = 1 - 2 * (x * x + z * z), g.R[5] = 2 * (y * z - w * x);
    g.R[6] = 2 * (x * z - w * y), g.R[7] = 2 * (y * z + w * x), g.R[8] = 1 - 2 * (x * x + y * y);
    const S m00 = g.R[0] * s0, m01 = g.R[1] * s1, m02 = g.R[2] * s2;
    const S m10 = g.R[3] * s0, m11 = g.R[4] * s1, m12 = g.R[5] * s2;
    const S m20 = g.R[6] * s0, m21 = g.R[7] * s1, m22 = g.R[8] * s2;
    g.sig[0] = m00 * m00 + m01 * m01 + m02 * m02;
    g.sig[1] = m00 * m10 + m01 * m11 + m02 * m12;
    g.sig[2] = m00 * m20 + m01 * m21 + m02 * m22;
    g.sig[3] = m10 * m10 + m11 * m11 + m12 * m12;
    g.sig[4] = m10 * m20 + m11 * m21 + m12 * m22;
    g.sig[5] = m20 * m20 + m21 * m21 + m22 * m22;
    return g;
}

template <typename S>
struct LaneView {
    S x, y, z, zz, rz, ux, uy, cux, cuy, tx, ty, j00, j02, j11, j12, T0[3], T1[3], ST0[3], ST1[3], a, b, c, det;
    bool in_front, valid0;
};

// s: the lane's Sigma (00 01 02 11 12 22); the camera's rows are read as constants of the loop.
template <typename S>
[[gnu::always_inline]] inline LaneView<S> lane_view(const Camera<S> &cam, S m0, S m1, S m2, const S (&s)[6]) {
    LaneView<S> v;
    const S(&R)[3][3] = cam.R;
    v.x = R[0][0] * m0 + R[0][1] * m1 + R[0][2] * m2 + cam.t[0];
    v.y = R[1][0] * m0 + R[1][1] * m1 + R[1][2] * m2 + cam.t[1];
    v.z = R[2][0] * m0 + R[2][1] * m1 + R[2][2] * m2 + cam.t[2];
    v.in_front = v.z > S(kNearPlane);
    v.zz = v.in_front ? v.z : S(1);
    v.rz = S(1) / v.zz;
    v.ux = v.x * v.rz, v.uy = v.y * v.rz;
    v.cux = std::min(std::max(v.ux, -cam.lim_x_neg), cam.lim_x_pos);
    v.cuy = std::min(std::max(v.uy, -cam.lim_y_neg), cam.lim_y_pos);
    v.tx = v.zz * v.cux, v.ty = v.zz * v.cuy;
    v.j00 = cam.fx * v.rz, v.j02 = -cam.fx * v.tx * v.rz * v.rz;
    v.j11 = cam.fy * v.rz, v.j12 = -cam.fy * v.ty * v.rz * v.rz;
    for (int k = 0; k < 3; ++k) {
        v.T0[k] = v.j00 * R[0][k] + v.j02 * R[2][k];
        v.T1[k] = v.j11 * R[1][k] + v.j12 * R[2][k];
    }
    // Sigma T0 and Sigma T1 (Sigma symmetric: also T0 Sigma, T1 Sigma)
    v.ST0[0] = s[0] * v.T0[0] + s[1] * v.T0[1] + s[2] * v.T0[2];
    v.ST0[1] = s[1] * v.T0[0] + s[3] * v.T0[1] + s[4] * v.T0[2];
    v.ST0[2] = s[2] * v.T0[0] + s[4] * v.T0[1] + s[5] * v.T0[2];
    v.ST1[0] = s[0] * v.T1[0] + s[1] * v.T1[1] + s[2] * v.T1[2];
    v.ST1[1] = s[1] * v.T1[0] + s[3] * v.T1[1] + s[4] * v.T1[2];
    v.ST1[2] = s[2] * v.T1[0] + s[4] * v.T1[1] + s[5] * v.T1[2];
    v.a = v.ST0[0] * v.T0[0] + v.ST0[1] * v.T0[1] + v.ST0[2] * v.T0[2] + S(kEps2d);
    v.b = v.ST0[0] * v.T1[0] + v.ST0[1] * v.T1[1] + v.ST0[2] * v.T1[2];
    v.c = v.ST1[0] * v.T1[0] + v.ST1[1] * v.T1[1] + v.ST1[2] * v.T1[2] + S(kEps2d);
    const S det0 = v.a * v.c - v.b * v.b;
    v.valid0 = v.in_front & (det0 > S(0));
    v.det = v.valid0 ? det0 : S(1);
    return v;
}

// The forward in blocks of kBlock Gaussians, so that the arithmetic runs in SIMD lanes (``omp simd``;
// the scalar code it replaced took about 55 ns a Gaussian at 300k, mostly arithmetic): the
// exponentials and logarithms first, one Gaussian at a time (the C library's, as before: there is no
// portable vector version), then the world covariance of the block (`lane_shape`), then each camera
// (`lane_view`).
constexpr int kBlock = 32;

template <typename S>
void project_fwd(int V, int N, int W, int H, const S *means, const S *quats, const S *log_scales,
                 const S *opacities, const S *viewmats, const S *Ks, S *means2d, S *conics, S *depths,
                 int32_t *radii, int n_threads) {
    Camera<S> cams[64];
    const int nt = int64_t(V) * N < kSerialBelow ? 1 : std::max(1, n_threads);
    const int64_t n_blocks = (int64_t(N) + kBlock - 1) / kBlock;
    for (int v0 = 0; v0 < V; v0 += 64) {  // cameras in blocks (a small array on the stack)
        const int nv = std::min(64, V - v0);
        for (int v = 0; v < nv; ++v) cams[v] = camera<S>(viewmats + 16 * (v0 + v), Ks + 9 * (v0 + v), W, H);
#pragma omp parallel for num_threads(nt) schedule(static)
        for (int64_t blk = 0; blk < n_blocks; ++blk) {
            const int64_t n0 = blk * kBlock;
            const int nb = int(std::min<int64_t>(kBlock, N - n0));
            alignas(64) S sc[3][kBlock], ext[kBlock], sig[6][kBlock], mu[3][kBlock];
            for (int l = 0; l < nb; ++l) {
                for (int j = 0; j < 3; ++j) sc[j][l] = std::exp(log_scales[3 * (n0 + l) + j]);
                ext[l] = std::log(std::max(opacities[n0 + l], S(kAlphaThreshold)) / S(kAlphaThreshold));
            }
#pragma omp simd
            for (int l = 0; l < nb; ++l) {
                // sqrt(2 ln(255 o)), at most 3.33: the opacity-aware extent in standard deviations
                ext[l] = std::min(std::sqrt(S(2) * ext[l]), S(kMaxExtent));
                for (int j = 0; j < 3; ++j) mu[j][l] = means[3 * (n0 + l) + j];
                const LaneShape<S> g = lane_shape(quats + 4 * (n0 + l), sc[0][l], sc[1][l], sc[2][l]);
                for (int j = 0; j < 6; ++j) sig[j][l] = g.sig[j];
            }
            for (int v = 0; v < nv; ++v) {
                const Camera<S> &cam = cams[v];
                S *xy = means2d + 2 * (int64_t(v0 + v) * N + n0), *cn = conics + 3 * (int64_t(v0 + v) * N + n0);
                S *dp = depths + int64_t(v0 + v) * N + n0;
                int32_t *rd = radii + 2 * (int64_t(v0 + v) * N + n0);
                const S *op = opacities + n0;
#pragma omp simd
                for (int l = 0; l < nb; ++l) {
                    const S s6[6] = {sig[0][l], sig[1][l], sig[2][l], sig[3][l], sig[4][l], sig[5][l]};
                    const LaneView<S> p = lane_view(cam, mu[0][l], mu[1][l], mu[2][l], s6);
                    const S a = p.a, b = p.b, c = p.c, det = p.det;
                    const S px = cam.fx * p.x * p.rz + cam.cx, py = cam.fy * p.y * p.rz + cam.cy;
                    xy[2 * l] = px, xy[2 * l + 1] = py;
                    cn[3 * l] = c / det, cn[3 * l + 1] = -b / det, cn[3 * l + 2] = a / det;
                    dp[l] = p.z;
                    const S rx = std::ceil(ext[l] * std::sqrt(std::max(a, S(0))));
                    const S ry = std::ceil(ext[l] * std::sqrt(std::max(c, S(0))));
                    // `&` and `|`, not `&&` and `||`: no branch in the lanes
                    const bool valid = p.valid0 & (op[l] >= S(kAlphaThreshold)) & ((rx > 0) | (ry > 0)) &
                                       (px + rx > 0) & (px - rx < S(W)) & (py + ry > 0) & (py - ry < S(H));
                    rd[2 * l] = valid ? int32_t(rx) : 0, rd[2 * l + 1] = valid ? int32_t(ry) : 0;
                }
            }
        }
    }
}

// The backward in the forward's blocks, the arithmetic in SIMD lanes: the world covariance of the
// block, then each camera's terms summed into the lanes' gradients of the mean and of Sigma, then the
// chain through Sigma = M M^T to the scales and the quaternion; the forward again is `lane_shape`'s and
// `lane_view`'s. A Gaussian no pixel blended (hidden, off screen, or behind saturated
// pixels: most of a dense asset) has zero output gradients in every view; every term would then be a
// product with a zero (its other factors finite), so its rows are left as the zeros they are: its lane
// writes nothing, and a block of such Gaussians is skipped before any arithmetic (nor is its exp taken).
//
// ``v_viewmats`` (nullable) [V, 4, 4]: the cameras' own gradient, where the pose search moves the
// cameras instead of the asset (the intrinsics stay constants). Each block sums its lanes' terms in
// order into a row of its own, and the rows are added in block order: the same bits at any number
// of threads. ``Cams`` (v_viewmats not null) is a template argument so that the tracking step's
// backward, which has no camera gradient, does not compute the cameras' terms in its lanes.
template <typename S, bool Cams>
void project_bwd(int V, int N, int W, int H, const S *means, const S *quats, const S *log_scales,
                 const S *viewmats, const S *Ks, const S *v_means2d, const S *v_conics, const S *v_depths,
                 S *v_means, S *v_quats, S *v_log_scales, S *v_viewmats, int n_threads) {
    (void)W, (void)H;
    const int nt = int64_t(V) * N < kSerialBelow ? 1 : std::max(1, n_threads);
    const int64_t n_blocks = (int64_t(N) + kBlock - 1) / kBlock;
    std::vector<double> cam_rows;  // [n_blocks, 64, 12] per camera chunk: R (9) and t (3), row-major
    for (int v0 = 0; v0 < V; v0 += 64) {
        Camera<S> cams[64];
        const int nv = std::min(64, V - v0);
        for (int v = 0; v < nv; ++v) cams[v] = camera<S>(viewmats + 16 * (v0 + v), Ks + 9 * (v0 + v), W, H);
        if constexpr (Cams) cam_rows.assign(size_t(n_blocks) * nv * 12, 0.0);
#pragma omp parallel for num_threads(nt) schedule(static)
        for (int64_t blk = 0; blk < n_blocks; ++blk) {
            const int64_t n0 = blk * kBlock;
            const int nb = int(std::min<int64_t>(kBlock, N - n0));
            alignas(64) S live[kBlock], sc[3][kBlock], mu[3][kBlock], qn[4][kBlock], inv[kBlock], big[kBlock];
            alignas(64) S Rq[9][kBlock], sig[6][kBlock], gm[3][kBlock], gS[9][kBlock], gcam[12][kBlock];
            int n_live = 0;
            for (int l = 0; l < nb; ++l) {
                bool zero = true;
                for (int v = 0; v < nv && zero; ++v) {
                    const int64_t i = int64_t(v0 + v) * N + n0 + l;
                    zero = v_means2d[2 * i] == S(0) && v_means2d[2 * i + 1] == S(0) && v_conics[3 * i] == S(0) &&
                           v_conics[3 * i + 1] == S(0) && v_conics[3 * i + 2] == S(0) && v_depths[i] == S(0);
                }
                live[l] = zero ? S(0) : S(1);
                n_live += !zero;
                for (int j = 0; j < 3; ++j) sc[j][l] = zero ? S(1) : std::exp(log_scales[3 * (n0 + l) + j]);
            }
            if (n_live == 0) continue;
#pragma omp simd
            for (int l = 0; l < nb; ++l) {
                for (int j = 0; j < 3; ++j) mu[j][l] = means[3 * (n0 + l) + j];
                const LaneShape<S> g = lane_shape(quats + 4 * (n0 + l), sc[0][l], sc[1][l], sc[2][l]);
                inv[l] = S(1) / g.nc;
                big[l] = g.nrm > S(1e-12) ? S(1) : S(0);
                for (int k = 0; k < 4; ++k) qn[k][l] = g.qn[k];
                for (int k = 0; k < 9; ++k) Rq[k][l] = g.R[k];
                for (int k = 0; k < 6; ++k) sig[k][l] = g.sig[k];
                for (int k = 0; k < 3; ++k) gm[k][l] = S(0);
                for (int k = 0; k < 9; ++k) gS[k][l] = S(0);
            }
            for (int v = 0; v < nv; ++v) {
                const Camera<S> &cam = cams[v];
                const S fx = cam.fx, fy = cam.fy;
                const S lxn = cam.lim_x_neg, lxp = cam.lim_x_pos, lyn = cam.lim_y_neg, lyp = cam.lim_y_pos;
                const S R00 = cam.R[0][0], R01 = cam.R[0][1], R02 = cam.R[0][2], R10 = cam.R[1][0], R11 = cam.R[1][1],
                        R12 = cam.R[1][2], R20 = cam.R[2][0], R21 = cam.R[2][1], R22 = cam.R[2][2];
                const int64_t i0 = int64_t(v0 + v) * N + n0;
                const S *gxy = v_means2d + 2 * i0, *gcn = v_conics + 3 * i0, *gdp = v_depths + i0;
#pragma omp simd
                for (int l = 0; l < nb; ++l) {
                    // the forward again (`lane_view`)
                    const S m0 = mu[0][l], m1 = mu[1][l], m2 = mu[2][l];
                    const S s6[6] = {sig[0][l], sig[1][l], sig[2][l], sig[3][l], sig[4][l], sig[5][l]};
                    const LaneView<S> p = lane_view(cam, m0, m1, m2, s6);
                    const S x = p.x, y = p.y, zz = p.zz, rz = p.rz, ux = p.ux, uy = p.uy, cux = p.cux, cuy = p.cuy;
                    const S tx = p.tx, ty = p.ty, j00 = p.j00, j02 = p.j02, j11 = p.j11, j12 = p.j12;
                    const S(&T0)[3] = p.T0;
                    const S(&T1)[3] = p.T1;
                    const S(&ST0)[3] = p.ST0;
                    const S(&ST1)[3] = p.ST1;
                    const S a = p.a, b = p.b, c = p.c, det = p.det;
                    const bool in_front = p.in_front, valid0 = p.valid0;
                    // conics = (c, -b, a) / det
                    const S gmx = gxy[2 * l], gmy = gxy[2 * l + 1];
                    const S gc0 = gcn[3 * l], gc1 = gcn[3 * l + 1], gc2 = gcn[3 * l + 2];
                    const S gdet = valid0 ? -(gc0 * c - gc1 * b + gc2 * a) / (det * det) : S(0);  // det = a c - b^2
                    const S ga = gc2 / det + gdet * c, gb = -gc1 / det + gdet * S(-2) * b, gc = gc0 / det + gdet * a;
                    // a = T0 Sig T0 (+eps), b = T0 Sig T1, c = T1 Sig T1 (+eps)
                    for (int r = 0; r < 3; ++r)
                        for (int k = 0; k < 3; ++k)
                            gS[3 * r + k][l] += ga * T0[r] * T0[k] + gb * T0[r] * T1[k] + gc * T1[r] * T1[k];
                    S gT0[3], gT1[3];
                    for (int k = 0; k < 3; ++k) {
                        gT0[k] = S(2) * ga * ST0[k] + gb * ST1[k];
                        gT1[k] = gb * ST0[k] + S(2) * gc * ST1[k];
                    }
                    // T0 = j00 R0 + j02 R2, T1 = j11 R1 + j12 R2 (camera rows)
                    const S gj00 = gT0[0] * R00 + gT0[1] * R01 + gT0[2] * R02;
                    const S gj02 = gT0[0] * R20 + gT0[1] * R21 + gT0[2] * R22;
                    const S gj11 = gT1[0] * R10 + gT1[1] * R11 + gT1[2] * R12;
                    const S gj12 = gT1[0] * R20 + gT1[1] * R21 + gT1[2] * R22;
                    const S rz2 = rz * rz;
                    S grz = fx * gj00 + fy * gj11;
                    const S gtx = -fx * rz2 * gj02, gty = -fy * rz2 * gj12;
                    grz += S(-2) * fx * tx * rz * gj02 + S(-2) * fy * ty * rz * gj12;
                    // means2d = (fx x rz + cx, fy y rz + cy)
                    S gx = fx * rz * gmx, gy = fy * rz * gmy;
                    grz += fx * x * gmx + fy * y * gmy;
                    // tx = zz clamp(x rz), ty = zz clamp(y rz) (torch.clamp passes the gradient on the bounds)
                    S gzz = cux * gtx + cuy * gty;
                    const S gux = ((ux >= -lxn) & (ux <= lxp)) ? zz * gtx : S(0);
                    const S guy = ((uy >= -lyn) & (uy <= lyp)) ? zz * gty : S(0);
                    gx += gux * rz, gy += guy * rz;
                    grz += gux * x + guy * y;
                    gzz += -rz2 * grz;  // rz = 1 / zz
                    const S gz = (in_front ? gzz : S(0)) + gdp[l];
                    gm[0][l] += R00 * gx + R10 * gy + R20 * gz;
                    gm[1][l] += R01 * gx + R11 * gy + R21 * gz;
                    gm[2][l] += R02 * gx + R12 * gy + R22 * gz;
                    if constexpr (Cams) {  // the camera's: (x, y, z) = R m + t, T0 = j00 R0 + j02 R2, T1 = j11 R1 + j12 R2
                        for (int k = 0; k < 3; ++k) {
                            const S mk = k == 0 ? m0 : (k == 1 ? m1 : m2);
                            gcam[k][l] = gx * mk + gT0[k] * j00;
                            gcam[3 + k][l] = gy * mk + gT1[k] * j11;
                            gcam[6 + k][l] = gz * mk + gT0[k] * j02 + gT1[k] * j12;
                        }
                        gcam[9][l] = gx, gcam[10][l] = gy, gcam[11][l] = gz;
                    }
                }
                if constexpr (Cams) {
                    double *row = cam_rows.data() + (size_t(blk) * nv + v) * 12;
                    for (int j = 0; j < 12; ++j)
                        for (int l = 0; l < nb; ++l) row[j] += double(gcam[j][l]);
                }
            }
#pragma omp simd
            for (int l = 0; l < nb; ++l) {
                const bool on = live[l] != S(0);
                for (int k = 0; k < 3; ++k) v_means[3 * (n0 + l) + k] += on ? gm[k][l] : S(0);
                // Sigma = M M^T: dM = (G + G^T) M
                S gM[3][3];
                for (int r = 0; r < 3; ++r)
                    for (int k = 0; k < 3; ++k) {
                        S acc = 0;
                        for (int j = 0; j < 3; ++j) acc += (gS[3 * r + j][l] + gS[3 * j + r][l]) * (Rq[3 * j + k][l] * sc[k][l]);
                        gM[r][k] = acc;
                    }
                // M = Rq diag(s), s = exp(log_scales)
                S gR[3][3];
                for (int k = 0; k < 3; ++k) {
                    const S sk = sc[k][l];
                    S gs = 0;
                    for (int r = 0; r < 3; ++r) gR[r][k] = gM[r][k] * sk, gs += gM[r][k] * Rq[3 * r + k][l];
                    v_log_scales[3 * (n0 + l) + k] += on ? gs * sk : S(0);
                }
                const S w = qn[0][l], x = qn[1][l], y = qn[2][l], z = qn[3][l];
                S gq[4];
                gq[0] = 2 * (-z * gR[0][1] + y * gR[0][2] + z * gR[1][0] - x * gR[1][2] - y * gR[2][0] + x * gR[2][1]);
                gq[1] = 2 * (y * gR[0][1] + z * gR[0][2] + y * gR[1][0] - 2 * x * gR[1][1] - w * gR[1][2] +
                             z * gR[2][0] + w * gR[2][1] - 2 * x * gR[2][2]);
                gq[2] = 2 * (-2 * y * gR[0][0] + x * gR[0][1] + w * gR[0][2] + x * gR[1][0] + z * gR[1][2] -
                             w * gR[2][0] + z * gR[2][1] - 2 * y * gR[2][2]);
                gq[3] = 2 * (-2 * z * gR[0][0] - w * gR[0][1] + x * gR[0][2] + w * gR[1][0] - 2 * z * gR[1][1] +
                             y * gR[1][2] + x * gR[2][0] + y * gR[2][1]);
                // qn = q / max(|q|, 1e-12)
                const S dot = (big[l] != S(0)) ? w * gq[0] + x * gq[1] + y * gq[2] + z * gq[3] : S(0);
                const S qv[4] = {w, x, y, z};
                for (int k = 0; k < 4; ++k) v_quats[4 * (n0 + l) + k] += on ? (gq[k] - qv[k] * dot) * inv[l] : S(0);
            }
        }
        if constexpr (Cams)
            for (int v = 0; v < nv; ++v) {
                double sum[12] = {};
                for (int64_t blk = 0; blk < n_blocks; ++blk)
                    for (int j = 0; j < 12; ++j) sum[j] += cam_rows[(size_t(blk) * nv + v) * 12 + j];
                S *out = v_viewmats + 16 * (v0 + v);
                for (int i = 0; i < 3; ++i) {
                    for (int k = 0; k < 3; ++k) out[4 * i + k] += S(sum[3 * i + k]);
                    out[4 * i + 3] += S(sum[9 + i]);
                }
            }
    }
}

}  // namespace

#define ST_EXPORT(S, SUFFIX)                                                                          \
    extern "C" void st_project_fwd_##SUFFIX(                                                          \
        int V, int N, int W, int H, const S *means, const S *quats, const S *log_scales,              \
        const S *opacities, const S *viewmats, const S *Ks, S *means2d, S *conics, S *depths,         \
        int32_t *radii, int n_threads) {                                                              \
        project_fwd<S>(V, N, W, H, means, quats, log_scales, opacities, viewmats, Ks, means2d,        \
                       conics, depths, radii, n_threads);                                             \
    }                                                                                                 \
    extern "C" void st_project_bwd_##SUFFIX(                                                          \
        int V, int N, int W, int H, const S *means, const S *quats, const S *log_scales,              \
        const S *viewmats, const S *Ks, const S *v_means2d, const S *v_conics, const S *v_depths,     \
        S *v_means, S *v_quats, S *v_log_scales, S *v_viewmats, int n_threads) {                      \
        (v_viewmats ? project_bwd<S, true> : project_bwd<S, false>)(                                  \
            V, N, W, H, means, quats, log_scales, viewmats, Ks, v_means2d, v_conics, v_depths, v_means,   \
            v_quats, v_log_scales, v_viewmats, n_threads);                                            \
    }

ST_EXPORT(float, f32)
ST_EXPORT(double, f64)
