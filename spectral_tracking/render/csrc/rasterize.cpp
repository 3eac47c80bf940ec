// Tile-based alpha compositing of projected 3D Gaussians on the CPU: forward and backward.
//
// The C++ twin of gsplat's rasterize_to_pixels (RasterizeToPixels3DGS{Fwd,Bwd}.cu) and of the
// PyTorch reference in ../torch_ref.py; it gives the same per-pixel result. Plain C++ with an
// extern "C" interface (prototypes tabled in ../../native.py, called from ../cpu.py), parallelised
// over tiles with OpenMP.
//
// Layouts (all row-major, contiguous; S is float or double; M = V * N flattened Gaussians):
//   means2d [M, 2], conics [M, 3] = (a, b, c), features [M, 4] = (r, g, b, camera z), opacities [M],
//   background [V, 3]
//   tile_offsets [V * tiles_y * tiles_x + 1], flatten_ids [n_isects]: the Gaussians of each tile,
//   front to back (built by bin_count / bin_fill below, or projection.bin_tiles)
//   outputs rgb [V, H, W, 3] (over the background), alpha [V, H, W], depth [V, H, W] (sum of
//   weight * z divided by max(alpha, 1e-10)), last_ids [V, H, W] (index into flatten_ids of the last
//   Gaussian blended into the pixel, -1 if none)
// The background and the depth normalisation are done here, not in torch, so that no image-sized
// torch op runs per render (each is a multi-threaded region that stalls on a busy 2-core machine).
//
// Threads: OpenMP, torch.get_num_threads() of them. Compiled with g++ -fopenmp, the library needs
// libgomp.so.1, which the loader resolves to the copy torch has loaded when torch's OpenMP runtime is
// GNU libgomp under that soname (the Linux pip wheel used here): it then shares torch's thread pool.
// Other torch builds give it a second pool (see ../../native.py). (A separate pool, e.g. std::thread
// workers, competes with torch's spinning OpenMP workers: measured 3x slower on a busy 2-core machine.)
//
// Unlike the GPU kernel, which runs one thread per pixel, a CPU thread takes a whole tile and walks
// its Gaussian list once, visiting only the pixels of the tile where alpha >= 1/255 is possible
// (the ellipse's bounding box), a row's pixels in SIMD lanes (below). Each pixel still sees the
// Gaussians in the same order and applies the same tests, so the result is the same up to the
// exponential's rounding (a polynomial here, within 2 ulp in float, not CUDA's __expf).

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <type_traits>
#include <vector>

namespace {

// Run body(worker_state, task) for task in [0, n_tasks) on up to n_threads OpenMP threads, tasks
// handed out dynamically. Each thread builds its scratch state once with make_state().
template <typename MakeState, typename Body>
void parallel_tasks(int n_tasks, int n_threads, MakeState make_state, Body body) {
    n_threads = std::max(1, std::min(n_threads, n_tasks / 2));
#pragma omp parallel num_threads(n_threads)
    {
        auto state = make_state();
#pragma omp for schedule(dynamic, 1)
        for (int t = 0; t < n_tasks; ++t) body(state, t);
    }
}

constexpr int C = 4;  // blended channels: r, g, b, camera z

template <typename S>
struct Consts {
    static constexpr S alpha_threshold = S(1.0 / 255.0);
    static constexpr S alpha_max = S(0.999);
    static constexpr S t_stop = S(1e-4);
};

// What the tile walks read of one Gaussian, packed into one record (one cache line in float) so that
// an entry of a tile's list costs one random read instead of four (means2d, conics, opacities,
// colours), and computed once per Gaussian instead of once per (tile, Gaussian) entry: the log and
// square roots of its footprint were most of an entry's cost at 300k small Gaussians, where almost
// every entry lands on pixels that are already saturated (forward) or behind their last Gaussian
// (backward).
// The forward writes the records to a buffer of 16 S values per Gaussian that the backward reads
// back (``records`` [V * N * 16]; 64 bytes in float).
constexpr int RECORD = 16;
template <typename S>
struct Record {
    S mx, my, a, b, c, op;
    S smax;  // sigma above which o * exp(-sigma) < 1/255 for sure (with a safety margin)
    S col[C];
    int32_t x0, x1, y0, y1;  // pixel rectangle [x0, x1) x [y0, y1) outside of which alpha < 1/255; empty if culled
    char pad[RECORD * sizeof(S) - (7 + C) * sizeof(S) - 4 * sizeof(int32_t)];
};
static_assert(sizeof(Record<float>) == RECORD * sizeof(float) && sizeof(Record<double>) == RECORD * sizeof(double));

// Integer bounds of the footprint: a NaN or huge bound leaves the tile's own bound in force (as
// std::max / std::min with the tile's did before).
inline int32_t lo_bound(double v) { return v >= -1e9 ? (v <= 1e9 ? int32_t(v) : int32_t(1e9)) : int32_t(-1e9); }
inline int32_t hi_bound(double v) { return v <= 1e9 ? (v >= -1e9 ? int32_t(v) : int32_t(-1e9)) : int32_t(1e9); }

template <typename S>
inline void make_record(const S *means2d, const S *conics, const S *colors, const S *opacities, int64_t g,
                        Record<S> &r) {
    r.mx = means2d[2 * g]; r.my = means2d[2 * g + 1];
    r.a = conics[3 * g]; r.b = conics[3 * g + 1]; r.c = conics[3 * g + 2];
    r.op = opacities[g];
    for (int ch = 0; ch < C; ++ch) r.col[ch] = colors[g * C + ch];
    r.smax = S(0);
    r.x0 = r.y0 = 0; r.x1 = r.y1 = 0;  // empty
    if (!(r.op >= Consts<S>::alpha_threshold)) return;
    const double s = std::log(double(r.op) / (1.0 / 255.0));  // sigma at which o exp(-sigma) = 1/255
    r.smax = S(s + 1e-3);
    const double a = r.a, b = r.b, c = r.c, det = a * c - b * b;
    if (det > 0 && a > 0 && c > 0) {
        // |dx| <= sqrt(2 s Sigma_xx) on the ellipse sigma = s, with Sigma = inverse(conic)
        // (the 1e-3 margin on s and the 1e-4 px below absorb float rounding; a pixel the box keeps
        // is still tested exactly); integer x with pixel centre x + 0.5 in [mx - ex, mx + ex]
        const double ex = std::sqrt(2.0 * (s + 1e-3) * c / det) + 1e-4;
        const double ey = std::sqrt(2.0 * (s + 1e-3) * a / det) + 1e-4;
        r.x0 = lo_bound(std::ceil(double(r.mx) - ex - 0.5));
        r.x1 = hi_bound(std::floor(double(r.mx) + ex - 0.5) + 1.0);
        r.y0 = lo_bound(std::ceil(double(r.my) - ey - 0.5));
        r.y1 = hi_bound(std::floor(double(r.my) + ey - 0.5) + 1.0);
    } else {  // no bounded ellipse: every pixel is tested
        r.x0 = r.y0 = int32_t(-1e9);
        r.x1 = r.y1 = int32_t(1e9);
    }
}

template <typename S>
void make_records(int64_t M, const S *means2d, const S *conics, const S *colors, const S *opacities,
                  Record<S> *recs, int n_threads) {
    const int threads = int(std::max<int64_t>(1, std::min<int64_t>(n_threads, M / 16384)));
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t g = 0; g < M; ++g) make_record(means2d, conics, colors, opacities, g, recs[g]);
}

