"""The one boundary between Python and the package's C++ kernels (``render/csrc``, ``losses/csrc``,
``deform/csrc``, ``csrc``).

Three parts:

- ``KERNELS``: per kernel, its source and the C prototypes of its ``extern "C"`` functions, written
  as in the source (``S`` is the floating type, instantiated as ``_f32`` / ``_f64``). ctypes'
  ``argtypes`` / ``restype`` come from this table, and ``prototype_mismatches`` compares the table
  with the source (the tests call it), so neither side can drift alone.
- ``NativeFunction``: a function of the table, called with keyword arguments named as in the
  prototype (a missing, extra or misspelt name raises ``TypeError``; ctypes alone accepts extra
  arguments of a cdecl function silently). Every pointer argument goes through ``pointer``, which
  checks dtype, device (CPU) and contiguity and names the argument in its error: a reordered or
  mistyped ``c_void_p`` would otherwise corrupt memory silently. Then each pointer's element count,
  written in the table beside it (``/* [N*3] */``, an expression of the scalar arguments), and an
  index array's range (``/* [J*K] indices < J */``) are checked: C trusts the sizes it is given, so a
  short array would be read past its end (about 4 us a call for ten pointers).
- ``load`` / ``load_or_warn``: build and load a kernel, with one failure policy for every kernel.
  Building or loading raises ``NativeBuildError`` (a ``RuntimeError``; the failure is remembered, not
  retried, for the life of the process). A caller that asked for the fast path explicitly (render
  ``backend="cpu"``) calls ``load`` and lets it raise; a caller that chose it implicitly (render
  ``backend="auto"``, ``spectral_loss`` method ``"auto"`` / ``"fft"``) calls ``load_or_warn``, which
  returns None after one ``RuntimeWarning`` per kernel and process, and runs its torch twin.

Build: each source is compiled on first use with the system C++ compiler (``$CXX`` or ``g++``,
C++20, OpenMP) into ``paths.cache_dir() / "ext"``. The library's file name carries a hash of the
source, the compiler command and the machine (CPU model and flags: it is built with -march=native,
17% faster for the renderer here), so an edited source or another machine rebuilds. It is compiled
under a unique temporary name and atomically renamed into place, so processes building at the same
time never see a half-written library. The sources are plain C++ (no torch headers), so a build
takes seconds, not the minute of a torch extension, and does not depend on the installed torch.

Threads: the kernels run OpenMP regions of ``n_threads`` threads, passed in as
``torch.get_num_threads()``. Whether those threads are torch's own depends on the torch build. Built
with g++ ``-fopenmp``, the library's ``NEEDED`` entry is the soname ``libgomp.so.1``, which the
dynamic loader resolves to a library of that soname already in the process (torch is always imported
first). So it shares torch's pool when torch's OpenMP runtime is GNU libgomp under that soname: true
of the Linux x86-64 pip wheel used here (torch 2.13.0+cpu ships ``torch/lib/libgomp.so.1``;
``torch.__config__.parallel_info()`` reports OpenMP 4.5 and the ATen parallel backend OpenMP; the
process then maps only torch's copy, although ``ldd`` on the library alone names the system's). It
does not hold for a torch on Intel's libiomp5 (conda / MKL builds), on LLVM's libomp (macOS), or
shipping a renamed ``libgomp-<hash>.so.1``, nor for a kernel built by clang (``-fopenmp`` links
libomp): there the kernel brings a second OpenMP runtime and thread pool that can oversubscribe the
cores alongside torch's (slower, not wrong). A compiler without OpenMP gets a one-thread build.
How many threads, and how long idle ones spin before they sleep (``GOMP_SPINCOUNT``, set by the
entry points before torch loads, so that a kernel's workers do not spin against another process),
is decided in `spectral_tracking.runtime.threads`.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import re
import shutil
import subprocess
import tempfile
import warnings
import weakref
from pathlib import Path
from typing import NamedTuple

import torch
from torch import Tensor

from spectral_tracking.errors import NativeBuildError  # noqa: F401  (raised here)
from spectral_tracking.runtime.paths import cache_dir as _user_cache_dir

FLAGS = ("-O3", "-march=native", "-std=c++20", "-shared", "-fPIC", "-fno-math-errno", "-fopenmp")
PACKAGE = Path(__file__).resolve().parents[1]
SUFFIXES = {torch.float32: "f32", torch.float64: "f64"}
"""The floating types ``S`` each kernel is instantiated for, and their function-name suffixes."""


class Kernel(NamedTuple):
    source: Path  # the .cpp file
    what: str  # the feature it serves, named in errors
    prototypes: str  # the extern "C" declarations, as in the source; "/* nullable */" after a pointer
    flags: tuple[str, ...] = ()  # compiler options beyond FLAGS


KERNELS = {
    "rasterize": Kernel(
        PACKAGE / "render" / "csrc" / "rasterize.cpp",
        "render backend 'cpu'",
        """
        void st_rasterize_fwd_S(int V, int N, int H, int W, int ts, int tiles_x, int tiles_y, const S *means2d /* [V*N*2] */,
            const S *conics /* [V*N*3] */, const S *colors /* [V*N*4] */, const S *opacities /* [V*N] */,
            const S *background /* [V*3] */, const int32_t *tile_offsets /* [V*tiles_y*tiles_x+1] */,
            const int32_t *flatten_ids /* [int(tile_offsets[-1])] */, S *rgb_out /* [V*H*W*3] */, S *alpha_out /* [V*H*W] */,
            S *depth_out /* [V*H*W] */, int32_t *last_ids /* [V*H*W] */, S *records /* [V*N*16] */, int n_threads);
        void st_rasterize_bwd_S(int V, int N, int H, int W, int ts, int tiles_x, int tiles_y, const S *records /* [V*N*16] */,
            const S *background /* [V*3] */, const int32_t *tile_offsets /* [V*tiles_y*tiles_x+1] */,
            const int32_t *flatten_ids /* [int(tile_offsets[-1])] */, const S *alpha_out /* [V*H*W] */,
            const S *depth_out /* [V*H*W] */, const int32_t *last_ids /* [V*H*W] */, const S *v_rgb /* [V*H*W*3] */,
            const S *v_alpha_out /* [V*H*W] */, const S *v_depth /* [V*H*W] */, S *v_means2d /* [V*N*2] */,
            S *v_conics /* [V*N*3] */, S *v_colors /* [V*N*4] */, S *v_opacities /* [V*N] */,
            S *v_background /* [V*3] */, int n_threads);
        int64_t st_bin_count_S(int V, int N, int ts, int tiles_x, int tiles_y, int chunks, const S *means2d /* [V*N*2] */,
            const int32_t *radii /* [V*N*2] */, int32_t *tile_offsets /* [V*tiles_y*tiles_x+1] */,
            int64_t *rects /* [V*N] */, int64_t *counts /* [chunks*V*tiles_y*tiles_x] */, int n_threads);
        void st_bin_fill_S(int V, int N, int tiles_x, int tiles_y, int chunks, const int64_t *rects /* [V*N] */,
            const S *depths /* [V*N] */, const int32_t *tile_offsets /* [V*tiles_y*tiles_x+1] */,
            int64_t *counts /* [chunks*V*tiles_y*tiles_x] */, int32_t *flatten_ids /* [int(tile_offsets[-1])] */,
            int n_threads);
        """,
    ),
    "project": Kernel(
        PACKAGE / "render" / "csrc" / "project.cpp",
        "render backend 'cpu'",
        """
        void st_project_fwd_S(int V, int N, int W, int H, const S *means /* [N*3] */, const S *quats /* [N*4] */,
            const S *log_scales /* [N*3] */, const S *opacities /* [N] */, const S *viewmats /* [V*16] */,
            const S *Ks /* [V*9] */, S *means2d /* [V*N*2] */, S *conics /* [V*N*3] */, S *depths /* [V*N] */,
            int32_t *radii /* [V*N*2] */, int n_threads);
        void st_project_bwd_S(int V, int N, int W, int H, const S *means /* [N*3] */, const S *quats /* [N*4] */,
            const S *log_scales /* [N*3] */, const S *viewmats /* [V*16] */, const S *Ks /* [V*9] */,
            const S *v_means2d /* [V*N*2] */, const S *v_conics /* [V*N*3] */, const S *v_depths /* [V*N] */,
            S *v_means /* [N*3] */, S *v_quats /* [N*4] */, S *v_log_scales /* [N*3] */,
            S *v_viewmats /* nullable [V*16] */, int n_threads);
        """,
        ("-fno-trapping-math",),  # lets std::ceil run in the forward's SIMD lanes (no FP exceptions are read)
    ),
    "knn": Kernel(
        PACKAGE / "csrc" / "knn.cpp",
        "k nearest neighbours (large problems)",
        """
        void st_knn_S(int64_t N, int64_t J, int k, int exclude_self, const S *queries /* [N*3] */,
            const S *refs /* [J*3] */, double *d2_out /* [N*k] */, int64_t *idx_out /* [N*k] */, int n_threads);
        """,
        ("-ffp-contract=off",),  # distances rounded as in knn.py's brute force: no fused multiply-add
    ),
    "arap": Kernel(
        PACKAGE / "losses" / "csrc" / "arap.cpp",
        "ARAP C++ kernel",
        """
        double st_arap_fwd_S(int F, int J, int K, const S *points /* [F*J*3] */,
            const int64_t *neighbors /* [J*K] indices < J */, const S *rest_edges /* [J*K*3] */,
            S *rotations /* [F*J*9] */);
        void st_arap_bwd_S(int F, int J, int K, const S *points /* [F*J*3] */,
            const int64_t *neighbors /* [J*K] indices < J */, const S *rest_edges /* [J*K*3] */,
            const S *rotations /* [F*J*9] */, double scale, S *grad_points /* [F*J*3] */);
        """,
    ),
    "skin": Kernel(
        PACKAGE / "deform" / "csrc" / "skin.cpp",
        "skinning C++ kernel",
        """
        void st_skin_fwd_S(int64_t N, const S *mixed /* [N*16] */, const S *means /* [N*3] */, const S *quats /* [N*4] */,
            S *new_means /* [N*3] */, S *new_quats /* [N*4] */, int n_threads);
        void st_skin_bwd_S(int64_t N, const S *mixed /* [N*16] */, const S *means /* [N*3] */, const S *quats /* [N*4] */,
            const S *v_new_means /* [N*3] */, const S *v_new_quats /* [N*4] */, S *v_mixed /* [N*16] */,
            S *v_means /* nullable [N*3] */, S *v_quats /* nullable [N*4] */, int n_threads);
        void st_blend_fwd_S(int64_t N, int K, int C, int64_t J, const int64_t *index /* [N*K] indices < J */,
            const S *weights /* [N*K] */, const S *table /* [J*C] */, S *out /* [N*C] */, int n_threads);
        void st_blend_bwd_table_S(int64_t N, int K, int C, int64_t J, const int64_t *index /* [N*K] indices < J */,
            const S *weights /* [N*K] */, const S *grad /* [N*C] */, S *grad_table /* [J*C] */, int n_threads);
        void st_skin_fused_fwd_S(int64_t N, int K, int64_t J, const int64_t *index /* [N*K] indices < J */,
            const S *weights /* [N*K] */, const S *table /* [J*16] */, const S *means /* [N*3] */,
            const S *quats /* [N*4] */, S *new_means /* [N*3] */, S *new_quats /* [N*4] */, int n_threads);
        void st_skin_fused_bwd_S(int64_t N, int K, int64_t J, const int64_t *index /* [N*K] indices < J */,
            const S *weights /* [N*K] */, const S *table /* [J*16] */, const S *means /* [N*3] */,
            const S *quats /* [N*4] */, const S *v_new_means /* [N*3] */, const S *v_new_quats /* [N*4] */,
            S *grad_table /* [J*16] */, int n_threads);
        """,
    ),
    "spectral": Kernel(
        PACKAGE / "losses" / "csrc" / "spectral.cpp",
        "spectral loss C++ kernel",
        """
        double st_spectral_fused_S(int V, int H, int W, int C, const S *pred_rgb /* [V*H*W*C] */,
            const S *gt_rgb /* [V*H*W*C] */, const S *pred_mask /* nullable [V*H*W] */,
            const S *gt_mask /* nullable [V*H*W] */, int N, const S *factor /* [(N+1)*2*max(H;W)] */,
            const int32_t *band /* [(N+1)*2*max(H;W)] indices < n(w) */, const double *w,
            const double *coeff /* [V*(C+int(pred_mask is not None))] */, double eps, S *grad_rgb /* nullable [V*H*W*C] */,
            S *grad_mask /* nullable [V*H*W] */, int n_threads, int *status /* [1] */);
        """,
    ),
}

_SCALARS = {"int": ctypes.c_int, "int64_t": ctypes.c_int64, "double": ctypes.c_double}
_RESTYPES = {"void": None, **_SCALARS}
_ELEMENTS = {"int32_t": torch.int32, "int": torch.int32, "int64_t": torch.int64, "double": torch.float64}  # pointee -> dtype; S: per suffix


# --------------------------------------------------------------------------------------------------
# Prototypes
# --------------------------------------------------------------------------------------------------


class Param(NamedTuple):
    name: str
    ctype: str  # "int", "double", "int64_t" for scalars; the pointee ("S", "int32_t", ...) for pointers
    pointer: bool
    const: bool
    nullable: bool
    count: str | None = None  # a pointer's element count, a Python expression of the call's arguments
    bound: str | None = None  # an index array's values lie in [0, bound)


class Prototype(NamedTuple):
    restype: str
    name: str  # with the "_S" suffix of a floating-type template, e.g. "st_bin_fill_S"
    params: tuple[Param, ...]


_DECLARATION = re.compile(r"([A-Za-z_][\w]*)\s+([A-Za-z_]\w*)\s*\(([^)]*)\)", re.S)
_PARAM = re.compile(r"^(const\s+)?([A-Za-z_]\w*)\s*(\*)?\s*([A-Za-z_]\w*)$")


_ANNOTATION = re.compile(r"^(nullable)?\s*(?:\[(.+?)\])?\s*(?:indices\s*<\s*(.+))?$")


def parse_prototypes(text: str) -> list[Prototype]:
    """The C declarations ``ret name(type arg, ...)`` in ``text``. A comment after a pointer says
    what the call must pass: ``/* nullable */`` (it may be null), ``/* [N*3] */`` (its element count,
    an expression of the scalar arguments; ``n(x)`` is the element count of pointer ``x``, ``;``
    separates a function's arguments), ``/* [J*K] indices < J */`` (and its values' range)."""
    notes: list[str] = []

    def keep(match) -> str:
        notes.append(match.group(1).strip())
        return f" NOTE{len(notes) - 1} "

    text = re.sub(r"/\*(.*?)\*/", keep, text, flags=re.S)
    result = []
    for restype, name, params in _DECLARATION.findall(text):
        parsed = []
        for raw in params.split(","):
            note = re.search(r"NOTE(\d+)", raw)
            nullable, count, bound = False, None, None
            if note is not None:
                annotation = _ANNOTATION.match(notes[int(note.group(1))])
                if annotation is None:
                    raise ValueError(f"native: cannot read the annotation /* {notes[int(note.group(1))]} */ of {name}")
                nullable = bool(annotation.group(1))
                count, bound = (g.replace(";", ",").strip() if g else None for g in annotation.group(2, 3))
                raw = raw[:note.start()] + raw[note.end():]
            match = _PARAM.match(" ".join(raw.split()))
            if match is None:
                raise ValueError(f"native: cannot parse parameter {raw.strip()!r} of {name}")
            const, ctype, star, pname = match.groups()
            parsed.append(Param(pname, ctype, bool(star), bool(const), nullable, count, bound))
        result.append(Prototype(restype, name, tuple(parsed)))
    return result


def source_prototypes(kernel: str) -> list[Prototype]:
    """The ``extern "C"`` declarations of a kernel's source (its export macro, ``name_##SUFFIX``)."""
    text = KERNELS[kernel].source.read_text()
    text = re.sub(r"//[^\n]*", " ", text).replace("\\\n", " ")
    found = re.findall(r'extern\s+"C"\s+(\w+\s+\w+)##SUFFIX\s*(\([^)]*\))', text)
    return parse_prototypes("\n".join(f"{head}S{params};" for head, params in found))


