"""The CPU-side parts of benchmarks/gpu_check.sh: its arguments, its plan, the wheel list it
installs from (complete for what the project imports), and (slow) the whole script on the CPU."""

import ast
import os
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
import torch
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "gpu_check.sh"
WHEEL_LIST = REPO / "benchmarks" / "gpu_wheels.txt"

# What the GPU machine has (Python 3.12, torch 2.11 + CUDA 13, Lightning, torchmetrics, nvcc), with
# the dependencies they bring.
ON_THE_MACHINE = {"torch", "pytorch-lightning", "lightning", "lightning-fabric", "lightning-utilities", "torchmetrics",
                  "numpy", "tqdm", "pyyaml", "packaging", "typing-extensions", "fsspec", "filelock", "jinja2",
                  "markupsafe", "networkx", "sympy", "mpmath", "setuptools", "pip", "aiohttp"}
# Imported only where no stage of the script goes (the reason is in gpu_wheels.txt).
OPTIONAL = {"wandb", "viser", "imageio", "imageio_ffmpeg"}
# Files whose imports the GPU stages reach.
SOURCES = [*sorted((REPO / "spectral_tracking").rglob("*.py")), REPO / "train.py", REPO / "fit.py",
           REPO / "benchmarks" / "step.py", REPO / "benchmarks" / "scale.py", REPO / "benchmarks" / "render.py"]


def sh(*args: str, env: dict | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), *args], cwd=REPO, capture_output=True, text=True, timeout=timeout,
                          env=env)


def listed() -> dict[str, str]:
    """Canonical distribution name -> pinned version, from gpu_wheels.txt."""
    out = {}
    for line in WHEEL_LIST.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            req = Requirement(line)
            (spec,) = req.specifier
            assert spec.operator == "==", f"{line}: pin an exact version"
            out[canonicalize_name(req.name)] = spec.version
    return out


def imported_top_level() -> set[str]:
    names = set()
    for f in SOURCES:
        for node in ast.walk(ast.parse(f.read_text(), str(f))):  # lazy imports inside functions too
            if isinstance(node, ast.Import):
                names |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return {n for n in names if n not in sys.stdlib_module_names and n not in ("spectral_tracking", "benchmarks")}


# --- arguments -------------------------------------------------------------------------------------
@pytest.mark.parametrize("args, message", [
    ((), "missing OUT_DIR"),
    (("a", "b"), "one OUT_DIR only"),
    (("--bogus", "out"), "unknown option: --bogus"),
    (("out", "--budget", "soon"), "--budget: seconds"),
    (("out", "--wheels"), "benchmarks/gpu_check.sh OUT_DIR"),
])
def test_bad_arguments_exit_2_with_usage(args, message):
    res = sh(*args)
    assert res.returncode == 2
    assert message in res.stderr


def test_help_prints_usage():
    res = sh("--help")
    assert res.returncode == 2 and "--download" in res.stderr and "OUT_DIR" in res.stderr


def test_plan_on_a_machine_without_cuda_uses_the_cpu_fallbacks(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device")
    res = sh("--plan", str(tmp_path / "out"))
    assert res.returncode == 0, res.stderr
    plan = res.stdout
    assert "device: cpu (no CUDA device: the CPU fallbacks)" in plan
    assert "build:" not in plan  # no gsplat build without CUDA
    assert "train.py experiment=sc4d_mlp dataset=synthetic trainer=cpu" in plan
    assert "benchmarks/step.py --scale paper --steps 200 --device cpu" in plan
    assert "benchmarks/scale.py --sweep gaussians --gaussians 3000 300000 1000000 --no-run --steps 20 --device cpu --root" in plan
    assert "trainer=cpu max_steps=2000" in plan  # the paper-scale run, a fifth as long: it fits the budget
    assert "--resolution 256" in plan.split("fit data:")[1].split("\n")[0]  # the fit's targets at its own resolution
    # the most telling stages first, the longest sweep last
    order = [line.split(":")[0] for line in plan.splitlines() if line[:1].isalpha() and ":" in line][3:]
    assert order == ["tests", "track", "step", "render", "fit data", "fit", "scale"], order
    assert "--backends cpu" in plan and "gsplat" not in plan.split("render:")[1].split("\n")[0]
    assert "fit.py device=cpu backend=auto" in plan
    assert "-m cuda" in plan
    assert not (tmp_path / "out").exists()  # --plan runs nothing
    quick = sh("--plan", str(tmp_path / "out"), "--quick").stdout
    assert "max_steps=30" in quick and "--scale cpu --steps 20" in quick


def test_a_gpu_that_pythons_torch_does_not_see_stops_the_check_at_once(tmp_path):
    """Where nvidia-smi sees a GPU but PYTHON's torch has no CUDA device (the wrong interpreter), the script
    says so and exits 1 instead of spending the lease on the CPU fallbacks."""
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device")
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "nvidia-smi").write_text("#!/bin/sh\necho 'GPU 0: NVIDIA H100 80GB HBM3'\n")
    (fake / "nvidia-smi").chmod(0o755)
    res = sh("--plan", str(tmp_path / "out"), env={**os.environ, "PATH": f"{fake}:{os.environ['PATH']}"})
    assert res.returncode == 1
    assert "nvidia-smi sees a GPU but python3's torch has no CUDA device" in res.stderr
    assert "PYTHON=/opt/torch/.venv/bin/python3" in res.stderr


