// Exact k nearest neighbours of 3D points through a uniform grid: the large-problem path of
// ../knn.py (small problems compare every pair in torch).
//
// Same answer as comparing every pair: neighbours sorted by the squared distance computed in double
// as (dx^2 + dy^2) + dz^2 (built with -ffp-contract=off, see ../native.py, so that no fused
// multiply-add rounds it differently from ../knn.py's brute force), ties to the lower reference
// index, and with exclude_self (queries and refs the same points) a point is never its own
// neighbour. The grid only decides which points are compared, never the order: every candidate is
// ranked by the exact (distance, index) pair.
//
// Search: the refs are counting-sorted into cubic cells of side h (about two points a cell over
// their bounding box). A query visits the cells in rings of growing Chebyshev radius r around its
// own cell (the query clamped into the grid). Every cell of ring r + 1 lies at least r h from the
// query, so the search stops after ring r once it holds k neighbours whose k-th squared distance is
// below (r h)^2 (with a relative margin of 1e-6 against the rounding of that bound), or when the
// rings have covered the grid. Clustered points make some cells crowded and the search slower,
// never wrong.
//
// Layouts: queries [N, 3], refs [J, 3] (S = float or double, read as double), outputs d2 [N, k]
// double and idx [N, k] int64, ascending. Threads: OpenMP over the queries.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

namespace {

struct Grid {
    double lo[3], h;
    int64_t dims[3];
    std::vector<int64_t> start;  // [cells + 1] offsets into order
    std::vector<int64_t> order;  // ref indices, grouped by cell, ascending within a cell
    std::vector<double> pts;     // refs as double [J, 3]