// The record's rectangle inside the tile [tx0, tx1) x [ty0, ty1); false when empty.
template <typename S>
inline bool clip(const Record<S> &r, int tx0, int ty0, int tx1, int ty1, int &x0, int &x1, int &y0, int &y1) {
    x0 = std::max(tx0, int(r.x0)); x1 = std::min(tx1, int(r.x1));
    y0 = std::max(ty0, int(r.y0)); y1 = std::min(ty1, int(r.y1));
    return x0 < x1 && y0 < y1;
}

// Pixels of a tile as one 64-bit mask per row (tiles up to 64 pixels wide: cpu.py's MAX_TILE, checked
// there): the walks test a Gaussian's rectangle against the pixels still open before any arithmetic,
// and visit only those, in the same order (row by row, left to right) as a loop over the rectangle.
// How many entries ahead of the walk a record is prefetched: the records are read in depth order, which
// is random in memory, so without it most entries wait for memory.
constexpr int PREFETCH = 16;
inline uint64_t span_bits(int lo, int hi) {  // bits [lo, hi), 0 <= lo < hi <= 64
    const uint64_t upto = hi >= 64 ? ~uint64_t(0) : (uint64_t(1) << hi) - 1;
    return upto & ~((uint64_t(1) << lo) - 1);
}

// Whether the record's rectangle inside the tile covers a pixel still open (``open``: one mask per row
// of the tile); its rectangle and its columns' mask ``xs`` when so.
template <typename S>
inline bool over_open(const Record<S> &r, int tx0, int ty0, int tx1, int ty1, const uint64_t *open, int &x0,
                      int &x1, int &y0, int &y1, uint64_t &xs) {
    if (!clip(r, tx0, ty0, tx1, ty1, x0, x1, y0, y1)) return false;
    xs = span_bits(x0 - tx0, x1 - tx0);
    for (int y = y0; y < y1; ++y)
        if (open[y - ty0] & xs) return true;
    return false;
}

// The walks below take a row of a record's rectangle in chunks of L pixels, the pixels of a chunk in
// the lanes of one SIMD vector (GCC's vector extensions: ``Lanes<S>::V`` is 8 values, one AVX-512 or
// AVX2 register in float; the compiler splits it where the machine's vectors are shorter). The scalar
// walk's tests become lane masks, and a pixel not open or not hit keeps its values. A tile's scratch
// arrays have rows of ``ts + L`` values, so a chunk starting at any column stays inside its row (the
// columns past the tile are never open).
constexpr int L = 8;
template <typename S> struct Lanes;
template <> struct Lanes<float> {
    typedef float V __attribute__((vector_size(L * sizeof(float))));
    typedef int32_t I __attribute__((vector_size(L * sizeof(float))));  // masks and integers beside V
};
template <> struct Lanes<double> {
    typedef double V __attribute__((vector_size(L * sizeof(double))));
    typedef int64_t I __attribute__((vector_size(L * sizeof(double))));
};
typedef int32_t LastLanes __attribute__((vector_size(L * sizeof(int32_t))));

template <typename V> inline V load(const void *p) { V v; std::memcpy(&v, p, sizeof(V)); return v; }
template <typename V> inline void store(void *p, V v) { std::memcpy(p, &v, sizeof(V)); }
template <typename V, typename S> inline V splat(S s) { return V{} + s; }