def prototype_mismatches(kernel: str) -> list[str]:
    """Differences between ``KERNELS[kernel].prototypes`` and the source (empty when they agree)."""
    def key(p: Prototype):
        return p.restype, p.name, tuple((q.name, q.ctype, q.pointer, q.const) for q in p.params)

    table = {p.name: key(p) for p in parse_prototypes(KERNELS[kernel].prototypes)}
    source = {p.name: key(p) for p in source_prototypes(kernel)}
    problems = [f"{name}: table {table.get(name)} != source {source.get(name)}"
                for name in sorted(set(table) | set(source)) if table.get(name) != source.get(name)]
    return problems


# --------------------------------------------------------------------------------------------------
# The checked call
# --------------------------------------------------------------------------------------------------


def pointer(value: Tensor | None, dtype: torch.dtype, name: str, where: str, nullable: bool = False) -> int | None:
    """``value.data_ptr()`` after checking what C will assume: ``dtype``, a CPU tensor, contiguous.

    Raises ``TypeError`` (not a tensor, wrong dtype) or ``ValueError`` (None where the C side needs a
    pointer, not on the CPU, not contiguous), naming ``where`` and the argument ``name``.
    """
    if value is None:
        if nullable:
            return None
        raise ValueError(f"{where}: argument {name} must be a tensor, got None (a null pointer)")
    if not isinstance(value, Tensor):
        raise TypeError(f"{where}: argument {name} must be a torch.Tensor, got {type(value).__name__}")
    if value.dtype != dtype:
        raise TypeError(f"{where}: argument {name} must be {dtype}, got {value.dtype}")
    if not value.is_cpu:
        raise ValueError(f"{where}: argument {name} must be on the CPU, got {value.device}")
    if not value.is_contiguous():
        raise ValueError(f"{where}: argument {name} must be contiguous, got strides {value.stride()} "
                         f"for shape {tuple(value.shape)}")
    return value.data_ptr()