def test_the_plans_commands_are_real():
    """Every option the script passes exists where it goes."""
    plan_steps = subprocess.run([sys.executable, "benchmarks/step.py", "--help"], cwd=REPO, capture_output=True, text=True)
    assert all(opt in plan_steps.stdout for opt in ("--scale", "--steps", "--device", "--threads"))
    plan_scale = subprocess.run([sys.executable, "benchmarks/scale.py", "--help"], cwd=REPO, capture_output=True, text=True)
    assert all(opt in plan_scale.stdout for opt in ("--sweep", "--no-run", "--steps", "--device", "--root", "--quick"))
    plan_render = subprocess.run([sys.executable, "benchmarks/render.py", "--help"], cwd=REPO, capture_output=True, text=True)
    assert all(opt in plan_render.stdout for opt in ("--scenes", "--reps", "--backends"))
    text = SCRIPT.read_text()
    assert "-m spectral_tracking.data.synthetic --preset quadruped_walk" in text
    assert 'TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-9.0}"' in text and 'MAX_JOBS="${MAX_JOBS:-16}"' in text


# --- the wheel list --------------------------------------------------------------------------------
def test_every_imported_package_is_listed_or_on_the_gpu_machine():
    dists_of = metadata.packages_distributions()
    wheels = set(listed())
    missing = {}
    for module in imported_top_level() - OPTIONAL:
        dists = {canonicalize_name(d) for d in dists_of.get(module, [module])}
        if not dists & (wheels | ON_THE_MACHINE):
            missing[module] = sorted(dists)
    assert not missing, f"imported but neither in gpu_wheels.txt nor on the GPU machine: {missing}"


def test_the_wheel_list_is_closed_under_dependencies():
    """Every listed wheel's requirements (for Python 3.12 on Linux) are listed or on the machine,
    read from the metadata of the same version installed here. A fresh install may resolve newer
    versions (the registry moves on); those wheels are not checked, not failed."""
    wheels = listed()
    env = {"python_version": "3.12", "python_full_version": "3.12.0", "sys_platform": "linux",
           "platform_system": "Linux", "platform_machine": "x86_64", "implementation_name": "cpython",
           "platform_python_implementation": "CPython", "os_name": "posix", "extra": ""}
    missing, checked = [], set()
    for name, version in wheels.items():
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue  # a listed wheel that nothing here needs (e.g. six on a fresh install): no metadata to read
        if dist.version != version:
            continue  # another version here (the registry moved on): its requirements are not the listed wheel's
        checked.add(name)
        for line in dist.requires or []:
            req = Requirement(line)
            if req.marker is not None and not req.marker.evaluate(env):
                continue
            dep = canonicalize_name(req.name)
            if dep not in wheels and dep not in ON_THE_MACHINE:
                missing.append(f"{name} needs {dep}")
    assert not missing, missing
    # the wheels pinned to what this project's own install resolves are always checked
    assert {"hydra-core", "omegaconf"} <= checked, sorted(checked)


def test_fetched_wheels_match_the_list():
    folder = REPO / "wheels"
    files = sorted(folder.glob("*.whl")) if folder.is_dir() else []
    if not files:
        pytest.skip("no wheels/ folder here (benchmarks/gpu_check.sh --download fetches it)")
    have = {}
    for f in files:
        name, version = f.name.split("-")[:2]
        have[canonicalize_name(name)] = version
        assert re.search(r"-(py3|py2\.py3|cp312)-(none|cp312)-(any|manylinux[^.]*x86_64)", f.name), f"not a cp312 wheel: {f.name}"
    for name, version in listed().items():
        assert have.get(name) == version, f"wheels/ lacks {name}=={version}"


def test_wheels_folder_is_ignored_by_git():
    res = subprocess.run(["git", "check-ignore", "-q", "wheels/x.whl"], cwd=REPO)
    assert res.returncode == 0


# --- the whole script, on the CPU ------------------------------------------------------------------
@pytest.mark.slow
def test_quick_run_on_the_cpu_passes_every_stage(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device: run the script itself")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    res = sh(str(tmp_path / "out"), "--quick", "--bundle", str(tmp_path / "bundle"), env=env, timeout=600)
    summary = (tmp_path / "out" / "summary.txt").read_text()
    assert res.returncode == 0, summary
    assert "every stage passed" in summary
    for stage in ("tests", "track", "step", "render", "fit"):
        assert re.search(rf"^{stage}\s+ok", summary, re.M), stage
    assert re.search(r"^track\s+30 steps in .* it/s", summary, re.M)
    assert (tmp_path / "out" / "track" / "metrics.json").is_file()
    assert (tmp_path / "out" / "fit" / "canonical.ply").is_file()
    # --bundle: the three small files the device tool brings back
    assert sorted(f.name for f in (tmp_path / "bundle").iterdir()) == ["env.txt", "logs.tar.gz", "summary.txt"]
    import tarfile

    with tarfile.open(tmp_path / "bundle" / "logs.tar.gz") as tar:
        names = set(tar.getnames())
    assert {"./track.log", "./fit.log", "track/metrics.json"} <= names, names