// exp(x) for x <= 0 in the lanes (the C library's exp is a call per value): x = n ln2 + r with
// |r| <= ln2 / 2, exp(r) by a polynomial (float: Cephes' expf, within 2 ulp; double: Taylor to degree
// 13, within 1e-16 relative), times 2^n made in the exponent bits. Below -80 (float) or -700 (double)
// it returns exp(-80) or exp(-700): the walks take it of -sigma for sigma in [0, smax], smax < 6 for
// opacities up to 1. The forward and the backward both use it, so the backward's alphas are the forward's.
inline Lanes<float>::V exp_lanes(Lanes<float>::V x) {
    using V = Lanes<float>::V; using I = Lanes<float>::I;
    x = x < -80.0f ? splat<V>(-80.0f) : x;
    const float magic = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer in the low bits
    const V t = x * 1.44269504088896341f + magic;
    const I n = (I)t - (I)splat<V>(magic);
    const V fn = t - magic;
    const V r = (x - fn * 0.693359375f) - fn * -2.12194440e-4f;
    V p = splat<V>(1.9875691500e-4f);
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    const V e = p * r * r + r + 1.0f;
    return e * (V)((n + 127) << 23);
}
inline Lanes<double>::V exp_lanes(Lanes<double>::V x) {
    using V = Lanes<double>::V; using I = Lanes<double>::I;
    x = x < -700.0 ? splat<V>(-700.0) : x;
    const double magic = 6755399441055744.0;  // 1.5 * 2^52
    const V t = x * 1.4426950408889634074 + magic;
    const I n = (I)t - (I)splat<V>(magic);
    const V fn = t - magic;
    const V r = (x - fn * 6.93145751953125e-1) - fn * 1.42860682030941723212e-6;
    V p = splat<V>(1.6059043836821613e-10);  // 1 / 13!, then 1 / 12! ... 1 / 2!
    p = p * r + 2.08767569878681e-9;
    p = p * r + 2.505210838544172e-8;
    p = p * r + 2.755731922398589e-7;
    p = p * r + 2.7557319223985893e-6;
    p = p * r + 2.48015873015873e-5;
    p = p * r + 1.984126984126984e-4;
    p = p * r + 1.388888888888889e-3;
    p = p * r + 8.333333333333333e-3;
    p = p * r + 4.1666666666666664e-2;
    p = p * r + 1.6666666666666666e-1;
    p = p * r + 0.5;
    const V e = p * r * r + r + 1.0;
    return e * (V)((n + 1023) << 52);
}

// What a chunk's lanes share: the pixel columns' offsets 0..L-1 and each lane's bit.
template <typename S> struct LaneConsts {
    using V = typename Lanes<S>::V; using I = typename Lanes<S>::I;
    V iota; I bit;
    LaneConsts() { for (int i = 0; i < L; ++i) { iota[i] = S(i); bit[i] = 1 << i; } }
};
template <typename I> inline uint32_t lane_bits(I m) {  // bit i set where lane i of the mask is set
    uint32_t bits = 0;
    for (int i = 0; i < L; ++i) bits |= uint32_t(m[i] & 1) << i;
    return bits;
}

// The Gaussian's sigma at the chunk's pixels of row y and its mask of lanes hit (open, sigma in
// [0, smax]); alpha = min(alpha_max, op * vis) with vis = exp(-sigma) where hit.
template <typename S> struct ChunkHit {
    typename Lanes<S>::V dx, vis, alpha;
    typename Lanes<S>::I on;  // hit and alpha >= 1/255: the lanes the scalar walk would blend
};
template <typename S>
inline ChunkHit<S> chunk_hit(const Record<S> &rec, const LaneConsts<S> &lc, int x, S dy, uint32_t lanes) {
    using V = typename Lanes<S>::V; using I = typename Lanes<S>::I;
    ChunkHit<S> h;
    h.dx = rec.mx - ((lc.iota + S(x)) + S(0.5));
    const V sigma = S(0.5) * (rec.a * h.dx * h.dx + rec.c * dy * dy) + rec.b * h.dx * dy;
    const I hit = ((lc.bit & I(splat<I>(lanes))) != 0) & (sigma >= S(0)) & (sigma <= rec.smax);
    h.vis = exp_lanes(hit ? -sigma : V{});
    const V ov = rec.op * h.vis;
    h.alpha = ov < Consts<S>::alpha_max ? ov : splat<V>(Consts<S>::alpha_max);
    h.on = hit & (h.alpha >= Consts<S>::alpha_threshold);
    return h;
}

// body(row, j0, dy, lanes) for each chunk of L pixels of the rectangle [x0, x1) x [y0, y1) inside the
// tile at (tx0, ty0) with an open pixel (``open`` & ``xs``, read once per row): row and first column
// j0 in the tile, dy = my - the row's pixel centre, and the chunk's open pixels as bits from j0.
template <typename S, typename Body>
inline void for_open_chunks(const uint64_t *open, uint64_t xs, int x0, int x1, int y0, int y1, int tx0, int ty0,
                            S my, Body body) {
    for (int y = y0; y < y1; ++y) {
        const int row = y - ty0;
        const uint64_t row_bits = open[row] & xs;
        if (!row_bits) continue;
        const S dy = my - (S(y) + S(0.5));
        for (int j0 = x0 - tx0; j0 < x1 - tx0; j0 += L) {
            const uint32_t lanes = uint32_t(row_bits >> j0) & ((1u << L) - 1);
            if (lanes) body(row, j0, dy, lanes);
        }
    }
}

