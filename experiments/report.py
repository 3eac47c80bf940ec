"""Write docs/results.md from the committed result tables: ``python -m experiments.report``.

docs/results.md is generated; never edit it by hand. It is put together from three sources:

- ``experiments/results/<name>/table.md``: the numbers, exactly as the experiment script wrote them
  from its ``results.csv`` (copied verbatim; no number in a table of docs/results.md comes from
  anywhere else);
- ``experiments/results/<name>/notes.md``: the hand-written reading of that table. It is Markdown
  written for docs/results.md's place (links relative to ``docs/``). A line ``<!-- table -->``
  splits it: what is above goes before the folder's table, what is below after it; without that
  line all of it goes after;
- `SECTIONS` below: the order, the headings, and per result folder the command that produced it,
  its runs and its wall time on the 2-core CPU machine.

A folder whose table.md no section lists is not dropped: it gets one line (its table's title and
run count, with a link) under "Other committed results", at the end. The output is deterministic
(fixed order, folders sorted, no timestamps), so ``--check`` can compare it with the committed file.

    python -m experiments.report            # (re)write docs/results.md
    python -m experiments.report --check    # exit 1 if docs/results.md is not what it would write

Standard library only: it reads text files and writes one (no torch, no harness, no package import).
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "experiments" / "results"
OUT = REPO / "docs" / "results.md"
TABLE_MARKER = "<!-- table -->"


@dataclass(frozen=True)
class Result:
    folder: str  # experiments/results/<folder>/
    command: str  # run from the repository root
    runs: str
    wall: str  # on the 2-core CPU machine, 2 jobs; "-" where it was not recorded


@dataclass(frozen=True)
class Section:
    heading: str
    results: tuple[Result, ...]


ABLATION = "python -m experiments.ablation_method"
DEFAULTS = "--variant old_defaults"  # the defaults before 2026-12-05 (align=moments, switch 0.8)
PAIRS = "--presets quadruped_jump quadruped_twist humanoid_walk humanoid_jump humanoid_twist hopper_twist"
# The turning runs made before search.refine_steps (2026-12-07): its default, 40 steps, changes every trajectory run
TRAJECTORY_BEFORE_REFINE = ("python -m experiments.turning --variant trajectory_beam --override search.refine_steps=0 "
                            "--override search.depth_cue=null")
# The trajectory runs made before search.depth_cue (2026-12-07): its default, smoothest, changes every one-view one
BEFORE_CUE = "--override search.depth_cue=null"
REALISTIC = "--setting realistic"

LITE = ("--presets quadruped_walk hopper_jump flower_twist --pairs quadruped_jump humanoid_twist --seeds 0 1 "
        "--rotations 0.01")  # rotation_null's five cases furthest apart

SECTIONS: tuple[Section, ...] = (
    Section("The rotation curves again, a day later (2026-12-07, tenth sitting)", (
        Result("rotation_curves_recheck", "python -m experiments.rotation_curves --variant defaults --jobs 2 "
               "--out experiments/results/rotation_curves_recheck", "400", "46 min"),
    )),
    Section("The per-frame rigid part frozen at the start (2026-12-07, tenth sitting)", (
        Result("turning_rigid_frozen", "python -m experiments.turning --variant trajectory_beam --override "
               "deform.rigid_lr=0 --seeds 0 1 --jobs 2 --out experiments/results/turning_rigid_frozen", "48",
               "10.5 min"),
    )),
    Section("Where the turning start belongs: Table 2 and the real sequences (2026-12-07, ninth sitting)", (
        Result("table2_trajectory_baseline", "python -m experiments.table2 --variant defaults --jobs 2 "
               "--out experiments/results/table2_trajectory_baseline", "36", "3.5 min"),
        Result("table2_trajectory", "python -m experiments.table2 --variant defaults+trajectory_beam --jobs 2 "
               "--out experiments/results/table2_trajectory", "36", "9 min"),
        Result("table2_trajectory_fit", "python -m experiments.table2 --variant defaults+trajectory_beam --override "
               "search.turn_fit=0.3 --jobs 2 --out experiments/results/table2_trajectory_fit", "36", "11 min"),
    )),
    Section("ARAP's frames with the rendered one among them (2026-12-07, ninth sitting)", (
        Result("shift_curves_arap_uniform", "python -m experiments.shift_curves --variant defaults --shifts 0 0.8 "
               "--seeds 0 1 --pairs --jobs 2 --out experiments/results/shift_curves_arap_uniform", "80", "10 min"),
        Result("shift_curves_arap_rendered", "python -m experiments.shift_curves --variant defaults --shifts 0 0.8 "
               "--seeds 0 1 --pairs --jobs 2 --override arap_sampling=rendered "
               "--out experiments/results/shift_curves_arap_rendered", "80", "10 min"),
        Result("turning_arap_rendered", "python -m experiments.turning --variant trajectory_beam --override "
               "arap_sampling=rendered --seeds 0 1 --jobs 2 --out experiments/results/turning_arap_rendered", "48",
               "8 min"),
    )),
    Section("The bridge over two wrong frames in a row (2026-12-07, ninth sitting)", (
        Result("turning_bridge_span2", "python -m experiments.turning --variant trajectory_beam --override "
               "search.bridge_span=2 --seeds 0 1 --jobs 2 --out experiments/results/turning_bridge_span2", "48",
               "8.5 min"),
    )),
    Section("The trajectory's depths from its silhouettes (2026-12-07, eighth sitting)", (
        Result("turning_depth_cue", "python -m experiments.turning --variant trajectory_beam --seeds 0 1 --jobs 2 "
               "--out experiments/results/turning_depth_cue", "48", "7.5 min"),
        Result("turning_depth_cue_seeds23", "python -m experiments.turning --variant trajectory_beam --seeds 2 3 --jobs 2 "
               "--out experiments/results/turning_depth_cue_seeds23", "48", "9.5 min"),
        Result("trajectory_beam_pairs_cue", f"{ABLATION} --variants trajectory_beam --shifts 0.8 --seeds 0 1 2 3 "
               f"--pairs {PAIRS.split(' ', 1)[1]} --jobs 2 --out experiments/results/trajectory_beam_pairs_cue", "80",
               "20 min"),
        Result("turning_bridge06", "python -m experiments.turning --variant trajectory_beam --override "
               "search.bridge_margin=0.6 --seeds 0 1 --jobs 2 --out experiments/results/turning_bridge06", "48",
               "9 min (two launches)"),
        Result("trajectory_beam_pairs_bridge06", f"{ABLATION} --variants trajectory_beam --override search.bridge_margin=0.6 "
               "--shifts 0.8 --seeds 0 1 2 3 --presets flower_twist --pairs quadruped_twist humanoid_twist hopper_twist "
               "--jobs 2 --out experiments/results/trajectory_beam_pairs_bridge06", "32", "8 min"),
    )),
    Section("The trajectory refined on pixels and bridged (2026-12-07, seventh sitting)", (
        Result("turning_bridge_bound10", f"python -m experiments.turning --variant trajectory_beam {BEFORE_CUE} --seeds 0 1 --jobs 2 "
               "--out experiments/results/turning_bridge_bound10", "48", "9 min"),
        Result("trajectory_beam_pairs_bound10", f"{ABLATION} --variants trajectory_beam {BEFORE_CUE} --shifts 0.8 --seeds 0 1 2 3 "
               f"--pairs {PAIRS.split(' ', 1)[1]} --jobs 2 --out experiments/results/trajectory_beam_pairs_bound10", "80",
               "17 min"),
        Result("turning_bridge", f"python -m experiments.turning --variant trajectory_beam {BEFORE_CUE} --override "
               "search.refine_degrees=null --seeds 0 1 --jobs 2 --out experiments/results/turning_bridge", "48", "9 min"),
        Result("trajectory_beam_pairs_bridge", f"{ABLATION} --variants trajectory_beam {BEFORE_CUE} --override search.refine_degrees=null "
               f"--shifts 0.8 --seeds 0 1 2 3 --pairs {PAIRS.split(' ', 1)[1]} --jobs 2 "
               "--out experiments/results/trajectory_beam_pairs_bridge", "80", "15 min"),
        Result("turning_bridge_views2", "python -m experiments.turning --variant trajectory_beam --override views=2 "
               "--override search.refine_degrees=null --seeds 0 1 --jobs 2 --out experiments/results/turning_bridge_views2",
               "48", "15 min"),
    )),
    Section("Where the turns' 3D error comes from, and the beam ranked by pixels (2026-12-07, sixth sitting)", (
        Result("turning_beam_pose", f"{TRAJECTORY_BEFORE_REFINE} --override search.beam_score=bands --seeds 0 1 --jobs 2 "
               "--out experiments/results/turning_beam_pose", "48", "7 min"),
        Result("turning_beam_views2_pose", f"{TRAJECTORY_BEFORE_REFINE} --override views=2 --override search.beam_score=bands "
               "--seeds 0 1 --jobs 2 --out experiments/results/turning_beam_views2_pose", "48", "10 min"),
        Result("turning_beam_views2_gate", f"{TRAJECTORY_BEFORE_REFINE} --override views=2 --override search.gate_views=2 "
               "--override search.beam_score=bands --seeds 0 1 --jobs 2 --out experiments/results/turning_beam_views2_gate",
               "48", "10 min"),
        Result("turning_beam_pixels", f"{TRAJECTORY_BEFORE_REFINE} --seeds 0 1 --jobs 2 "
               "--out experiments/results/turning_beam_pixels", "48", "8 min"),
        Result("turning_beam_views2_pixels", f"{TRAJECTORY_BEFORE_REFINE} --override views=2 --seeds 0 1 --jobs 2 "
               "--out experiments/results/turning_beam_views2_pixels", "48", "10 min"),
        Result("trajectory_beam_pairs_bands", f"{ABLATION} --variants trajectory_beam {BEFORE_CUE} --override search.refine_steps=0 "
               f"--override search.beam_score=bands --shifts 0.8 --seeds 0 1 2 3 --pairs {PAIRS.split(' ', 1)[1]} --jobs 2 "
               "--out experiments/results/trajectory_beam_pairs_bands", "80", "20 min"),
        Result("trajectory_beam_pairs_pixels", f"{ABLATION} --variants trajectory_beam {BEFORE_CUE} --override search.refine_steps=0 "
               f"--shifts 0.8 --seeds 0 1 2 3 --pairs {PAIRS.split(' ', 1)[1]} --jobs 2 "
               "--out experiments/results/trajectory_beam_pairs_pixels", "80", "20 min"),
    )),
    Section("The compositing in SIMD lanes: the same quality, a shorter start (2026-12-07, fifth sitting)", (
        Result("shift_curves_defaults_simd", "python -m experiments.shift_curves --variant defaults --shifts 0 0.8 "
               "--seeds 0 1 --no-pairs --jobs 2 --out experiments/results/shift_curves_defaults_simd", "32", "4 min"),
        Result("turning_beam_simd", "python -m experiments.turning --variant trajectory_beam --seeds 0 1 --jobs 2 "
               "--out experiments/results/turning_beam_simd", "48", "7 min"),
        Result("turning_beam_rigidlr003", "python -m experiments.turning --variant trajectory_beam --override "
               "deform.rigid_lr=0.003 --seeds 0 1 --jobs 2 --out experiments/results/turning_beam_rigidlr003", "48", "7 min"),
    )),
    Section("The renderer in SIMD lanes and the search's camera gradient: the same quality, the start's cost (2026-12-07, fourth sitting)", (
        Result("shift_curves_defaults_check", "python -m experiments.shift_curves --variant defaults --shifts 0 0.8 "
               "--seeds 0 1 --no-pairs --jobs 2 --out experiments/results/shift_curves_defaults_check", "32",
               "6 min (and at 7f06973 from a worktree: shift_curves_defaults_check_before, 8 min)"),
        Result("shift_curves_defaults_check_before", "(at 7f06973) python -m experiments.shift_curves --variant defaults "
               "--shifts 0 0.8 --seeds 0 1 --no-pairs --jobs 2 --out experiments/results/shift_curves_defaults_check_before",
               "32", "8 min"),
        Result("turning_beam_camgrad", "python -m experiments.turning --variant trajectory_beam --seeds 0 1 --jobs 2 "
               "--out experiments/results/turning_beam_camgrad", "48", "9 min"),
    )),
    Section("The criterion's spread frame by frame, two views of a turn, the beam's second branch (2026-12-07, third sitting)", (
        Result("rotation_null_lite", f"python -m experiments.rotation_curves --variant defaults {LITE} --jobs 2 "
               "--out experiments/results/rotation_null_lite", "40", "10 min (one job)"),
        Result("rotation_null_steps1000", f"python -m experiments.rotation_curves --variant defaults --override max_steps=1000 "
               f"{LITE} --jobs 2 --out experiments/results/rotation_null_steps1000", "40", "15 min (one job)"),
        Result("rotation_null_eps4", f"python -m experiments.rotation_curves --variant defaults --override deform.adam_eps=1e-4 "
               f"{LITE} --jobs 2 --out experiments/results/rotation_null_eps4", "40", "10 min (one job)"),
        Result("turning_beam_views2", "python -m experiments.turning --variant trajectory_beam --override views=2 --seeds 0 1 "
               "--jobs 2 --out experiments/results/turning_beam_views2", "48", "20 min (one job; before commit 5e6ef84)"),
        Result("turning_beam_identity", "python -m experiments.turning --variant trajectory_beam --seeds 0 1 --jobs 2 "
               "--out experiments/results/turning_beam_identity", "48", "20 min (one job)"),
        Result("turning_beam_views2_identity", "python -m experiments.turning --variant trajectory_beam --override views=2 "
               "--seeds 0 1 --jobs 2 --out experiments/results/turning_beam_views2_identity", "48", "20 min (one job)"),
    )),
    Section("The criterion's spread, the rescue of an asset out of view, the trajectory's cost (2026-12-07, later)", (
        Result("rotation_null_lrfinal", "python -m experiments.rotation_curves --variant defaults --rotations 0.01 "
               "--override deform.lr_final=0.00005 --jobs 2 --out experiments/results/rotation_null_lrfinal", "160", "21 min"),
        Result("scale_curves_views1_rescue", "python -m experiments.scale_curves --variant defaults --scales 0.7 1.4 "
               "--override loss.rescue_recentre=0 --jobs 2 --out experiments/results/scale_curves_views1_rescue", "240",
               "10 min (120 runs; the other 120 from scale_curves_views1_average)"),
        Result("scale_curves_views1_recentre", "python -m experiments.scale_curves --variant defaults --scales 0.7 1.4 "
               "--jobs 2 --out experiments/results/scale_curves_views1_recentre", "240",
               "10 min (120 runs; the other 120 from scale_curves_views1_average)"),
        Result("turning_beam_rerun", "python -m experiments.turning --variant trajectory_beam --override search.frame_steps=15 "
               "--override search.frame_polish=10 --seeds 0 1 --jobs 2 --out experiments/results/turning_beam_rerun", "48",
               "5 min (24 runs; the other 24 from turning_beam_average)"),
        Result("turning_beam_steps6", "python -m experiments.turning --variant trajectory_beam --override search.frame_steps=6 "
               "--override search.frame_polish=4 --seeds 0 1 --jobs 2 --out experiments/results/turning_beam_steps6", "48", "5 min"),
        Result("turning_beam_steps9", "python -m experiments.turning --variant trajectory_beam --override search.frame_steps=9 "
               "--override search.frame_polish=5 --seeds 0 1 --jobs 2 --out experiments/results/turning_beam_steps9", "48", "5 min"),
        Result("turning_beam_steps12", "python -m experiments.turning --variant trajectory_beam --override search.frame_steps=12 "
               "--override search.frame_polish=5 --seeds 0 1 --jobs 2 --out experiments/results/turning_beam_steps12", "48",
               "10 min (beside two paper-scale runs)"),
    )),
    Section("Two views and a rescaled start; the turning motions at the plain defaults (2026-12-07)", (
        Result("scale_curves_views2_average", "python -m experiments.scale_curves --variant defaults --override views=2 "
               "--scales 0.7 1.4 --jobs 2 --out experiments/results/scale_curves_views2_average", "240",
               "about 45 min (the search before its area-based scale)"),
        Result("turning_average", "python -m experiments.turning --variant defaults --seeds 0 1 --jobs 2 "
               "--out experiments/results/turning_average", "48", "10 min (before the rescue)"),
        Result("scale_curves_views2_areas", "python -m experiments.scale_curves --variant defaults --override views=2 "
               "--scales 0.7 1.4 --jobs 2 --out experiments/results/scale_curves_views2_areas", "240", "38 min"),
        Result("turning_rescue", "python -m experiments.turning --variant defaults --seeds 0 1 --jobs 2 "
               "--out experiments/results/turning_rescue", "48", "5 min"),
    )),
    Section("The defaults of 2026-12-06 (the TimeNet at 1e-3, the weights' average) across the curves", (
        Result("shift_curves_average", "python -m experiments.shift_curves --variant defaults --shifts 0 0.8 1.2 "
               "--seeds 0 1 2 3 --jobs 2 --out experiments/results/shift_curves_average", "96", "15 min"),
        Result("shift_curves_average_pairs", f"python -m experiments.shift_curves --variant defaults --override dataset.seed=1 "
               f"{PAIRS} --shifts 0 0.8 1.2 --seeds 0 1 2 3 --jobs 2 --out experiments/results/shift_curves_average_pairs",
               "144", "20 min"),
        Result("scale_curves_views1_average", "python -m experiments.scale_curves --variant defaults --scales 0.7 1.4 "
               "--jobs 2 --out experiments/results/scale_curves_views1_average", "240",
               "about 42 min (20 of them beside the test suite)"),
        Result("rotation_null", "python -m experiments.rotation_curves --variant defaults --rotations 0.01 --jobs 2 "
               "--out experiments/results/rotation_null", "160", "21 min"),
        Result("rotation_flower_views2", "python -m experiments.rotation_curves --variant defaults --presets flower_twist "
               "--no-pairs --override views=2 --seeds 0 1 2 3 --jobs 2 --out experiments/results/rotation_flower_views2",
               "40", "7 min"),
        Result("turning_beam_average", "python -m experiments.turning --variant trajectory_beam --seeds 0 1 --jobs 2 "
               "--out experiments/results/turning_beam_average", "48", "10 min"),
        Result("realistic_pairs_average", f"{ABLATION} {REALISTIC} --variants defaults pixel --shifts 0.6 --seeds 0 1 2 3 "
               f"--pairs {PAIRS.split(' ', 1)[1]} --jobs 2 --out experiments/results/realistic_pairs_average", "160", "21 min"),
        Result("table2_average", "python -m experiments.table2 --variant defaults --seeds 0 1 2 3 4 5 6 7 --jobs 2 "
               "--out experiments/results/table2_average", "144",
               "32 min (directions 0-3, 14 min with fitting the two Consistent4D canonicals; then 4-7, 18 min)"),
    )),
    Section("The TimeNet: its position encoding and its learning rate at CPU scale (2026-12-06)", (
        Result("pos_freqs", f"{ABLATION} --variants defaults pos_freqs0 pos_freqs2 pos_freqs3 pos_freqs4 --shifts 0 "
               "--seeds 0 1 2 3 --pairs --jobs 2 --out experiments/results/pos_freqs", "200", "25 min"),
        Result("realistic_pairs_pf3", f"{ABLATION} {REALISTIC} --variants pos_freqs3 pixel+pos_freqs3 --shifts 0.6 "
               "--seeds 0 1 2 3 --pairs --jobs 2 --out experiments/results/realistic_pairs_pf3", "160", "30 min"),
        Result("pos_freqs_lr001", f"{ABLATION} --variants defaults pos_freqs3 --shifts 0 --seeds 0 1 2 3 --pairs "
               "--override deform.lr_init=0.001 --override deform.lr_final=0.0005 --jobs 1 "
               "--out experiments/results/pos_freqs_lr001", "80", "25 min (1 job, beside another experiment)"),
    )),
    Section("Any start: turned, rescaled, turning (beyond the paper, 2026-12-05)", (
        Result("rotation_curves_average", "python -m experiments.rotation_curves --variant defaults --jobs 2 "
               "--out experiments/results/rotation_curves_average", "400", "64 min (20 of them beside the test suite)"),
        Result("rotation_curves_lr001", "python -m experiments.rotation_curves --variant defaults+no_average --jobs 2 "
               "--out experiments/results/rotation_curves_lr001", "400", "50 min"),
        Result("rotation_curves_retry", "python -m experiments.rotation_curves --variant defaults+no_average+lr2e-4 --jobs 2 "
               "--out experiments/results/rotation_curves_retry", "400", "60 min"),
        Result("scale_curves_views1", "python -m experiments.scale_curves --variant defaults --scales 0.7 1.4 --jobs 2 "
               "--out experiments/results/scale_curves_views1", "240", "about 45 min (one and two jobs)"),
        Result("scale_curves_views2", "python -m experiments.scale_curves --variant defaults --override views=2 --scales 0.7 1.4 "
               "--no-pairs --jobs 2 --out experiments/results/scale_curves_views2", "96", "27 min"),
        Result("shift_curves_search", "python -m experiments.shift_curves --variant defaults --shifts 0 0.8 1.2 --seeds 0 1 "
               "--jobs 2 --out experiments/results/shift_curves_search", "48", "7 min"),
        Result("sensitivity_defaults", "python -m experiments.shift_curves --variant defaults --shifts 0 0.0001 0.0002 0.001 "
               "--presets quadruped_walk --seeds 0 --out experiments/results/sensitivity_defaults", "8", "3 min"),
        Result("sensitivity_switch80", "python -m experiments.shift_curves --variant switch80 --shifts 0 0.0001 0.0002 0.001 "
               "--presets quadruped_walk --seeds 0 --out experiments/results/sensitivity_switch80", "8", "3 min"),
        Result("rotation_curves_defaults", "python -m experiments.rotation_curves --variant defaults --jobs 2 "
               "--out experiments/results/rotation_curves_defaults", "400", "about 60 min of runs (restarted across sittings)"),
        Result("turning_trajectory_beam", "python -m experiments.turning --variant trajectory_beam --seeds 0 1 --jobs 1 "
               "--out experiments/results/turning_trajectory_beam", "48", "25 min at one job (beside a paper-scale run)"),
        Result("turning_trajectory_gate", "python -m experiments.turning --variant trajectory --seeds 0 1 --jobs 1 "
               "--out experiments/results/turning_trajectory_gate", "48", "32 min at one job (beside a paper-scale run)"),
        Result("turning_trajectory_lr001", "python -m experiments.turning --variant defaults trajectory --seeds 0 1 --jobs 2 "
               "--out experiments/results/turning_trajectory_lr001", "48", "13 min"),
        Result("turning_trajectory", "python -m experiments.turning --variant defaults trajectory --override deform.rigid_lr=0.01 "
               "--seeds 0 1 --jobs 2 --out experiments/results/turning_trajectory", "48", "9 min"),
        Result("turning_defaults", "python -m experiments.turning --variant defaults --seeds 0 1 --jobs 2 "
               "--out experiments/results/turning_defaults", "48", "8 min"),
        Result("turning_old_defaults", "python -m experiments.turning --variant old_defaults --seeds 0 1 --jobs 2 "
               "--out experiments/results/turning_old_defaults", "48", "6 min"),
        Result("paper_rigid_first", f"{ABLATION} --variants paper paper+rigid_first --shifts 0.8 --seeds 0 1 --jobs 2 "
               "--out experiments/results/paper_rigid_first", "32", "4 min"),
        Result("trajectory_pairs", f"{ABLATION} --variants defaults trajectory pixel+trajectory --shifts 0.8 --seeds 0 1 2 3 "
               f"--pairs {PAIRS.split(' ', 1)[1]} --jobs 2 --out experiments/results/trajectory_pairs", "240",
               "about 60 min (beside other work)"),
        Result("trajectory_beam_pairs", f"{ABLATION} --variants trajectory_beam --shifts 0.8 --seeds 0 1 2 3 "
               f"--pairs {PAIRS.split(' ', 1)[1]} --jobs 1 --out experiments/results/trajectory_beam_pairs", "80",
               "54 min at one job (beside a paper-scale run and the test suite)"),
        Result("trajectory_gate_pairs", f"{ABLATION} --variants trajectory --shifts 0.8 --seeds 0 1 2 3 "
               f"--pairs {PAIRS.split(' ', 1)[1]} --jobs 1 --out experiments/results/trajectory_gate_pairs", "80",
               "60 min at one job (beside a paper-scale run and the test suite)"),
        Result("paper_rigid_first_pairs", f"{ABLATION} --variants paper paper+rigid_first pixel+paper+rigid_first "
               f"--shifts 0.8 --seeds 0 1 2 3 --pairs {PAIRS.split(' ', 1)[1]} --jobs 2 "
               "--out experiments/results/paper_rigid_first_pairs", "240", "45 min"),
    )),
    Section("The defaults of 2026-12-05: the search and the switch at 0.5", (
        Result("defaults_candidates", f"{ABLATION} --variants old_defaults search+switch80 search+switch80+switch_anytime "
               "search pixel+search --shifts 0.6 --seeds 0 1 --jobs 2 --out experiments/results/defaults_candidates",
               "80", "10 min"),
        Result("defaults_candidates_realistic", f"{ABLATION} --setting realistic --variants old_defaults search+switch80 "
               "search+switch80+switch_anytime search pixel+search pixel+moments --shifts 0.6 --seeds 0 1 --jobs 2 "
               "--out experiments/results/defaults_candidates_realistic", "96", "12 min"),
        Result("table2_defaults_search", "python -m experiments.table2 --variant defaults --jobs 1 "
               "--out experiments/results/table2_defaults_search", "36", "about 26 min at one job (beside a paper-scale run)"),
        Result("table2_search", "python -m experiments.table2 --variant search switch80 --jobs 2 "
               "--out experiments/results/table2_search", "36", "9 min"),
        Result("table2_search_anytime50", "python -m experiments.table2 --variant defaults --jobs 2 "
               "--out experiments/results/table2_search_anytime50", "36", "9 min"),
        Result("table2_prior", "python -m experiments.table2 --variant defaults switch_prior --jobs 1 "
               "--out experiments/results/table2_prior", "36 (18 run, the Pixel rows from table2_defaults_search's CSV)",
               "9 min at one job (beside a paper-scale run)"),
        Result("arap10", f"{ABLATION} --variants defaults defaults+arap10 --shifts 0.6 --seeds 0 1 "
               f"--pairs {PAIRS.split(' ', 1)[1]} --jobs 2 --out experiments/results/arap10", "80", "21 min"),
        Result("table2_deterministic", "python -m experiments.table2 --variant defaults --seeds 0 1 2 3 --jobs 2 "
               "--out experiments/results/table2_deterministic", "72", "24 min"),
        Result("realistic_pairs_deterministic", f"{ABLATION} {REALISTIC} --variants defaults pixel --shifts 0.6 "
               f"--seeds 0 1 2 3 --pairs {PAIRS.split(' ', 1)[1]} --jobs 2 "
               "--out experiments/results/realistic_pairs_deterministic", "160", "28 min"),
        Result("realistic_pairs", f"{ABLATION} {REALISTIC} --variants defaults pixel --shifts 0.6 --seeds 0 1 2 3 "
               f"--pairs {PAIRS.split(' ', 1)[1]} --jobs 1 --out experiments/results/realistic_pairs", "160",
               "62 min (1 job)"),
    )),
    Section("Robustness to the initial shift (Fig. 4, Fig. 13), the paper's start", (
        Result("shift_curves", "python -m experiments.shift_curves --jobs 2", "224", "17.1 min"),
        Result("shift_curves_paper", "python -m experiments.shift_curves --scale paper --override trainer=cpu "
               "--shifts 0 0.4 0.8 1.2 --seeds 0 --jobs 2 --out experiments/results/shift_curves_paper", "32",
               "about 9.3 h over six sittings (9-29 min a run; stopped and collected with --collect)"),
        Result("shift_curves_paper_defaults", "python -m experiments.shift_curves --scale paper --variant defaults "
               "--override trainer=cpu --shifts 0.8 --seeds 0 --jobs 2 "
               "--out experiments/results/shift_curves_paper_defaults", "16",
               "about 3.4 h over three sittings (9-26 min a run; collected with --collect)"),
    )),
    Section("Tables 1 and 4: deformation model x LPIPS phase x loss", (
        Result("table1", "python -m experiments.table1 --jobs 2", "64", "5.7 min"),
        Result("table4", "python -m experiments.table4 --jobs 2", "64", "5.5 min"),
    )),
    Section("Table 3: the spatial-loss terms", (
        Result("ablation_pixel_loss", "python -m experiments.ablation_pixel_loss --jobs 2", "64", "4.6 min"),
    )),
    Section("More views (Fig. 11)", (
        Result("multiview", "python -m experiments.multiview --jobs 2", "144", "11.1 min"),
    )),
    Section("Table 2: the realistic setting and real sequences", (
        Result("table2", "python -m experiments.table2 --jobs 2", "36",
               "5.5 min (with fitting the two Consistent4D canonicals)"),
    )),
    Section("Is the CPU scale converged? Not in image PSNR", (
        Result("budget_defaults",
               "python -m experiments.budget --variant moments fixed_switch "
               "--steps 500 1000 2000 4000 --jobs 2 --out experiments/results/budget_defaults",
               "128", "66 min in all (the 4000-step level: 32 runs, 15.8 min)"),
        Result("budget", "python -m experiments.budget --variant paper+bce_1e-6 --seeds 0 --jobs 2", "48", "-"),
    )),
    Section("Beyond the paper: the tracker's defaults", (
        Result("shift_curves_defaults",
               f"python -m experiments.shift_curves {DEFAULTS} --jobs 2 --out experiments/results/shift_curves_defaults",
               "224", "16 min"),
        Result("shift_curves_defaults_pairs",
               f"python -m experiments.shift_curves {DEFAULTS} --override dataset.seed=1 {PAIRS} --shifts 0 0.8 1.2 "
               "--jobs 2 --out experiments/results/shift_curves_defaults_pairs",
               "144", "11.5 min"),
        Result("shift_curves_align",
               "python -m experiments.shift_curves --variant moments fixed_switch --jobs 2 "
               "--out experiments/results/shift_curves_align",
               "224", "-"),
        Result("shift_curves_align_pairs",
               f"python -m experiments.shift_curves --variant moments fixed_switch --override dataset.seed=1 {PAIRS} "
               "--shifts 0 0.5 0.8 1.0 1.2 --jobs 2 --out experiments/results/shift_curves_align_pairs",
               "240", "-"),
    )),
    Section("Tables 1 and 2 with the defaults", (
        Result("table1_defaults",
               f"python -m experiments.table1 {DEFAULTS} --jobs 2 --out experiments/results/table1_defaults",
               "64", "5.8 min"),
        Result("table2_defaults",
               f"python -m experiments.table2 {DEFAULTS} --jobs 2 --out experiments/results/table2_defaults",
               "36", "5.4 min"),
        Result("table2_defaults_switch50",
               "python -m experiments.table2 --variant old_defaults switch50 "
               "--presets quadruped_walk --jobs 2 --out experiments/results/table2_defaults_switch50",
               "24", "4.4 min"),
        Result("table2_defaults_1000",
               f"python -m experiments.table2 {DEFAULTS} --override max_steps=1000 --jobs 2 "
               "--out experiments/results/table2_defaults_1000",
               "36", "8.5 min"),
        Result("table1_defaults_native",
               f"python -m experiments.table1 {DEFAULTS} --jobs 2 --out experiments/results/table1_defaults_native",
               "64", "5.2 min"),
    )),
    Section("The start and the switch, measured", (
        Result("ablation_views4",
               f"{ABLATION} --variants moments+fixed_switch paper old_defaults --override views=4 --override eval.per_view=true "
               "--seeds 0 1 2 3 --shifts 0.8 --jobs 2 --out experiments/results/ablation_views4",
               "96", "about 15 min (the defaults' 32 runs: 4.5 min)"),
        Result("ablation_realistic",
               f"{ABLATION} --variants moments+fixed_switch pixel+moments paper pixel+paper {REALISTIC} "
               "--seeds 0 1 2 3 --shifts 0.6 --jobs 2 --out experiments/results/ablation_realistic",
               "128", "about 20 min"),
        Result("ablation_gate_realistic",
               f"{ABLATION} --variants old_defaults pixel+moments {REALISTIC} "
               "--seeds 0 1 2 3 --shifts 0.6 --jobs 2 --out experiments/results/ablation_gate_realistic",
               "64", "5 min"),
        Result("ablation_switch_realistic",
               f"{ABLATION} --variants moments+fixed_switch+switch30 moments+fixed_switch+switch45 moments+fixed_switch+mask3 moments+fixed_switch+appearance pixel+moments+appearance {REALISTIC} "
               "--seeds 0 1 --shifts 0.6 --jobs 2 --out experiments/results/ablation_switch_realistic",
               "80", "-"),
        Result("ablation_maskonly_realistic",
               f"{ABLATION} --variants moments+fixed_switch+masks_only moments+fixed_switch pixel+moments {REALISTIC} "
               "--seeds 0 1 --shifts 0.6 --jobs 2 --out experiments/results/ablation_maskonly_realistic",
               "48", "-"),
        Result("ablation_realistic_2000",
               f"{ABLATION} --variants moments+fixed_switch pixel+moments {REALISTIC} --override max_steps=2000 "
               "--seeds 0 1 --shifts 0.6 --jobs 2 --out experiments/results/ablation_realistic_2000",
               "32", "-"),
    )),
)

OTHER = "Other committed results"


class ReportError(Exception):
    """An input the report cannot be written from (a listed table missing, a folder listed twice)."""


def slug(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading (without the -1, -2 of repeated headings)."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _read(path: Path) -> str:
    return path.read_text(encoding="utf-8").replace("\r\n", "\n").strip()


def _link(folder: str, name: str) -> str:
    return f"../experiments/results/{folder}/{name}"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _notes(folder: str) -> tuple[str, str]:
    """A folder's notes.md split at the table marker: (before the table, after it)."""
    path = RESULTS / folder / "notes.md"
    if not path.is_file():
        return "", ""
    text = _read(path)
    lines = text.split("\n")
    marks = [i for i, line in enumerate(lines) if line.strip() == TABLE_MARKER]
    if len(marks) > 1:
        raise ReportError(f"{path.relative_to(REPO)}: {TABLE_MARKER} appears {len(marks)} times (at most once)")
    if not marks:
        return "", text
    i = marks[0]
    return "\n".join(lines[:i]).strip(), "\n".join(lines[i + 1:]).strip()