class NativeFunction:
    """One ``extern "C"`` function at one floating type, called with the prototype's names as keywords."""

    def __init__(self, cfunc, prototype: Prototype, dtype: torch.dtype):
        self.name = prototype.name[:-1] + SUFFIXES[dtype]
        self.prototype = prototype
        self._names = frozenset(p.name for p in prototype.params)
        # per parameter: (name, dtype of the pointee or None for a scalar, nullable)
        self._plan = tuple((p.name, (dtype if p.ctype == "S" else _ELEMENTS[p.ctype]) if p.pointer else None,
                            p.nullable) for p in prototype.params)
        # per annotated pointer: (name, count expression, its code, bound expression, its code)
        self._sizes = tuple((p.name, p.count, p.count and compile(p.count, p.name, "eval"), p.bound,
                             p.bound and compile(p.bound, p.name, "eval"))
                            for p in prototype.params if p.pointer and (p.count or p.bound))
        cfunc.argtypes = [ctypes.c_void_p if p.pointer else _SCALARS[p.ctype] for p in prototype.params]
        cfunc.restype = _RESTYPES[prototype.restype]
        self._cfunc = cfunc
        # per index array: the last tensor whose range was checked, its version and bound (see _check_sizes)
        self._in_range: dict[str, tuple] = {}

    def __call__(self, **kwargs):
        if kwargs.keys() != self._names:
            missing = sorted(self._names - kwargs.keys())
            extra = sorted(kwargs.keys() - self._names)
            raise TypeError(f"{self.name}: missing arguments {missing}, unexpected arguments {extra}")
        args = []
        for name, dtype, nullable in self._plan:
            value = kwargs[name]
            if dtype is None:  # a scalar: ctypes checks it against argtypes
                args.append(value)
                continue
            try:  # the checks of ``pointer``, inlined for the common case (a few microseconds a call)
                ok = value.dtype is dtype and value.is_cpu and value.is_contiguous() and isinstance(value, Tensor)
            except AttributeError:
                ok = False
            args.append(value.data_ptr() if ok else pointer(value, dtype, name, self.name, nullable))
        if self._sizes:
            self._check_sizes(kwargs)
        return self._cfunc(*args)

    def _check_sizes(self, kwargs: dict) -> None:
        """Every annotated pointer holds the elements the C side reads or writes, and an index array's
        values lie in range: a short array would be read or written past its end (uninitialised rows, or
        another object's memory), a long one means the sizes passed disagree with the arrays."""
        scope = {**kwargs, "n": lambda x: x.numel(), "max": max, "int": int, "__builtins__": {}}
        for name, count, count_code, bound, bound_code in self._sizes:
            value = kwargs[name]
            if value is None:
                continue
            if count_code is not None:
                expected = eval(count_code, scope)  # noqa: S307 (our own table's expressions, compiled once)
                if value.numel() != expected:
                    scalars = ", ".join(f"{k}={v}" for k, v in kwargs.items() if isinstance(v, int) and k in count)
                    raise ValueError(f"{self.name}: argument {name} holds {value.numel()} elements, the call needs "
                                     f"{count} = {expected}" + (f" ({scalars})" if scalars else ""))
            if bound_code is not None and value.numel():
                limit = eval(bound_code, scope)  # noqa: S307
                # The same tensor, not written since (its version counter) and checked against the same
                # bound, is in range still: a skinning binding's [N, K] index is passed twice a step, and
                # its min and max cost 0.5 ms a step at 300k Gaussians. (Writes through ``.data`` escape
                # the version counter: an index array is not written that way here.)
                seen = self._in_range.get(name)
                if seen is not None and seen[0]() is value and seen[1] == value._version and seen[2] == limit:
                    continue
                low, high = int(value.min()), int(value.max())
                if low < 0 or high >= limit:
                    raise ValueError(f"{self.name}: argument {name} holds indices in [{low}, {high}], the call needs "
                                     f"them in [0, {bound}) = [0, {limit})")
                self._in_range[name] = (weakref.ref(value), value._version, limit)