template <typename S>
void rasterize_fwd(int V, int N, int H, int W, int ts, int tiles_x, int tiles_y,
                   const S *means2d, const S *conics, const S *colors, const S *opacities,
                   const S *background, const int32_t *tile_offsets, const int32_t *flatten_ids,
                   S *rgb_out, S *alpha_out, S *depth_out, int32_t *last_ids, S *records, int n_threads) {
    const int tiles_per_view = tiles_x * tiles_y;
    const int n_tiles = V * tiles_per_view;
    Record<S> *recs = reinterpret_cast<Record<S> *>(records);
    make_records(int64_t(V) * N, means2d, conics, colors, opacities, recs, n_threads);
    const int RS = ts + L, PS = ts * RS;  // scratch row stride, and the size of one channel's plane
    const LaneConsts<S> lc;
    struct Scratch {
        std::vector<S> T, acc;  // acc: C planes of PS
        std::vector<int32_t> last;
        std::vector<uint64_t> open;  // per row of the tile: pixels not yet saturated
    };
    auto make_state = [&]() { return Scratch{std::vector<S>(PS, S(1)), std::vector<S>(C * PS, S(0)),
                                             std::vector<int32_t>(PS, -1), std::vector<uint64_t>(ts)}; };
    parallel_tasks(n_tiles, n_threads, make_state, [&](Scratch &sc, int t) {
            S *T = sc.T.data(), *acc = sc.acc.data();
            int32_t *last = sc.last.data();
            uint64_t *open = sc.open.data();
            const int v = t / tiles_per_view, r = t % tiles_per_view;
            const int tx0 = (r % tiles_x) * ts, ty0 = (r / tiles_x) * ts;
            const int tx1 = std::min(tx0 + ts, W), ty1 = std::min(ty0 + ts, H);
            const int tw = tx1 - tx0, th = ty1 - ty0, n_pix = tw * th;
            for (int row = 0; row < th; ++row) {
                std::fill_n(T + row * RS, tw, S(1));
                for (int ch = 0; ch < C; ++ch) std::fill_n(acc + ch * PS + row * RS, tw, S(0));
                std::fill_n(last + row * RS, tw, -1);
                open[row] = span_bits(0, tw);
            }
            int n_done = 0;
            const int start = tile_offsets[t], end = tile_offsets[t + 1];
            for (int k = start; k < end && n_done < n_pix; ++k) {
                if (k + PREFETCH < end) __builtin_prefetch(&recs[flatten_ids[k + PREFETCH]]);
                const Record<S> &rec = recs[flatten_ids[k]];
                int x0, x1, y0, y1;
                uint64_t xs;
                if (!over_open(rec, tx0, ty0, tx1, ty1, open, x0, x1, y0, y1, xs)) continue;
                for_open_chunks(open, xs, x0, x1, y0, y1, tx0, ty0, rec.my, [&](int row, int j0, S dy, uint32_t lanes) {
                    using V = typename Lanes<S>::V;
                    using I = typename Lanes<S>::I;
                    S *Tr = T + row * RS + j0, *ar = acc + row * RS + j0;
                    int32_t *lr = last + row * RS + j0;
                    const ChunkHit<S> h = chunk_hit(rec, lc, tx0 + j0, dy, lanes);
                    const V Tp = load<V>(Tr);
                    const V next_T = Tp * (S(1) - h.alpha);
                    const I stop = h.on & (next_T <= Consts<S>::t_stop);  // pixel saturated: exclusive stop
                    const I blend = h.on & ~stop;
                    const V w = h.alpha * Tp;
                    for (int ch = 0; ch < C; ++ch) {
                        const V acc_ch = load<V>(ar + ch * PS);
                        store(ar + ch * PS, blend ? acc_ch + rec.col[ch] * w : acc_ch);
                    }
                    store(Tr, blend ? next_T : Tp);
                    const LastLanes last_k = load<LastLanes>(lr);
                    store(lr, __builtin_convertvector(blend, LastLanes) ? splat<LastLanes>(k) : last_k);
                    const uint32_t sat = lane_bits(stop);
                    if (sat) {
                        open[row] &= ~(uint64_t(sat) << j0);
                        n_done += std::popcount(sat);
                    }
                });
            }
            for (int y = ty0; y < ty1; ++y) {
                for (int x = tx0; x < tx1; ++x) {
                    const int p = (y - ty0) * RS + (x - tx0);
                    const int64_t pix = (int64_t(v) * H + y) * W + x;
                    const S alpha = S(1) - T[p];
                    alpha_out[pix] = alpha;
                    last_ids[pix] = last[p];
                    for (int ch = 0; ch < 3; ++ch) rgb_out[pix * 3 + ch] = acc[ch * PS + p] + T[p] * background[3 * v + ch];
                    depth_out[pix] = acc[3 * PS + p] / std::max(alpha, S(1e-10));
                }
            }
    });
}

// The backward's gradients are deterministic for any number of threads: each (tile, Gaussian)
// entry of the lists that has a gradient writes its own slot of G values and its Gaussian's index,
// once, from the one task that owns its tile (packed at the start of the tile's range of entries, in
// the walk's order: back to front), and the slots are then summed into each Gaussian's gradient
// tile by tile (a Gaussian has one entry per tile), whatever thread did what. (Atomic adds from the
// tiles, as gsplat does on the GPU, summed in the order the threads happened to finish: two runs of
// one config then differed in the last bits, and a tracking run amplifies those to about 1 dB by its
// end; see docs/performance.md.)
constexpr int G = C + 6;  // per entry: colours and z (C), conic (3), mean 2D (2), opacity (1)