def _result_block(result: Result) -> list[str]:
    folder = RESULTS / result.folder
    table = folder / "table.md"
    if not table.is_file():
        raise ReportError(f"{table.relative_to(REPO)} is missing (listed in experiments/report.py SECTIONS)")
    files = [f"[table.md]({_link(result.folder, 'table.md')})"]
    if (folder / "results.csv").is_file():
        files.append(f"[results.csv]({_link(result.folder, 'results.csv')})")
    before, after = _notes(result.folder)
    blocks = [
        f"### `{result.folder}`",
        "| command | runs | wall here | files |\n|---|---|---|---|\n"
        f"| `{_cell(result.command)}` | {_cell(result.runs)} | {_cell(result.wall)} | {', '.join(files)} |",
    ]
    if before:
        blocks.append(before)
    blocks.append(_read(table))
    for png in sorted(folder.glob("*.png")):
        blocks.append(f"![{png.name}]({_link(result.folder, png.name)})")
    if after:
        blocks.append(after)
    return blocks


def _title_and_runs(table: Path) -> str:
    """A table.md's first line and its 'N/M runs finished', for the one-line listing."""
    text = _read(table)
    title = text.split("\n", 1)[0].strip() if text else "(empty table.md)"
    runs = re.search(r"\b(\d+/\d+ runs finished)", text)
    return f"{title} {runs.group(1)}." if runs else title


