"""Bad data is one line naming the file, what was expected and what to do (issue 13, "nothing lost,
nothing silent"): never a stack trace, never a silently wrong metric.

Each case corrupts a copy of a small generated sequence the way a user's data goes wrong and checks
the message in process (fast) and, for the tracker's entry point, end to end: ``python train.py``
exits 2 with one line on stderr and no trace.
"""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from PIL import Image

from spectral_tracking.cameras import camera_problem, orbit_camera
from spectral_tracking.run.config import ConfigError
from spectral_tracking.data import DataError, SequenceFormatError, load_dataset, load_sequence, select_views
from spectral_tracking.data.folder import write_sequence
from spectral_tracking.gaussians import PLYFormatError, load_ply, random_gaussians, save_ply

REPO = Path(__file__).resolve().parents[1]


# --- corrupting a sequence the ways users' data goes wrong ---------------------------------------
def write_bad_ply(kind: str, src: Path, dst: Path) -> Path:
    """A copy of the 3DGS PLY ``src`` at ``dst`` made bad: truncated, nan, inf, zero_vertices,
    renamed_property (opacity -> opac) or coincident (every mean at one point)."""
    from plyfile import PlyData, PlyElement

    dst.parent.mkdir(parents=True, exist_ok=True)
    if kind == "truncated":
        raw = src.read_bytes()
        dst.write_bytes(raw[: len(raw) // 2])
        return dst
    if kind == "coincident":
        g = load_ply(src)
        g.means[:] = torch.tensor([0.3, -0.1, 0.2])
        return save_ply(g, dst)
    data = PlyData.read(str(src))["vertex"].data.copy()
    if kind == "nan":
        data["x"][3] = np.nan
    elif kind == "inf":
        data["scale_0"][3] = np.inf
    elif kind == "zero_vertices":
        data = data[:0]
    elif kind == "renamed_property":
        data.dtype.names = tuple("opac" if n == "opacity" else n for n in data.dtype.names)
    else:
        raise ValueError(kind)
    PlyData([PlyElement.describe(data, "vertex")]).write(str(dst))
    return dst


def _edit_cameras(folder: Path, edit) -> None:
    cams = json.loads((folder / "cameras.json").read_text())
    edit(cams["views"])
    (folder / "cameras.json").write_text(json.dumps(cams))


def _gt_nan(folder: Path) -> None:
    z = dict(np.load(folder / "gt" / "2.npz"))
    z["means"][5, 1] = np.nan
    np.savez(folder / "gt" / "2.npz", **z)


def _non_square(folder: Path) -> None:
    def edit(views):
        for v in views:
            v["width"], v["height"] = 32, 24
    _edit_cameras(folder, edit)
    for p in folder.glob("*/*/*.png"):
        Image.open(p).resize((32, 24)).save(p)


def _alpha_0_1(folder: Path) -> None:
    """Frame 2 of view 0.0 saved with its alpha as 0/1 (np.uint8(bool_mask)), not 0/255."""
    p = folder / "frames" / "0.0" / "2.png"
    a = np.asarray(Image.open(p)).copy()
    a[..., 3] = (a[..., 3] > 127).astype(np.uint8)
    Image.fromarray(a).save(p)


def _rgba_and_mask(folder: Path) -> None:
    """A mask file beside an RGBA frame (frame 1 of view 0.0): two masks for one frame."""
    p = folder / "frames" / "0.0" / "1.png"
    (folder / "masks" / "0.0").mkdir(parents=True)
    Image.fromarray(np.asarray(Image.open(p))[..., 3]).save(folder / "masks" / "0.0" / "1.png")


def _no_azimuth_0(views) -> None:
    views[0]["azimuth_deg"] = 10.0


# name -> (corrupt(folder), extra overrides, regex the one-line message must match)
CASES = {
    "gt_nan": (_gt_nan, [], r"gt/2\.npz: means of 1 ground-truth Gaussians hold NaN or inf"),
    "cameras_nan": (lambda f: _edit_cameras(f, lambda v: v[1]["viewmat"][0].__setitem__(3, float("nan"))), [],
                    r"cameras\.json: view '90\.0': viewmat holds NaN or inf"),
    "zero_K": (lambda f: _edit_cameras(f, lambda v: v[2].__setitem__("K", [[0.0] * 3] * 3)), [],
               r"cameras\.json: view '180\.0': K has focal lengths fx=0, fy=0.*\(K is all zero\)"),
    "no_azimuth_0": (lambda f: _edit_cameras(f, _no_azimuth_0), ["views=2"],
                     r"cameras\.json: views=2 trains on the supervision views at azimuths 0, 180 degrees, but none is "
                     r"within 0\.5 degrees of 0\.0 .*'0\.0' at 10\.0.*; add that view or correct its azimuth_deg"),
    "coincident_means": (lambda f: write_bad_ply("coincident", f / "canonical.ply", f / "canonical.ply"), [],
                         r"canonical\.ply: all \d+ Gaussians sit at one point \(0\.3, -0\.1, 0\.2\)"),
    "ply_truncated": (lambda f: write_bad_ply("truncated", f / "canonical.ply", f / "canonical.ply"), [],
                      r"canonical\.ply: not a readable PLY file"),
    "ply_nan": (lambda f: write_bad_ply("nan", f / "canonical.ply", f / "canonical.ply"), [],
                r"canonical\.ply: means holds 1 non-finite values"),
    "ply_inf": (lambda f: write_bad_ply("inf", f / "canonical.ply", f / "canonical.ply"), [],
                r"canonical\.ply: log_scales holds 1 non-finite values"),
    "ply_zero_vertices": (lambda f: write_bad_ply("zero_vertices", f / "canonical.ply", f / "canonical.ply"), [],
                          r"canonical\.ply: PLY has zero vertices"),
    "ply_renamed_property": (lambda f: write_bad_ply("renamed_property", f / "canonical.ply", f / "canonical.ply"), [],
                             r"canonical\.ply: missing required vertex properties \['opacity'\]"),
    "non_square": (_non_square, [], r"frames are 32x24 .*non-square frames are not supported"),
    "alpha_0_1": (_alpha_0_1, [], r"frames/0\.0/2\.png: alpha values are 0\.\.1; expected 0\.\.255 .*multiply the alpha by 255"),
    "rgba_and_mask": (_rgba_and_mask, [], r"frames/0\.0/1\.png: an RGBA frame carries its mask as alpha, and "
                                          r".*masks/0\.0/1\.png is a mask for it too; keep one"),
    "meta_empty": (lambda f: (f / "meta.json").write_text(""), [], r"meta\.json: empty; write \{\"num_frames\""),
    "fps_text": (lambda f: (f / "meta.json").write_text(json.dumps({**json.loads((f / "meta.json").read_text()), "fps": "24"})),
                 [], r"meta\.json: \"fps\" must be a positive number \(frames per second\), got '24'"),
    "azimuth_text": (lambda f: _edit_cameras(f, lambda v: v[1].__setitem__("azimuth_deg", "ninety")), [],
                     r"cameras\.json: view '90\.0': azimuth_deg must be a number \(degrees\) or null, got 'ninety'"),
    "meta_unparseable": (lambda f: (f / "meta.json").write_text("{num_frames: 4"), [], r"meta\.json: not valid JSON"),
}


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> Path:
    """A 4-frame, 32 px benchmark sequence (about 2 s to make)."""
    from spectral_tracking.data.synthetic import generate

    return generate("quadruped_walk", "clean", frames=4, resolution=32, root=tmp_path_factory.mktemp("synthetic"))


def _bad_copy(generated: Path, tmp_path: Path, case: str) -> Path:
    folder = tmp_path / case
    shutil.copytree(generated, folder)
    CASES[case][0](folder)
    return folder


def _compose_train(tmp_path: Path, folder, extra=()):
    path = [f"dataset.path={folder}"] if folder is not None else []
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return compose("train", overrides=[
            "dataset=folder", *path, "resolution=32", "max_steps=2", "num_control_points=16", "loss.num_bands=3",
            "trainer=debug", "logger=none", "eval.lpips=none", "eval.progression_frames=0", f"out_dir={tmp_path / 'run'}",
            *extra])


# --- in process: the tracker's run(cfg) raises a user error with a one-line message --------------
@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_sequence_is_a_one_line_user_error_naming_the_file(generated, tmp_path, case):
    from spectral_tracking.errors import USER_ERRORS as UserError
    from spectral_tracking.run.track import run

    folder = _bad_copy(generated, tmp_path, case)
    with pytest.raises(UserError) as info:
        run(_compose_train(tmp_path, folder, CASES[case][1]))
    msg = str(info.value)
    assert "\n" not in msg, msg
    assert str(folder) in msg, msg
    assert re.search(CASES[case][2], msg), msg


def test_gt_nan_is_refused_not_reported_as_a_nan_metric(generated, tmp_path):
    folder = _bad_copy(generated, tmp_path, "gt_nan")
    with pytest.raises(SequenceFormatError, match=r"gt/2\.npz.*row 5"):
        load_sequence(folder)
    z = dict(np.load(folder / "gt" / "2.npz"))
    z["means"][5, 1] = np.inf
    np.savez(folder / "gt" / "2.npz", **z)
    with pytest.raises(SequenceFormatError, match=r"gt/2\.npz"):
        load_sequence(folder)


def test_missing_dataset_path_names_the_key(tmp_path):
    from spectral_tracking.run.track import run

    with pytest.raises(ConfigError, match=r"^dataset\.path must be set \(dataset=folder has no default\): add "
                                          r"dataset\.path=<folder>"):
        run(_compose_train(tmp_path, None))
    with pytest.raises(ConfigError, match=r"dataset\.path must be set"):
        load_dataset({"type": "folder", "path": "???"}, 32)


def test_missing_azimuth_0_view_is_a_data_error_not_a_bare_value_error(generated):
    seq = load_sequence(generated)
    mono = seq.still(0, [1])  # only the 90 degree view
    with pytest.raises(SequenceFormatError, match=r"views=1 .* none is within 0\.5 degrees of 0\.0 .*'90\.0' at 90\.0; add "
                                                  r"that view or correct its azimuth_deg"):
        select_views(mono, 1)
    with pytest.raises(ConfigError, match="views must be 1, 2 or 4"):
        select_views(seq, 3)


def test_meta_json_messages_tell_a_users_folder_from_a_generated_one(generated, tmp_path):
    user = write_sequence(load_sequence(generated), tmp_path / "mine")
    meta = json.loads((user / "meta.json").read_text())
    meta.pop("generator")
    meta.pop("complete")
    (user / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(SequenceFormatError) as info:
        load_sequence(user)
    assert 'lacks "complete": true, the marker that every file of the folder is written' in str(info.value)
    assert "generat" not in str(info.value)  # a user's folder: no generator will regenerate it
    copy = tmp_path / "copy"
    shutil.copytree(generated, copy)
    meta = json.loads((copy / "meta.json").read_text())
    meta.pop("complete")
    (copy / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(SequenceFormatError, match=r"half-written copy of a sequence made by spectral_tracking\.data\.synthetic"):
        load_sequence(copy)
    for text, expected in [("", r"meta\.json: empty"), ("{num", r"meta\.json: not valid JSON"), ("[1, 2]", r"expected a JSON object")]:
        (user / "meta.json").write_text(text)
        with pytest.raises(SequenceFormatError, match=expected) as info:
            load_sequence(user)
        assert "half-written" not in str(info.value)


def test_square_folder_at_another_size_still_says_which_resolution(generated):
    with pytest.raises(ConfigError, match=r"frames are 32x32 but resolution=64; set resolution=32"):
        load_dataset({"type": "folder", "path": str(generated)}, 64)


def test_camera_problem_hand_cases():
    cams = orbit_camera([0.0, 90.0], width=16, height=16)
    K, vm = cams.Ks[0], cams.viewmats[0]
    assert camera_problem(K, vm) is None
    assert "all zero" in camera_problem(torch.zeros(3, 3), vm)
    assert "NaN" in camera_problem(K, vm.clone().fill_(float("nan")))
    flipped = K.clone()
    flipped[1, 1] = -flipped[1, 1]
    assert "fy=-" in camera_problem(flipped, vm)
    scaled = vm.clone()
    scaled[:3, :3] *= 2
    assert "not a rotation" in camera_problem(K, scaled)
    bottom = vm.clone()
    bottom[3, 3] = 0
    assert "last row" in camera_problem(K, bottom)


def test_canonical_with_one_gaussian_is_not_coincident(tmp_path):
    from spectral_tracking.data.sequence import load_asset

    one = save_ply(random_gaussians(1, seed=0), tmp_path / "one.ply")
    assert len(load_asset(one)) == 1
    two = random_gaussians(2, seed=0)
    two.means[1] = two.means[0]
    with pytest.raises(PLYFormatError, match="all 2 Gaussians sit at one point"):
        load_asset(save_ply(two, tmp_path / "two.ply"))


def test_data_errors_are_user_errors():
    from spectral_tracking.errors import USER_ERRORS as UserError

    assert issubclass(SequenceFormatError, UserError) and issubclass(DataError, UserError)
    assert issubclass(PLYFormatError, UserError) and issubclass(ConfigError, UserError)


# --- end to end: python train.py exits 2 with one line on stderr --------------------------------
def _train(tmp_path: Path, folder, extra=()) -> subprocess.CompletedProcess:
    path = [f"dataset.path={folder}"] if folder is not None else []
    cmd = [sys.executable, str(REPO / "train.py"), "dataset=folder", *path, "resolution=32", "max_steps=2",
           "num_control_points=16", "loss.num_bands=3", "trainer=debug", "logger=none", "eval.lpips=none",
           "eval.progression_frames=0", f"out_dir={tmp_path / 'run'}", *extra]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})


def _assert_one_line(r: subprocess.CompletedProcess, pattern: str) -> None:
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode == 2, r.stderr[-3000:]
    assert "Traceback" not in r.stderr, r.stderr[-3000:]
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr[-3000:]
    assert re.search(pattern, lines[0]), lines[0]


def test_train_entry_point_bad_cameras_one_line_exit_2(generated, tmp_path):
    folder = _bad_copy(generated, tmp_path, "cameras_nan")
    _assert_one_line(_train(tmp_path, folder), CASES["cameras_nan"][2])


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(CASES))
def test_train_entry_point_every_bad_sequence_one_line_exit_2(generated, tmp_path, case):
    folder = _bad_copy(generated, tmp_path, case)
    _assert_one_line(_train(tmp_path, folder, CASES[case][1]), CASES[case][2])


@pytest.mark.slow
def test_train_entry_point_missing_dataset_path(tmp_path):
    _assert_one_line(_train(tmp_path, None), r"dataset\.path must be set .*dataset\.path=<folder>")


def test_missing_side_view_suggests_fewer_views(generated):
    seq = load_sequence(generated)
    front_back = seq.still(0, [0, 2])  # 0 and 180 degrees only
    with pytest.raises(SequenceFormatError, match=r"views=4 .* of 90\.0, 270\.0 .*; set views=2, or add that view"):
        select_views(front_back, 4)