template <typename S>
void rasterize_bwd(int V, int N, int H, int W, int ts, int tiles_x, int tiles_y, const S *records,
                   const S *background, const int32_t *tile_offsets, const int32_t *flatten_ids,
                   const S *alpha_out, const S *depth_out, const int32_t *last_ids,
                   const S *v_rgb, const S *v_alpha_out, const S *v_depth,
                   S *v_means2d, S *v_conics, S *v_colors, S *v_opacities, S *v_background, int n_threads) {
    const int tiles_per_view = tiles_x * tiles_y;
    const int n_tiles = V * tiles_per_view;
    const Record<S> *recs = reinterpret_cast<const Record<S> *>(records);
    const int RS = ts + L, PS = ts * RS;  // as in the forward
    const LaneConsts<S> lc;
    struct Scratch {
        std::vector<S> T, T_final, buf, vC, vA;  // buf, vC: C planes of PS
        std::vector<int32_t> last, by_last;
        std::vector<uint64_t> open;  // per row of the tile: pixels whose last Gaussian is at or behind entry k
    };
    auto make_state = [&]() {
        return Scratch{std::vector<S>(PS, S(1)), std::vector<S>(PS, S(1)), std::vector<S>(C * PS, S(0)),
                       std::vector<S>(C * PS, S(0)), std::vector<S>(PS, S(0)), std::vector<int32_t>(PS, -1),
                       std::vector<int32_t>(PS), std::vector<uint64_t>(ts)};
    };
    const int64_t n_entries = tile_offsets[n_tiles];
    // tile t's slots and their Gaussians at [tile_offsets[t], tile_offsets[t] + n_slots[t])
    std::unique_ptr<S[]> slots(new S[std::max<int64_t>(1, n_entries) * G]);
    std::unique_ptr<int32_t[]> slot_ids(new int32_t[std::max<int64_t>(1, n_entries)]);
    std::vector<int32_t> n_slots(n_tiles);
    std::vector<S> tile_bg(size_t(3) * n_tiles);
    parallel_tasks(n_tiles, n_threads, make_state, [&](Scratch &sc, int t) {
            S *T = sc.T.data(), *T_final = sc.T_final.data(), *buf = sc.buf.data(), *vC = sc.vC.data();
            S *vA = sc.vA.data();
            int32_t *last = sc.last.data(), *by_last = sc.by_last.data();
            uint64_t *open = sc.open.data();
            const int start = tile_offsets[t];
            const int v = t / tiles_per_view, r = t % tiles_per_view;
            const int tx0 = (r % tiles_x) * ts, ty0 = (r / tiles_x) * ts;
            const int tx1 = std::min(tx0 + ts, W), ty1 = std::min(ty0 + ts, H);
            const int tw = tx1 - tx0, th = ty1 - ty0;
            int max_last = -1;
            S v_bg[3] = {0, 0, 0};
            for (int y = ty0; y < ty1; ++y) {
                for (int x = tx0; x < tx1; ++x) {
                    const int p = (y - ty0) * RS + (x - tx0);
                    const int64_t pix = (int64_t(v) * H + y) * W + x;
                    const S alpha = alpha_out[pix];
                    T[p] = T_final[p] = S(1) - alpha;
                    last[p] = last_ids[pix];
                    max_last = std::max(max_last, last[p]);
                    // rgb = acc_rgb + T_final * bg and depth = acc_z / max(alpha, 1e-10): turn the
                    // output gradients into gradients of the blended sums and of alpha
                    const S denom = std::max(alpha, S(1e-10));
                    S va = v_alpha_out[pix];
                    for (int ch = 0; ch < 3; ++ch) {
                        const S g = v_rgb[pix * 3 + ch];
                        vC[ch * PS + p] = g;
                        va -= background[3 * v + ch] * g;
                        v_bg[ch] += T_final[p] * g;
                    }
                    vC[3 * PS + p] = v_depth[pix] / denom;
                    if (alpha >= S(1e-10)) va -= v_depth[pix] * depth_out[pix] / denom;
                    vA[p] = va;
                    for (int ch = 0; ch < C; ++ch) buf[ch * PS + p] = S(0);
                }
            }
            for (int ch = 0; ch < 3; ++ch) tile_bg[size_t(3) * t + ch] = v_bg[ch];
            // pixels by their last Gaussian, latest first: walking back, each opens at its own
            int n_open = 0;
            for (int y = 0; y < th; ++y)
                for (int x = 0; x < tw; ++x)
                    if (last[y * RS + x] >= start) by_last[n_open++] = y * RS + x;
            std::stable_sort(by_last, by_last + n_open, [&](int32_t p, int32_t q) { return last[p] > last[q]; });
            std::fill(open, open + th, uint64_t(0));
            int next_open = 0;
            // back to front, starting at the last Gaussian any pixel of the tile blended (the entries
            // behind it have no gradient)
            int n_slot = 0;
            for (int k = max_last; k >= start; --k) {
                for (; next_open < n_open && last[by_last[next_open]] >= k; ++next_open) {
                    const int p = by_last[next_open];
                    open[p / RS] |= uint64_t(1) << (p % RS);
                }
                if (k - PREFETCH >= start) __builtin_prefetch(&recs[flatten_ids[k - PREFETCH]]);
                const Record<S> &rec = recs[flatten_ids[k]];
                int x0, x1, y0, y1;
                uint64_t xs;
                if (!over_open(rec, tx0, ty0, tx1, ty1, open, x0, x1, y0, y1, xs)) continue;
                using V = typename Lanes<S>::V;
                using I = typename Lanes<S>::I;
                // the entry's gradient terms, per lane (colours and z, conic, mean 2D, opacity), summed
                // over the lanes, lane 0 first, once the entry is done
                V gl[G] = {};
                I touched{};
                for_open_chunks(open, xs, x0, x1, y0, y1, tx0, ty0, rec.my, [&](int row, int j0, S dy, uint32_t lanes) {
                    const int q = row * RS + j0;
                    const ChunkHit<S> h = chunk_hit(rec, lc, tx0 + j0, dy, lanes);
                    touched |= h.on;
                    const V ra = S(1) / (S(1) - h.alpha);
                    const V T_old = load<V>(T + q);
                    const V Tp = T_old * ra;  // transmittance in front of this Gaussian
                    const V fac = h.alpha * Tp;
                    V v_alpha = load<V>(T_final + q) * ra * load<V>(vA + q);
                    for (int ch = 0; ch < C; ++ch) {
                        const V vc = load<V>(vC + ch * PS + q);
                        const V bc = load<V>(buf + ch * PS + q);
                        gl[ch] += h.on ? fac * vc : V{};
                        v_alpha += (rec.col[ch] * Tp - bc * ra) * vc;
                        store(buf + ch * PS + q, h.on ? bc + rec.col[ch] * fac : bc);
                    }
                    store(T + q, h.on ? Tp : T_old);
                    // no gradient through the clamp
                    const I grad = h.on & (rec.op * h.vis <= Consts<S>::alpha_max);
                    const V v_sigma = grad ? -rec.op * h.vis * v_alpha : V{};
                    gl[C] += S(0.5) * v_sigma * h.dx * h.dx;
                    gl[C + 1] += v_sigma * h.dx * dy;
                    gl[C + 2] += S(0.5) * v_sigma * dy * dy;
                    gl[C + 3] += v_sigma * (rec.a * h.dx + rec.b * dy);
                    gl[C + 4] += v_sigma * (rec.b * h.dx + rec.c * dy);
                    gl[C + 5] += grad ? h.vis * v_alpha : V{};
                });
                if (!lane_bits(touched)) continue;
                S sum[G];
                for (int j = 0; j < G; ++j) {
                    S acc = 0;
                    for (int i = 0; i < L; ++i) acc += gl[j][i];
                    sum[j] = acc;
                }
                std::memcpy(slots.get() + int64_t(start + n_slot) * G, sum, sizeof(sum));
                slot_ids[start + n_slot++] = flatten_ids[k];
            }
            n_slots[t] = n_slot;
    });
    // Add the slots into the Gaussians' gradients in their order. Each chunk owns a contiguous range
    // of Gaussians and scans every slot for its own, so no two threads add into one row. The sums are
    // formed in the gradient arrays themselves: from the zeros the caller passes, the same bits as
    // summing apart and adding once.
    const int64_t M = int64_t(V) * N;
    int64_t n_written = 0;
    for (int64_t t = 0; t < n_tiles; ++t) n_written += n_slots[t];
    const int chunks = int(std::max<int64_t>(1, std::min<int64_t>(n_threads, n_written / 32768)));
#pragma omp parallel for num_threads(chunks) schedule(static)
    for (int c = 0; c < chunks; ++c) {
        const int64_t lo = M * c / chunks, hi = M * (c + 1) / chunks;
        for (int64_t t = 0; t < n_tiles; ++t) {
            for (int64_t k = tile_offsets[t]; k < tile_offsets[t] + n_slots[t]; ++k) {
                const int64_t g = slot_ids[k];
                if (g < lo || g >= hi) continue;
                const S *slot = slots.get() + k * G;
                for (int ch = 0; ch < C; ++ch) v_colors[g * C + ch] += slot[ch];
                for (int j = 0; j < 3; ++j) v_conics[3 * g + j] += slot[C + j];
                v_means2d[2 * g] += slot[C + 3];
                v_means2d[2 * g + 1] += slot[C + 4];
                v_opacities[g] += slot[C + 5];
            }
        }
    }
    for (int64_t t = 0; t < n_tiles; ++t) {
        const int64_t v = t / tiles_per_view;
        for (int ch = 0; ch < 3; ++ch) v_background[3 * v + ch] += tile_bg[size_t(3) * t + ch];
    }
}