class NativeLibrary:
    """A loaded kernel: ``library.function("st_bin_fill", torch.float32)``."""

    def __init__(self, kernel: str, cdll: ctypes.CDLL):
        self.kernel, self.cdll = kernel, cdll
        self._functions = {}
        for prototype in parse_prototypes(KERNELS[kernel].prototypes):
            for dtype, suffix in SUFFIXES.items():
                cfunc = getattr(cdll, prototype.name[:-1] + suffix)
                self._functions[(prototype.name[:-2], dtype)] = NativeFunction(cfunc, prototype, dtype)

    def function(self, name: str, dtype: torch.dtype) -> NativeFunction:
        try:
            return self._functions[(name, dtype)]
        except KeyError:
            raise ValueError(f"{KERNELS[self.kernel].what}: no function {name} for {dtype} "
                             f"(supports {', '.join(map(str, SUFFIXES))})") from None


# --------------------------------------------------------------------------------------------------
# Loading, with one failure policy
# --------------------------------------------------------------------------------------------------

_LOADED: dict[str, NativeLibrary | NativeBuildError] = {}
_WARNED: set[str] = set()


def load(kernel: str) -> NativeLibrary:
    """The kernel, built on first use; raises ``NativeBuildError`` (every call, after one attempt).

    Any ``RuntimeError`` or ``OSError`` of the build (no compiler, a compile error, a failed
    ``dlopen``, an unwritable cache) becomes a ``NativeBuildError``.
    """
    entry = _LOADED.get(kernel)
    if entry is None:
        spec = KERNELS[kernel]
        try:
            cdll = build(spec.source, spec.what, spec.flags)
        except NativeBuildError as err:
            entry = err
        except (RuntimeError, OSError) as err:  # e.g. $CXX names a missing program, the cache is read-only
            entry = NativeBuildError(f"{spec.what}: building {spec.source} failed: {err}")
        else:
            try:
                entry = NativeLibrary(kernel, cdll)
            except AttributeError as err:  # a function of the table is not exported
                entry = NativeBuildError(f"{spec.what}: the library built from {spec.source} lacks {err}")
        _LOADED[kernel] = entry
    if isinstance(entry, NativeBuildError):
        raise NativeBuildError(str(entry))
    return entry


