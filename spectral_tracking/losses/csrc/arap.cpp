// The ARAP energy of control points and its gradient on the CPU: the C++ twin of ../arap.py's
// ``ARAP.__call__`` (energy and gradient; the tests compare them).
//
// For each frame f and point i, the best-fitting rotation R_i of the neighbourhood (no gradient flows
// through it, as in ../arap.py) maximises tr(R S) with S = sum_j r_ij e_ij^T (rest edges r, deformed
// edges e). ../arap.py takes it from an SVD of S (Kabsch, reflection-corrected); here it is Horn's
// quaternion: the eigenvector of the largest eigenvalue of a symmetric 4x4 matrix built from S
// (Horn 1987, "Closed-form solution of absolute orientation using unit quaternions"), found by
// cyclic Jacobi rotations. Both give a rotation (never a reflection) maximising tr(R S); where that
// rotation is unique they agree to rounding, and where it is not (coincident or collinear
// neighbourhoods) every maximiser gives the same energy, sum |e|^2 + sum |r|^2 - 2 tr(R S).
//
// torch spent about 1 ms a step on this at 150 control points (a batched 3x3 SVD, some 50 small
// ops forward and as many backward), 4 ms at 800.
//
// Layouts (row-major, contiguous; S is float or double): points [F, J, 3], neighbors [J, K] int64,
// rest_edges [J, K, 3] (p_i^0 - p_j^0), rotations [F, J, 9] (written by the forward pass, read by
// the backward pass), grad_points [F, J, 3] (written). The energy sums over f, i, j in double.

#include <algorithm>
#include <cmath>
#include <cstdint>

namespace {

// Unit quaternion (w, x, y, z) of the rotation maximising tr(R S), S[a][b] = sum r_a e_b.
void horn_quaternion(const double S[3][3], double q[4]) {
    const double xx = S[0][0], xy = S[0][1], xz = S[0][2];
    const double yx = S[1][0], yy = S[1][1], yz = S[1][2];
    const double zx = S[2][0], zy = S[2][1], zz = S[2][2];
    double a[4][4] = {
        {xx + yy + zz, yz - zy, zx - xz, xy - yx},
        {yz - zy, xx - yy - zz, xy + yx, zx + xz},
        {zx - xz, xy + yx, -xx + yy - zz, yz + zy},
        {xy - yx, zx + xz, yz + zy, -xx - yy + zz},
    };
    double v[4][4] = {{1, 0, 0, 0}, {0, 1, 0, 0}, {0, 0, 1, 0}, {0, 0, 0, 1}};
    double scale = 0;
    for (int p = 0; p < 4; ++p)
        for (int r = 0; r < 4; ++r) scale += a[p][r] * a[p][r];
    for (int sweep = 0; sweep < 32; ++sweep) {
        double off = 0;
        for (int p = 0; p < 4; ++p)
            for (int r = p + 1; r < 4; ++r) off += a[p][r] * a[p][r];
        if (off <= 1e-30 * scale || off == 0) break;
        for (int p = 0; p < 4; ++p)
            for (int r = p + 1; r < 4; ++r) {
                if (a[p][r] == 0) continue;
                // rotate in the (p, r) plane so that a[p][r] becomes 0
                const double theta = (a[r][r] - a[p][p]) / (2 * a[p][r]);
                const double t = (theta >= 0 ? 1.0 : -1.0) / (std::fabs(theta) + std::sqrt(theta * theta + 1));
                const double c = 1 / std::sqrt(t * t + 1), s = t * c;
                for (int k = 0; k < 4; ++k) {  // columns p, r
                    const double akp = a[k][p], akr = a[k][r];
                    a[k][p] = c * akp - s * akr, a[k][r] = s * akp + c * akr;
                }
                for (int k = 0; k < 4; ++k) {  // rows p, r
                    const double apk = a[p][k], ark = a[r][k];
                    a[p][k] = c * apk - s * ark, a[r][k] = s * apk + c * ark;
                }
                for (int k = 0; k < 4; ++k) {
                    const double vkp = v[k][p], vkr = v[k][r];
                    v[k][p] = c * vkp - s * vkr, v[k][r] = s * vkp + c * vkr;
                }
            }
    }
    int best = 0;
    for (int k = 1; k < 4; ++k)
        if (a[k][k] > a[best][best]) best = k;
    double n = 0;
    for (int k = 0; k < 4; ++k) q[k] = v[k][best], n += q[k] * q[k];
    n = n > 0 ? 1 / std::sqrt(n) : 1;
    for (int k = 0; k < 4; ++k) q[k] *= n;
}

template <typename S>
double arap_fwd(int F, int J, int K, const S *points, const int64_t *neighbors, const S *rest_edges, S *rotations) {
    double energy = 0;
    for (int f = 0; f < F; ++f) {
        const S *P = points + int64_t(f) * J * 3;
        for (int i = 0; i < J; ++i) {
            double Sm[3][3] = {};
            for (int k = 0; k < K; ++k) {
                const int64_t j = neighbors[int64_t(i) * K + k];
                const S *r = rest_edges + (int64_t(i) * K + k) * 3;
                const double e[3] = {double(P[3 * i]) - P[3 * j], double(P[3 * i + 1]) - P[3 * j + 1],
                                     double(P[3 * i + 2]) - P[3 * j + 2]};
                for (int a = 0; a < 3; ++a)
                    for (int b = 0; b < 3; ++b) Sm[a][b] += double(r[a]) * e[b];
            }
            double q[4];
            horn_quaternion(Sm, q);
            const double w = q[0], x = q[1], y = q[2], z = q[3];
            const double R[9] = {1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
                                 2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
                                 2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)};
            S *Rout = rotations + (int64_t(f) * J + i) * 9;
            for (int m = 0; m < 9; ++m) Rout[m] = S(R[m]);
            for (int k = 0; k < K; ++k) {
                const int64_t j = neighbors[int64_t(i) * K + k];
                const S *r = rest_edges + (int64_t(i) * K + k) * 3;
                for (int a = 0; a < 3; ++a) {
                    const double e = double(P[3 * i + a]) - P[3 * j + a];
                    const double fit = double(Rout[3 * a]) * r[0] + double(Rout[3 * a + 1]) * r[1] + double(Rout[3 * a + 2]) * r[2];
                    energy += (e - fit) * (e - fit);
                }
            }
        }
    }
    return energy;
}