// Tile rectangle [x0, x1) x [y0, y1) of a Gaussian, in tiles; false when culled or empty. The same
// float arithmetic as projection.bin_tiles, so both produce identical lists.
template <typename S>
inline bool tile_rect(const S *means2d, const int32_t *radii, int64_t g, int ts, int tiles_x, int tiles_y,
                      int &x0, int &x1, int &y0, int &y1) {
    const int32_t rx = radii[2 * g], ry = radii[2 * g + 1];
    if (rx <= 0 || ry <= 0) return false;
    const S mx = means2d[2 * g], my = means2d[2 * g + 1];
    auto clampi = [](S v, int hi) { return v < S(0) ? 0 : (v > S(hi) ? hi : int(v)); };
    x0 = clampi(std::floor((mx - S(rx)) / S(ts)), tiles_x);
    x1 = clampi(std::ceil((mx + S(rx)) / S(ts)), tiles_x);
    y0 = clampi(std::floor((my - S(ry)) / S(ts)), tiles_y);
    y1 = clampi(std::ceil((my + S(ry)) / S(ts)), tiles_y);
    return x0 < x1 && y0 < y1;
}

// The binning's passes split the Gaussians into ``chunks`` contiguous ranges, one task each (the
// caller's number, the same for both passes: ``cpu.py``'s ``bin_chunks``), counted per tile into a row
// of their own and summed in chunk order, so the lists are the same for any number of threads and
// chunks (tests/test_render.py).
inline int64_t chunk_begin(int64_t n_items, int64_t chunks, int64_t c) { return n_items * c / chunks; }