def load_or_warn(kernel: str, fallback: str) -> NativeLibrary | None:
    """``load(kernel)``, or None after one ``RuntimeWarning`` per kernel (``fallback`` says what the
    caller runs instead): for callers that chose the C++ path implicitly and have a torch twin."""
    try:
        return load(kernel)
    except NativeBuildError as err:
        if kernel not in _WARNED:
            _WARNED.add(kernel)
            warnings.warn(f"{err}\n{fallback}", RuntimeWarning, stacklevel=3)
        return None


def cpu_id() -> str:
    """The CPU model and feature flags: part of the cache key, because -march=native code built on
    one CPU may not run on another that shares the home directory."""
    try:
        info = Path("/proc/cpuinfo").read_text()
        keep = [line for line in info.splitlines() if line.startswith(("model name", "flags"))][:2]
        return "\n".join(keep)
    except OSError:
        return platform.processor()


def cache_dir() -> Path:
    """Where the built libraries live: ``paths.cache_dir() / "ext"``."""
    return _user_cache_dir() / "ext"


def compiler(what: str) -> str:
    """The C++ compiler; ``what`` names the feature that needs it in the error."""
    cxx = os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++") or shutil.which("clang++")
    if not cxx:
        raise NativeBuildError(f"{what}: no C++ compiler found (set $CXX or install g++)")
    return cxx