def listed_folders() -> list[str]:
    return [r.folder for s in SECTIONS for r in s.results]


def unlisted_folders() -> list[str]:
    listed = set(listed_folders())
    return sorted(p.parent.name for p in RESULTS.glob("*/table.md") if p.parent.name not in listed)


def render() -> str:
    """The text of docs/results.md."""
    folders = listed_folders()
    repeated = sorted({f for f in folders if folders.count(f) > 1})
    if repeated:
        raise ReportError(f"experiments/report.py SECTIONS lists {', '.join(repeated)} more than once")
    unread = sorted(p.parent.name for p in RESULTS.glob("*/notes.md") if p.parent.name not in folders)
    if unread:
        raise ReportError(f"experiments/results/{unread[0]}/notes.md would not be read: "
                          "list its folder in a section of experiments/report.py SECTIONS")
    headings = [s.heading for s in SECTIONS] + [OTHER]
    if len(set(map(slug, headings))) != len(headings):
        raise ReportError("experiments/report.py SECTIONS: two headings give the same anchor")
    blocks = [
        "# Results",
        "<!-- Generated by `python -m experiments.report` from experiments/results/<name>/table.md and notes.md "
        "and the SECTIONS of experiments/report.py. Do not edit by hand: edit those, then rerun it. -->",
        "**Which defaults made a result.** On 2026-12-06 the defaults changed twice over: the result became the "
        "average of the last steps' weights (`average`), and the clean setting's CPU preset "
        "(`experiment=sc4d_mlp_cpu`) took the TimeNet rate 1e-3 / 5e-4 instead of 2e-4 / 1e-4 "
        "([the method](method.md#the-result-the-average-of-the-last-steps-weights-average-beyond-the-paper-the-default)). "
        "Every result but `rotation_curves_average` was made before; where its command does not name `no_average`, "
        "the command reproduces it with `--override average.decay=0` added (the `paper` variant has it already), and, "
        "in the clean setting at CPU scale, `--override deform.lr_init=0.0002 --override deform.lr_final=0.0001` "
        "unless it sets the rate itself. On 2026-12-07 the rescue of a frame that lost its target became a default "
        "(`loss.rescue_iou=0.1`, [the method](method.md#the-rescue-a-frame-that-lost-its-target-lossrescue_iou-beyond-the-paper-the-default)): "
        "results made before reproduce with `--override loss.rescue_iou=null` (the `paper` variant has it); it "
        "changes only the runs where it fires.",
        "\n".join(["- [Scale and protocol](runs.md#scale-and-protocol)"]
                  + [f"- [{h}](#{slug(h)})" for h in headings]),
    ]
    for section in SECTIONS:
        blocks.append(f"## {section.heading}")
        for result in section.results:
            blocks += _result_block(result)
    blocks.append(f"## {OTHER}")
    others = unlisted_folders()
    blocks.append("\n".join(
        f"- [`{name}`]({_link(name, 'table.md')}): {_title_and_runs(RESULTS / name / 'table.md')}" for name in others
    ) if others else "None.")
    return "\n\n".join(blocks) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    ap.add_argument("--check", action="store_true",
                    help="write nothing; exit 1 if docs/results.md differs from what would be written")
    args = ap.parse_args(argv)
    try:
        text = render()
    except ReportError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    current = OUT.read_text(encoding="utf-8") if OUT.is_file() else None
    if args.check:
        if current != text:
            state = "is missing" if current is None else "is out of date"
            print(f"docs/results.md {state}: run `python -m experiments.report` and commit the result", file=sys.stderr)
            return 1
        return 0
    if current == text:
        print("docs/results.md is up to date")
    else:
        OUT.parent.mkdir(parents=True, exist_ok=True)
        OUT.write_text(text, encoding="utf-8", newline="\n")
        print(f"wrote docs/results.md ({len(SECTIONS)} sections, {len(listed_folders())} tables, "
              f"{len(unlisted_folders())} other results listed)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