template <typename Body>
void for_chunks(int64_t n_items, int64_t chunks, int n_threads, Body body) {
    const int threads = int(std::max<int64_t>(1, std::min<int64_t>(n_threads, chunks)));
#pragma omp parallel for num_threads(threads) schedule(dynamic, 1)
    for (int64_t c = 0; c < chunks; ++c) body(c, chunk_begin(n_items, chunks, c), chunk_begin(n_items, chunks, c + 1));
}

// A tile rectangle packed into 64 bits, 16 per bound (tiles_x, tiles_y <= 65535: cpu.py refuses more);
// 0 (x0 = x1 = 0) is empty.
inline int64_t pack_rect(int x0, int x1, int y0, int y1) {
    return int64_t(uint64_t(x0) | uint64_t(x1) << 16 | uint64_t(y0) << 32 | uint64_t(y1) << 48);
}
inline void unpack_rect(int64_t r, int &x0, int &x1, int &y0, int &y1) {
    const uint64_t u = uint64_t(r);
    x0 = int(u & 0xFFFF), x1 = int(u >> 16 & 0xFFFF), y0 = int(u >> 32 & 0xFFFF), y1 = int(u >> 48);
}

// Pass 1: tile_offsets [V * tiles_y * tiles_x + 1] (exclusive prefix sum of per-tile counts), and for
// pass 2 each Gaussian's tile rectangle (``rects`` [V * N], packed) and each chunk's count per tile
// (``counts`` [chunks * V * tiles_y * tiles_x]), so that pass 2 does not compute them again. Returns
// the number of (tile, Gaussian) intersections.
template <typename S>
int64_t bin_count(int V, int N, int ts, int tiles_x, int tiles_y, int chunks, const S *means2d, const int32_t *radii,
                  int32_t *tile_offsets, int64_t *rects, int64_t *counts, int n_threads) {
    const int64_t n_tiles = int64_t(V) * tiles_x * tiles_y;
    std::fill(counts, counts + int64_t(chunks) * n_tiles, 0);
    for_chunks(int64_t(V) * N, chunks, n_threads, [&](int64_t c, int64_t g0, int64_t g1) {
        int64_t *row = counts + c * n_tiles;
        for (int64_t g = g0; g < g1; ++g) {
            int x0, x1, y0, y1;
            if (!tile_rect(means2d, radii, g, ts, tiles_x, tiles_y, x0, x1, y0, y1)) {
                rects[g] = 0;
                continue;
            }
            rects[g] = pack_rect(x0, x1, y0, y1);
            const int64_t base = (g / N) * tiles_x * tiles_y;
            for (int y = y0; y < y1; ++y)
                for (int x = x0; x < x1; ++x) ++row[base + int64_t(y) * tiles_x + x];
        }
    });
    int64_t total = 0;
    for (int64_t t = 0; t < n_tiles; ++t) {
        tile_offsets[t] = int32_t(total);
        for (int64_t c = 0; c < chunks; ++c) total += counts[c * n_tiles + t];
    }
    tile_offsets[n_tiles] = int32_t(total);
    return total;
}

template <typename U>
inline U ordered_bits(U bits) {  // the float's bits as an unsigned integer in the float's order
    const U sign = U(1) << (sizeof(U) * 8 - 1);
    return (bits & sign) ? U(~bits) : U(bits | sign);
}

// One tile's entries, given in ascending Gaussian index with their depth keys (the depth's bits mapped
// to unsigned integers in the same order), sorted by key with ties kept in index order (the order of
// std::stable_sort by depth): an LSD radix sort, 8-bit digits, a digit every key shares skipped.
// ``keys_tmp`` and ``ids_tmp`` are the caller's scratch.
template <typename U>
void sort_tile(int32_t *ids, U *keys, int64_t n, std::vector<U> &keys_tmp, std::vector<int32_t> &ids_tmp) {
    if (n < 2) return;
    keys_tmp.resize(n); ids_tmp.resize(n);
    int32_t *src = ids, *dst = ids_tmp.data();
    U *ksrc = keys, *kdst = keys_tmp.data();
    size_t count[257];
    for (int shift = 0; shift < int(sizeof(U) * 8); shift += 8) {
        std::fill(count, count + 257, 0);
        for (int64_t i = 0; i < n; ++i) ++count[((ksrc[i] >> shift) & 0xff) + 1];
        if (*std::max_element(count, count + 257) == size_t(n)) continue;  // one bucket: the pass keeps the order
        for (int d = 1; d < 257; ++d) count[d] += count[d - 1];
        for (int64_t i = 0; i < n; ++i) {
            const size_t to = count[(ksrc[i] >> shift) & 0xff]++;
            kdst[to] = ksrc[i];
            dst[to] = src[i];
        }
        std::swap(src, dst);
        std::swap(ksrc, kdst);
    }
    if (src != ids) std::memcpy(ids, src, sizeof(int32_t) * n);
}