// grad_points = scale * d(energy)/d(points), the rotations held fixed.
template <typename S>
void arap_bwd(int F, int J, int K, const S *points, const int64_t *neighbors, const S *rest_edges, const S *rotations,
              double scale, S *grad_points) {
    std::fill(grad_points, grad_points + int64_t(F) * J * 3, S(0));
    for (int f = 0; f < F; ++f) {
        const S *P = points + int64_t(f) * J * 3;
        S *G = grad_points + int64_t(f) * J * 3;
        for (int i = 0; i < J; ++i) {
            const S *R = rotations + (int64_t(f) * J + i) * 9;
            for (int k = 0; k < K; ++k) {
                const int64_t j = neighbors[int64_t(i) * K + k];
                const S *r = rest_edges + (int64_t(i) * K + k) * 3;
                for (int a = 0; a < 3; ++a) {
                    const S e = P[3 * i + a] - P[3 * j + a];
                    const S g = S(2 * scale) * (e - (R[3 * a] * r[0] + R[3 * a + 1] * r[1] + R[3 * a + 2] * r[2]));
                    G[3 * i + a] += g, G[3 * j + a] -= g;
                }
            }
        }
    }
}

}  // namespace

#define ST_EXPORT(S, SUFFIX)                                                                          \
    extern "C" double st_arap_fwd_##SUFFIX(int F, int J, int K, const S *points,                      \
                                           const int64_t *neighbors, const S *rest_edges,             \
                                           S *rotations) {                                            \
        return arap_fwd<S>(F, J, K, points, neighbors, rest_edges, rotations);                        \
    }                                                                                                 \
    extern "C" void st_arap_bwd_##SUFFIX(int F, int J, int K, const S *points,                        \
                                         const int64_t *neighbors, const S *rest_edges,               \
                                         const S *rotations, double scale, S *grad_points) {          \
        arap_bwd<S>(F, J, K, points, neighbors, rest_edges, rotations, scale, grad_points);           \
    }

ST_EXPORT(float, f32)
ST_EXPORT(double, f64)
