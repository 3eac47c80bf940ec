"""The one kNN of the package: the brute-force and k-d tree (C++) paths agree bit for bit, ties go to
the lower index."""

import pytest
import torch

from spectral_tracking import knn as knn_module
from spectral_tracking.knn import knn


@pytest.fixture
def tree_path(monkeypatch):
    """Force the k-d tree path (the brute-force path runs only up to BRUTE_FORCE_MAX pairs)."""
    monkeypatch.setattr(knn_module, "BRUTE_FORCE_MAX", 0)


def _grid(n=5):
    """Points of an n^3 integer grid: every inner point has 6 neighbours at exactly distance 1."""
    return torch.stack(torch.meshgrid(*[torch.arange(float(n))] * 3, indexing="ij"), -1).reshape(-1, 3)


@pytest.mark.parametrize("exclude_self", [False, True])
def test_matches_brute_force_sort(exclude_self):
    gen = torch.Generator().manual_seed(0)
    q = torch.randn(400, 3, generator=gen)
    r = q if exclude_self else torch.randn(90, 3, generator=gen)
    d2, idx = knn(q, r, 5, exclude_self=exclude_self, chunk_size=64)
    ref = (q[:, None].double() - r[None].double()).square().sum(-1)
    if exclude_self:
        ref.fill_diagonal_(float("inf"))
    vals, ids = ref.sort(dim=1, stable=True)
    assert torch.equal(idx, ids[:, :5])
    torch.testing.assert_close(d2, vals[:, :5].float())


@pytest.mark.parametrize("exclude_self", [False, True])
def test_tree_path_gives_the_same_answer(exclude_self, monkeypatch):
    gen = torch.Generator().manual_seed(1)
    clusters = torch.cat([torch.randn(300, 3, generator=gen) * 1e-3, torch.randn(300, 3, generator=gen) * 10])
    flat = torch.randn(500, 3, generator=gen) * torch.tensor([1.0, 1.0, 0.0])  # a plane: one axis of zero extent
    line = torch.randn(300, 1, generator=gen) * torch.tensor([[0.0, 2.0, 0.0]]) + 5.0
    offset = torch.rand(500, 3, generator=gen, dtype=torch.float64) + 1e4  # far from the origin
    same = torch.ones(40, 3)  # every point the same
    outlier = torch.cat([torch.randn(600, 3, generator=gen) * 0.01, torch.tensor([[1000.0, 0.0, 0.0]])])
    dupes = torch.randn(30, 3, generator=gen).repeat(20, 1)  # 20 copies of each point
    for pts in (torch.randn(700, 3, generator=gen), _grid(), clusters, flat, line, offset, same, outlier, dupes):
        q = pts
        r = pts if exclude_self else pts.flip(0)
        brute = knn(q, r, 6, exclude_self=exclude_self)
        monkeypatch.setattr(knn_module, "BRUTE_FORCE_MAX", 0)
        tree = knn(q, r, 6, exclude_self=exclude_self)
        monkeypatch.undo()
        assert torch.equal(brute[1], tree[1]) and torch.equal(brute[0], tree[0])


def test_ties_and_duplicates(tree_path):
    pts = torch.tensor([[0.0, 0, 0]] * 6 + [[1.0, 0, 0], [-1.0, 0, 0], [0, 1.0, 0], [0, -1.0, 0]])
    _, idx = knn(pts, pts, 4, exclude_self=True)
    assert idx[:3].tolist() == [[1, 2, 3, 4], [0, 2, 3, 4], [0, 1, 3, 4]]  # self excluded, lower index first
    assert idx[6].tolist() == [0, 1, 2, 3]  # six coincident points at the same distance: lowest indices
    _, idx = knn(_grid(3), _grid(3), 6, exclude_self=True)
    assert idx[13].tolist() == [4, 10, 12, 14, 16, 22]  # the grid centre's six face neighbours, in index order


def test_errors():
    p = torch.rand(10, 3)
    with pytest.raises(ValueError, match="k must be in \\[1, 9\\]"):
        knn(p, p, 10, exclude_self=True)
    with pytest.raises(ValueError, match="shape \\[N, 3\\]"):
        knn(p[:, :2], p, 1)
    with pytest.raises(ValueError, match="same points"):
        knn(p[:5], p, 1, exclude_self=True)
    bad = p.clone()
    bad[0, 0] = float("nan")
    with pytest.raises(ValueError, match="non-finite"):
        knn(bad, p, 1)


def test_tree_path_with_queries_outside_the_references(tree_path):
    gen = torch.Generator().manual_seed(2)
    refs = torch.rand(2000, 3, generator=gen, dtype=torch.float64)
    queries = torch.randn(500, 3, generator=gen, dtype=torch.float64) * 3  # mostly outside the unit cube
    for k in (1, 7, 64):
        d2, idx = knn(queries, refs, k)
        ref = (queries[:, None] - refs[None]).square().sum(-1)
        vals, ids = ref.sort(dim=1, stable=True)
        assert torch.equal(idx, ids[:, :k]) and torch.equal(d2, vals[:, :k])


def test_tree_path_falls_back_to_the_brute_force_without_a_compiler(tree_path, no_compiler):
    pts = _grid(4)
    with pytest.warns(RuntimeWarning, match="knn falls back to comparing every pair"):
        _, idx = knn(pts, pts, 6, exclude_self=True)
    assert idx[21].tolist() == [5, 17, 20, 22, 25, 37]


def test_native_prototype_table_matches_the_knn_source():
    from spectral_tracking.runtime import native

    assert native.prototype_mismatches("knn") == []