def build(source: Path, what: str, flags: tuple[str, ...] = ()) -> ctypes.CDLL:
    """Compile ``source`` (once per user, source version and machine) and load it.

    Args:
        source: the .cpp file.
        what: the feature it serves, named in errors (e.g. "render backend 'cpu'").
        flags: compiler options beyond ``FLAGS`` (``Kernel.flags``).
    Raises:
        NativeBuildError: no compiler, or compilation failed (with the compiler's message).
    """
    cxx = compiler(what)
    code = source.read_bytes()
    key = " ".join([cxx, *FLAGS, *flags, platform.machine(), platform.platform(), cpu_id()])
    tag = hashlib.sha256(code + key.encode()).hexdigest()[:16]
    out = cache_dir() / f"{source.stem}_{tag}.so"
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=out.stem + ".", suffix=".so.tmp", dir=out.parent)
        os.close(fd)
        try:
            # fall back to portable code, then to one thread, for compilers lacking those options
            for drop in ((), ("-march=native",), ("-march=native", "-fopenmp")):
                cmd = [cxx, *[f for f in FLAGS if f not in drop], *flags, str(source), "-o", tmp]
                res = subprocess.run(cmd, capture_output=True, text=True)
                if res.returncode == 0:
                    break
            if res.returncode != 0:
                raise NativeBuildError(f"{what}: compiling {source} with {cxx} failed:\n{res.stderr}")
            os.replace(tmp, out)  # atomic: concurrent builders each install a complete library
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    return ctypes.CDLL(str(out))
