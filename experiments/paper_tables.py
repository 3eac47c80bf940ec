"""Tables 1 and 4 of the paper: {MLP, Direct} x {with the LPIPS phase, without} x {Pixel, Ours},
at shift 0.5 (Table 1) or 0 (Table 4), on every preset of the synthetic benchmark (our stand-in for
SC4D's clean setting) and several directions. Columns as in the paper: LPIPS, PSNR, SSIM on the
training view and NV-LPIPS, NV-PSNR, NV-SSIM on novel views, ours beside the paper's.

    python -m experiments.table1 --jobs 2      # shift 0.5
    python -m experiments.table4 --jobs 2      # shift 0
"""

from __future__ import annotations

from experiments.harness import LOSS_NAMES, SCALES, common_args, finish, fmt, grid, prepare, summarize

# The paper's numbers (SC4D data, its Table 1 at shift 0.5 and Table 4 at shift 0), in the column
# order of COLUMNS.
PAPER = {
    1: {
        ("mlp", "lpips", "pixel"): (0.0852, 23.6051, 0.9409, 0.1153, 18.3244, 0.9304),
        ("mlp", "lpips", "spectral"): (0.0489, 27.1453, 0.9546, 0.0948, 19.1977, 0.9331),
        ("mlp", "pixel", "pixel"): (0.1806, 17.6748, 0.9108, 0.2023, 14.0424, 0.9107),
        ("mlp", "pixel", "spectral"): (0.0516, 26.6992, 0.9507, 0.1331, 17.3960, 0.9159),
        ("direct", "lpips", "pixel"): (0.3133, 11.6619, 0.8297, 0.2443, 12.3815, 0.8727),
        ("direct", "lpips", "spectral"): (0.2000, 15.4626, 0.8701, 0.2501, 12.7916, 0.8675),
        ("direct", "pixel", "pixel"): (0.2289, 16.1268, 0.8562, 0.2774, 12.0662, 0.8491),
        ("direct", "pixel", "spectral"): (0.1868, 17.8558, 0.8789, 0.2640, 12.5106, 0.8598),
    },
    4: {
        ("mlp", "lpips", "pixel"): (0.0403, 27.3404, 0.9591, 0.0914, 19.3308, 0.9344),
        ("mlp", "lpips", "spectral"): (0.0325, 29.3938, 0.9636, 0.0870, 19.3311, 0.9312),
        ("mlp", "pixel", "pixel"): (0.0905, 23.7205, 0.9418, 0.1490, 16.2879, 0.9182),
        ("mlp", "pixel", "spectral"): (0.0472, 28.3403, 0.9594, 0.1255, 17.9528, 0.9214),
        ("direct", "lpips", "pixel"): (0.1271, 18.1281, 0.9127, 0.0965, 18.8798, 0.9343),
        ("direct", "lpips", "spectral"): (0.1046, 20.1747, 0.9255, 0.0998, 18.7325, 0.9319),
        ("direct", "pixel", "pixel"): (0.0959, 22.0955, 0.9389, 0.0978, 19.0892, 0.9331),
        ("direct", "pixel", "spectral"): (0.0940, 22.2446, 0.9406, 0.0944, 19.3347, 0.9355),
    },
}
SHIFT = {1: 0.5, 4: 0.0}
COLUMNS = [("train_lpips", "LPIPS"), ("train_psnr", "PSNR"), ("train_ssim", "SSIM"),
           ("novel_lpips", "NV-LPIPS"), ("novel_psnr", "NV-PSNR"), ("novel_ssim", "NV-SSIM")]
SETTING = {"mlp": "clean", "direct": "clean_direct"}  # harness.SCALES


def variants(scale: str) -> dict[str, list[str]]:
    out = {}
    for deform in ("mlp", "direct"):
        for spatial in ("lpips", "pixel"):
            for loss in ("pixel", "spectral"):
                out[f"{deform}-{spatial}-{loss}"] = [*SCALES[SETTING[deform]][scale], f"loss={loss}", f"loss.spatial={spatial}"]
    return out


def table(number: int):
    def render(rows: list[dict]) -> str:
        lines = ["| deformation | spatial phase | loss | " + " | ".join(c for _, c in COLUMNS) + " |",
                 "|---|---|---|" + "---|" * len(COLUMNS),
                 ]
        stats = {metric: summarize(rows, ["variant"], metric) for metric, _ in COLUMNS}
        for variant in dict.fromkeys(r["variant"] for r in rows):
            deform, spatial, loss = variant.split("-")
            paper = PAPER[number][(deform, spatial, loss)]
            cells = []
            for (metric, _), ref in zip(COLUMNS, paper):
                got = stats[metric].get((variant,))
                digits = 2 if "psnr" in metric else 4
                cells.append(f"{fmt(got['mean'], digits) if got else '-'} ({fmt(ref, digits)})")
            lines.append(f"| {deform} | {'w. LPIPS' if spatial == 'lpips' else 'w/o LPIPS'} | "
                         f"{LOSS_NAMES[loss]} | " + " | ".join(cells) + " |")
        return "\n".join(lines) + "\n\nEach cell: ours (the paper's, on SC4D data at 10k steps and 512 px).\n"
    return render


def main(number: int, argv=None) -> int:
    ap = common_args(f"Table {number} of the paper (shift {SHIFT[number]}).")
    args = ap.parse_args(argv)
    extra = prepare(args)
    chosen = variants(args.scale)
    if args.quick:
        chosen = {k: v for k, v in chosen.items() if k.startswith("mlp-pixel")}
        extra += ["eval.lpips=alex"]
    todo = grid([], chosen, args.presets, args.seeds, [SHIFT[number]], extra)
    caption = f"Table {number} (shift {SHIFT[number]}): mean over creatures and directions."
    return finish(f"table{number}", args, todo, table(number), caption)