    int64_t cell_of(double v, int axis) const {
        const double f = std::floor((v - lo[axis]) / h);
        if (!(f >= 0)) return 0;  // below the grid (or NaN: the caller checked finiteness)
        return std::min(dims[axis] - 1, int64_t(f));
    }
    int64_t index(int64_t x, int64_t y, int64_t z) const { return (z * dims[1] + y) * dims[0] + x; }
};

template <typename S>
Grid build_grid(int64_t J, const S *refs) {
    Grid g;
    g.pts.resize(3 * J);
    double hi[3];
    for (int a = 0; a < 3; ++a) g.lo[a] = hi[a] = double(refs[a]);
    for (int64_t j = 0; j < J; ++j)
        for (int a = 0; a < 3; ++a) {
            const double v = double(refs[3 * j + a]);
            g.pts[3 * j + a] = v;
            g.lo[a] = std::min(g.lo[a], v), hi[a] = std::max(hi[a], v);
        }
    double ext[3], emax = 0;
    for (int a = 0; a < 3; ++a) ext[a] = hi[a] - g.lo[a], emax = std::max(emax, ext[a]);
    const double target = std::max(1.0, double(J) / 2.0);  // cells wanted
    if (emax <= 0) {
        g.h = 1.0;
    } else {
        // flat or thin clouds: an axis much shorter than the longest counts as a thousandth of it
        double vol = 1;
        for (int a = 0; a < 3; ++a) vol *= std::max(ext[a], emax * 1e-3);
        g.h = std::cbrt(vol / target);
        for (int iter = 0; iter < 64; ++iter) {  // keep the grid within 8x the target cells
            double cells = 1;
            for (int a = 0; a < 3; ++a) cells *= std::floor(ext[a] / g.h) + 1;
            if (cells <= 8 * target + 8) break;
            g.h *= 1.25;
        }
    }
    int64_t n_cells = 1;
    for (int a = 0; a < 3; ++a) g.dims[a] = int64_t(std::floor(ext[a] / g.h)) + 1, n_cells *= g.dims[a];
    std::vector<int64_t> cell(J);
    g.start.assign(n_cells + 1, 0);
    for (int64_t j = 0; j < J; ++j) {
        const double *p = &g.pts[3 * j];
        cell[j] = g.index(g.cell_of(p[0], 0), g.cell_of(p[1], 1), g.cell_of(p[2], 2));
        ++g.start[cell[j] + 1];
    }
    for (int64_t c = 0; c < n_cells; ++c) g.start[c + 1] += g.start[c];
    g.order.resize(J);
    std::vector<int64_t> cursor(g.start.begin(), g.start.end() - 1);
    for (int64_t j = 0; j < J; ++j) g.order[cursor[cell[j]]++] = j;  // stable: ascending j per cell
    return g;
}

// The k best (distance, index) pairs so far, ascending; slots past `count` are empty.
struct Best {
    std::vector<double> d;
    std::vector<int64_t> i;
    int k, count = 0;
    explicit Best(int k_) : d(k_), i(k_), k(k_) {}
    void reset() { count = 0; }
    void offer(double dist, int64_t j) {
        if (count == k && !(dist < d[k - 1] || (dist == d[k - 1] && j < i[k - 1]))) return;
        int pos = count < k ? count++ : k - 1;
        while (pos > 0 && (dist < d[pos - 1] || (dist == d[pos - 1] && j < i[pos - 1]))) {
            d[pos] = d[pos - 1], i[pos] = i[pos - 1];
            --pos;
        }
        d[pos] = dist, i[pos] = j;
    }
};

template <typename S>
void knn_grid(int64_t N, int64_t J, int k, int exclude_self, const S *queries, const S *refs, double *d2_out,
              int64_t *idx_out, int n_threads) {
    const Grid g = build_grid<S>(J, refs);
    const int64_t rmax = std::max({g.dims[0], g.dims[1], g.dims[2]});
    const int nt = N < 2048 ? 1 : std::max(1, n_threads);
#pragma omp parallel num_threads(nt)
    {
        Best best(k);
#pragma omp for schedule(dynamic, 256)
        for (int64_t n = 0; n < N; ++n) {
            const double q[3] = {double(queries[3 * n]), double(queries[3 * n + 1]), double(queries[3 * n + 2])};
            const int64_t c[3] = {g.cell_of(q[0], 0), g.cell_of(q[1], 1), g.cell_of(q[2], 2)};
            best.reset();
            for (int64_t r = 0; r <= rmax; ++r) {
                const int64_t z0 = std::max<int64_t>(0, c[2] - r), z1 = std::min(g.dims[2] - 1, c[2] + r);
                const int64_t y0 = std::max<int64_t>(0, c[1] - r), y1 = std::min(g.dims[1] - 1, c[1] + r);
                const int64_t x0 = std::max<int64_t>(0, c[0] - r), x1 = std::min(g.dims[0] - 1, c[0] + r);
                auto visit = [&](int64_t x, int64_t y, int64_t z) {
                    const int64_t cell = g.index(x, y, z);
                    for (int64_t s = g.start[cell]; s < g.start[cell + 1]; ++s) {
                        const int64_t j = g.order[s];
                        if (exclude_self && j == n) continue;
                        const double *p = &g.pts[3 * j];
                        const double dx = q[0] - p[0], dy = q[1] - p[1], dz = q[2] - p[2];
                        best.offer((dx * dx + dy * dy) + dz * dz, j);
                    }
                };
                for (int64_t z = z0; z <= z1; ++z)
                    for (int64_t y = y0; y <= y1; ++y) {
                        if (std::abs(z - c[2]) == r || std::abs(y - c[1]) == r) {  // a face of the ring: the row
                            for (int64_t x = x0; x <= x1; ++x) visit(x, y, z);
                        } else {  // inside the ring: only the row's two ends
                            if (c[0] - r >= 0) visit(c[0] - r, y, z);
                            if (r > 0 && c[0] + r < g.dims[0]) visit(c[0] + r, y, z);
                        }
                    }
                const double bound = double(r) * g.h;
                if (best.count == k && best.d[k - 1] < bound * bound * (1.0 - 1e-6)) break;
            }
            for (int m = 0; m < k; ++m) d2_out[n * k + m] = best.d[m], idx_out[n * k + m] = best.i[m];
        }
    }
}

}  // namespace

#define ST_EXPORT(S, SUFFIX)                                                                          \
    extern "C" void st_knn_##SUFFIX(int64_t N, int64_t J, int k, int exclude_self, const S *queries,  \
                                    const S *refs, double *d2_out, int64_t *idx_out, int n_threads) { \
        knn_grid<S>(N, J, k, exclude_self, queries, refs, d2_out, idx_out, n_threads);               \
    }

ST_EXPORT(float, f32)
ST_EXPORT(double, f64)
