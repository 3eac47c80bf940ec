// Exact k nearest neighbours of 3D points through a k-d tree: the large-problem path of ../knn.py
// (small problems compare every pair in torch).
//
// Same answer as comparing every pair: neighbours sorted by the squared distance computed in double
// as (dx^2 + dy^2) + dz^2 (built with -ffp-contract=off, see ../native.py, so that no fused
// multiply-add rounds it differently from ../knn.py's brute force), ties to the lower reference
// index, and with exclude_self (queries and refs the same points) a point is never its own
// neighbour. The tree only decides which points are compared, never the order: every candidate is
// ranked by the exact (distance, index) pair.
//
// Tree: leaves of at most kLeaf refs; an inner node splits its refs at the median of the axis along
// which they spread most (std::nth_element), the left child holding coordinates <= the split value
// and the right child >= it. Search: the near child first, then the far child unless the query's
// squared distance to the split plane is strictly above the k-th best so far. That test is exact in
// floating point: subtraction and squaring round monotonically and adding the other (non-negative)
// squares never lowers a sum, so every point beyond the plane has a computed distance at least the
// plane's; an equal one is still visited, for the ties. (A uniform grid, tried first, is as fast on
// even clouds but compares nearly every pair when a far outlier stretches its bounding box, which
// real point clouds have.)
//
// Layouts: queries [N, 3], refs [J, 3] (S = float or double, read as double), outputs d2 [N, k]
// double and idx [N, k] int64, ascending. Threads: OpenMP over the queries.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

namespace {

constexpr int64_t kLeaf = 16;

struct Node {
    int64_t lo, hi;      // the refs order[lo:hi] below this node
    int32_t left, right; // children (-1 for a leaf)
    int axis;
    double split;
};

struct Tree {
    std::vector<double> pts;     // refs as double [J, 3]
    std::vector<int64_t> order;  // ref indices, grouped by node
    std::vector<Node> nodes;

    int32_t build(int64_t lo, int64_t hi) {
        const int32_t id = int32_t(nodes.size());
        nodes.push_back(Node{lo, hi, -1, -1, 0, 0.0});
        if (hi - lo <= kLeaf) return id;
        double mn[3], mx[3];
        for (int a = 0; a < 3; ++a) mn[a] = mx[a] = pts[3 * order[lo] + a];
        for (int64_t s = lo; s < hi; ++s)
            for (int a = 0; a < 3; ++a) {
                const double v = pts[3 * order[s] + a];
                mn[a] = std::min(mn[a], v), mx[a] = std::max(mx[a], v);
            }
        int axis = 0;
        for (int a = 1; a < 3; ++a)
            if (mx[a] - mn[a] > mx[axis] - mn[axis]) axis = a;
        if (!(mx[axis] > mn[axis])) return id;  // all these refs coincide: one leaf, however many
        const int64_t mid = lo + (hi - lo) / 2;
        const double *P = pts.data();
        std::nth_element(order.begin() + lo, order.begin() + mid, order.begin() + hi,
                         [P, axis](int64_t i, int64_t j) { return P[3 * i + axis] < P[3 * j + axis]; });
        const double split = pts[3 * order[mid] + axis];
        const int32_t left = build(lo, mid);
        const int32_t right = build(mid, hi);
        nodes[id].left = left, nodes[id].right = right, nodes[id].axis = axis, nodes[id].split = split;
        return id;
    }
};

template <typename S>
Tree build_tree(int64_t J, const S *refs) {
    Tree t;
    t.pts.resize(3 * J);
    for (int64_t j = 0; j < 3 * J; ++j) t.pts[j] = double(refs[j]);
    t.order.resize(J);
    for (int64_t j = 0; j < J; ++j) t.order[j] = j;
    t.nodes.reserve(size_t(4 * (J / kLeaf + 1)));
    t.build(0, J);
    return t;
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

struct Query {
    const Tree &t;
    Best &best;
    double q[3];
    int64_t self;  // the query's own index with exclude_self, else -1

    void visit(int32_t id) {
        const Node &node = t.nodes[id];
        if (node.left < 0) {
            for (int64_t s = node.lo; s < node.hi; ++s) {
                const int64_t j = t.order[s];
                if (j == self) continue;
                const double *p = &t.pts[3 * j];
                const double dx = q[0] - p[0], dy = q[1] - p[1], dz = q[2] - p[2];
                best.offer((dx * dx + dy * dy) + dz * dz, j);
            }
            return;
        }
        const double diff = q[node.axis] - node.split;
        const int32_t near = diff < 0 ? node.left : node.right, far = diff < 0 ? node.right : node.left;
        visit(near);
        if (best.count < best.k || diff * diff <= best.d[best.k - 1]) visit(far);
    }
};

template <typename S>
void knn_tree(int64_t N, int64_t J, int k, int exclude_self, const S *queries, const S *refs, double *d2_out,
              int64_t *idx_out, int n_threads) {
    const Tree tree = build_tree<S>(J, refs);
    const int nt = N < 2048 ? 1 : std::max(1, n_threads);
#pragma omp parallel num_threads(nt)
    {
        Best best(k);
#pragma omp for schedule(dynamic, 256)
        for (int64_t n = 0; n < N; ++n) {
            best.reset();
            Query query{tree, best, {double(queries[3 * n]), double(queries[3 * n + 1]), double(queries[3 * n + 2])},
                        exclude_self ? n : -1};
            query.visit(0);
            for (int m = 0; m < k; ++m) d2_out[n * k + m] = best.d[m], idx_out[n * k + m] = best.i[m];
        }
    }
}

}  // namespace

#define ST_EXPORT(S, SUFFIX)                                                                          \
    extern "C" void st_knn_##SUFFIX(int64_t N, int64_t J, int k, int exclude_self, const S *queries,  \
                                    const S *refs, double *d2_out, int64_t *idx_out, int n_threads) { \
        knn_tree<S>(N, J, k, exclude_self, queries, refs, d2_out, idx_out, n_threads);               \
    }

ST_EXPORT(float, f32)
ST_EXPORT(double, f64)