// Pass 2: flatten_ids, each tile's list sorted front to back (ties by index). The Gaussians are
// written in index order with their depth keys, in pass 1's chunks, each chunk at its own offsets
// inside every tile (its tile counts, summed in chunk order: the same place for any number of
// threads); then each tile's list is sorted by depth on its own, tiles over the threads. (This
// replaced one radix sort of all Gaussians by depth followed by a serial fill: 12 ms of a 300k-Gaussian
// render on one thread, none of it parallel.) ``counts`` is pass 1's, turned into write cursors here.
template <typename S>
void bin_fill(int V, int N, int tiles_x, int tiles_y, int chunks, const int64_t *rects, const S *depths,
              const int32_t *tile_offsets, int64_t *counts, int32_t *flatten_ids, int n_threads) {
    using U = std::conditional_t<sizeof(S) == 4, uint32_t, uint64_t>;
    static_assert(sizeof(S) == sizeof(U), "depths are float or double");
    const int64_t n_tiles = int64_t(V) * tiles_x * tiles_y;
    for (int64_t t = 0; t < n_tiles; ++t) {
        int64_t at = tile_offsets[t];
        for (int64_t c = 0; c < chunks; ++c) {
            const int64_t n = counts[c * n_tiles + t];
            counts[c * n_tiles + t] = at;
            at += n;
        }
    }
    std::unique_ptr<U[]> keys(new U[size_t(std::max<int32_t>(tile_offsets[n_tiles], 1))]);
    for_chunks(int64_t(V) * N, chunks, n_threads, [&](int64_t c, int64_t g0, int64_t g1) {
        int64_t *row = counts + c * n_tiles;
        for (int64_t g = g0; g < g1; ++g) {
            if (rects[g] == 0) continue;
            int x0, x1, y0, y1;
            unpack_rect(rects[g], x0, x1, y0, y1);
            U bits;
            std::memcpy(&bits, &depths[g], sizeof(S));
            const U key = ordered_bits(bits);
            const int64_t base = (g / N) * tiles_x * tiles_y;
            x1 = std::min(x1, tiles_x), y1 = std::min(y1, tiles_y);
            for (int y = y0; y < y1; ++y)
                for (int x = x0; x < x1; ++x) {
                    const int64_t t = base + int64_t(y) * tiles_x + x;
                    const int64_t at = row[t]++;
                    if (at >= tile_offsets[t + 1]) continue;  // rects or counts not pass 1's: never past the tile
                    flatten_ids[at] = int32_t(g);
                    keys[at] = key;
                }
        }
    });
    const int threads = int(std::max<int64_t>(1, std::min<int64_t>(n_threads, n_tiles)));
#pragma omp parallel num_threads(threads)
    {
        std::vector<U> keys_tmp;
        std::vector<int32_t> ids_tmp;
#pragma omp for schedule(dynamic, 1)
        for (int64_t t = 0; t < n_tiles; ++t)
            sort_tile<U>(flatten_ids + tile_offsets[t], keys.get() + tile_offsets[t],
                         int64_t(tile_offsets[t + 1]) - tile_offsets[t], keys_tmp, ids_tmp);
    }
}

}  // namespace

#define ST_EXPORT(S, SUFFIX)                                                                          \
    extern "C" void st_rasterize_fwd_##SUFFIX(                                                        \
        int V, int N, int H, int W, int ts, int tiles_x, int tiles_y, const S *means2d,               \
        const S *conics, const S *colors, const S *opacities, const S *background,                    \
        const int32_t *tile_offsets, const int32_t *flatten_ids, S *rgb_out, S *alpha_out,            \
        S *depth_out, int32_t *last_ids, S *records, int n_threads) {                                 \
        rasterize_fwd<S>(V, N, H, W, ts, tiles_x, tiles_y, means2d, conics, colors, opacities,        \
                         background, tile_offsets, flatten_ids, rgb_out, alpha_out, depth_out,        \
                         last_ids, records, n_threads);                                               \
    }                                                                                                 \
    extern "C" void st_rasterize_bwd_##SUFFIX(                                                        \
        int V, int N, int H, int W, int ts, int tiles_x, int tiles_y, const S *records,               \
        const S *background, const int32_t *tile_offsets, const int32_t *flatten_ids,                 \
        const S *alpha_out, const S *depth_out, const int32_t *last_ids, const S *v_rgb,              \
        const S *v_alpha_out, const S *v_depth, S *v_means2d, S *v_conics, S *v_colors,               \
        S *v_opacities, S *v_background, int n_threads) {                                             \
        rasterize_bwd<S>(V, N, H, W, ts, tiles_x, tiles_y, records, background, tile_offsets,         \
                         flatten_ids, alpha_out, depth_out, last_ids, v_rgb, v_alpha_out, v_depth,    \
                         v_means2d, v_conics, v_colors, v_opacities, v_background, n_threads);        \
    }                                                                                                 \
    extern "C" int64_t st_bin_count_##SUFFIX(int V, int N, int ts, int tiles_x, int tiles_y,          \
                                             int chunks, const S *means2d, const int32_t *radii,      \
                                             int32_t *tile_offsets, int64_t *rects, int64_t *counts,  \
                                             int n_threads) {                                         \
        return bin_count<S>(V, N, ts, tiles_x, tiles_y, chunks, means2d, radii, tile_offsets, rects,  \
                            counts, n_threads);                                                       \
    }                                                                                                 \
    extern "C" void st_bin_fill_##SUFFIX(int V, int N, int tiles_x, int tiles_y, int chunks,          \
                                         const int64_t *rects, const S *depths,                       \
                                         const int32_t *tile_offsets, int64_t *counts,                \
                                         int32_t *flatten_ids, int n_threads) {                       \
        bin_fill<S>(V, N, tiles_x, tiles_y, chunks, rects, depths, tile_offsets, counts, flatten_ids, \
                    n_threads);                                                                       \
    }

ST_EXPORT(float, f32)
ST_EXPORT(double, f64)
