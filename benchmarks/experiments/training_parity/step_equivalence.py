"""Step-level equivalence of `edgeasc train` with the official DCASE 2025 Task 1 baseline code (docs/training.md).

    python benchmarks/experiments/training_parity/step_equivalence.py \\
        --official-code CHECKOUT --official-python OFFICIAL_VENV/bin/python [--data TAU_LAYOUT_DIR]

Part 1, augmentation off: both train CP-Mobile (the baseline network, 61,148 parameters) from the same initial
weights on the same batches in the same order for a few epochs of a small clip set, and each optimiser step's
learning rate, loss and gradient norm, then the weights and BatchNorm buffers after the last step, are compared.
edgeasc runs its real loop (`edgeasc.train.train`, recording through its step hook and a forward hook); the
official side (official_side.py step) runs the checkout's own `PLModule` under a Lightning `Trainer`, fed
edgeasc's 32 kHz waveforms (so its Resample is the identity) in edgeasc's batch order.

Part 2, each augmentation on its own: the two draw their random numbers from different generators (edgeasc
seeded generators, the official code numpy's and torch's global ones), so no step can match; instead each
augmentation is applied to the same input many times by both implementations, and its output statistics
are compared within their sampling error (official_side.py augment).

Without --data, a `tiny` synthetic set (SYNTHETIC) is generated into the work folder. Exit 1 when a figure is
out of tolerance.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))

from edgeasc.config import resolve_train_config  # noqa: E402
from edgeasc.data.dataset import TAUDataset, load_waveforms  # noqa: E402
from edgeasc.models import create_model  # noqa: E402
from edgeasc.train.clips import batches_per_epoch
from edgeasc.train.loop import _generator, train  # noqa: E402

OFFICIAL_SIDE = Path(__file__).with_name("official_side.py")

TOLERANCE = {
    # one teacher-forced step (docs/training.md, "Step-level equivalence")
    "lr_abs": 1e-9,  # float64 formula on both sides
    "loss_rel": 1e-5,  # float32 forward on two torch builds, NCHW there, channels-last here
    "grad_norm_rel": 1e-2,  # the backward's rounding: the NCHW control alone moves it by up to a few 1e-3
    "weights_rel_l2": 5e-4,  # all weights and BatchNorm buffers after the step, relative to their norm
    "update_rel_l2": 2e-2,  # the step's change of them, relative to its size (AdamW divides by sqrt(v))
}
FREE_RUN_KEYS = ("lr_abs", "loss_rel", "grad_norm_rel", "weights_rel_l2")


def split25_rows(src: Path) -> list[str]:
    """The data rows (filename, scene_label) of `src`'s split25, header left out."""
    return (src / "split_setup" / "split25.csv").read_text().splitlines()[1:]


def subset_folder(src: Path, dst: Path, rows: list[str]) -> Path:
    """A TAU22-layout folder at `dst` whose every split (test included) is `rows` of `src`'s split25, its audio
    linked to `src`'s (tests/test_train.py uses it too)."""
    import shutil

    header = (src / "split_setup" / "split25.csv").read_text().splitlines()[0]
    kept = [header, *rows]
    if dst.exists():
        shutil.rmtree(dst)
    (dst / "split_setup").mkdir(parents=True)
    (dst / "evaluation_setup").mkdir()
    (dst / "audio").symlink_to((src / "audio").resolve())
    shutil.copy(src / "meta.csv", dst / "meta.csv")
    text = "\n".join(kept) + "\n"
    for p in (5, 10, 25, 50, 100):
        (dst / "split_setup" / f"split{p}.csv").write_text(text)
    for name in ("fold1_train", "fold1_evaluate", "fold1_test"):
        (dst / "evaluation_setup" / f"{name}.csv").write_text(text)
    return dst


def edgeasc_side(data: Path, work: Path, overrides: tuple[str, ...]) -> dict:
    """edgeasc's real loop (`edgeasc.train.train`) with two observers: a forward hook on the model it builds
    (the logits of each training forward) and its step hook (learning rate, gradient norm, weights)."""
    import edgeasc.models

    cfg = resolve_train_config(None, overrides)
    ds = TAUDataset(data)
    clips = ds.clips(cfg.data.train_split)
    labels = torch.tensor([c.label for c in clips])
    n, batch = len(clips), cfg.optim.batch_size
    steps = batches_per_epoch(n, batch)
    order = []
    for epoch in range(cfg.optim.epochs):  # train()'s batch order: its shuffle generator, rows sorted per batch
        perm = torch.randperm(n, generator=_generator(cfg.seed, epoch))
        order.append([torch.sort(perm[i * batch : (i + 1) * batch])[0].tolist() for i in range(steps)])
    flat = [rows for epoch in order for rows in epoch]
    record: dict[str, list] = {"lr": [], "loss": [], "grad_norm": [], "after": [], "optimizer": []}
    seen: dict[str, object] = {}
    build = edgeasc.models.create_model

    def create_and_observe(name, **kwargs):
        model = build(name, **kwargs)
        seen["initial"] = {k: v.detach().clone() for k, v in model.state_dict().items()}
        model.register_forward_hook(lambda m, i, o: seen.__setitem__("logits", o.detach()) if m.training else None)
        return model

    def step_hook(steps_done, total_steps, model, optimizer):
        record["lr"].append(optimizer.param_groups[0]["lr"])
        record["loss"].append(float(F.cross_entropy(seen["logits"], labels[flat[steps_done - 1]])))
        grads = [p.grad.detach().flatten() for p in model.parameters() if p.grad is not None]
        record["grad_norm"].append(float(torch.cat(grads).norm()))
        weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
        record["after"].append(weights)  # = the state before the next step, which the official side starts from
        record["optimizer"].append(copy.deepcopy(optimizer.state_dict()))
        if steps_done == total_steps:
            seen["final"] = weights
            seen["total_steps"] = total_steps
        return None

    edgeasc.models.create_model = create_and_observe  # train() imports it from edgeasc.models when it runs
    try:
        train(cfg, data, work, progress=False, step_hook=step_hook)
    finally:
        edgeasc.models.create_model = build
    waves = load_waveforms(ds.root, clips, cfg.frontend.sample_rate_hz, cfg.frontend.clip_samples, cfg.data.cache_dir)
    return {"data": Path(data), "clips": clips, "record": record, "state": seen["final"], "initial": seen["initial"],
            "order": order, "labels": labels,
            "waves": torch.from_numpy(np.asarray(waves, dtype=np.float32)), "cfg": cfg,
            "total_steps": seen["total_steps"]}


def official_side(python: str, code: Path, work: Path, mine: dict, seed: int) -> dict:
    cfg = mine["cfg"]
    job = {
        "seed": seed,
        "waves": mine["waves"],
        "labels": mine["labels"],
        "batches": mine["order"],
        "initial_state": mine["initial"],
        # teacher forcing: the state edgeasc had before each step (weights, AdamW moments)
        "before_state": [mine["initial"]] + mine["record"]["after"][:-1],
        "before_optimizer": [None] + mine["record"]["optimizer"][:-1],
        "official_args": {
            "n_epochs": cfg.optim.epochs, "batch_size": cfg.optim.batch_size, "lr": cfg.optim.lr,
            "weight_decay": cfg.optim.weight_decay, "warmup_steps": cfg.optim.warmup_steps,
            "orig_sample_rate": cfg.frontend.sample_rate_hz,  # the waveforms are already at 32 kHz
            "freqm": cfg.augment.freq_mask_bins, "mixstyle_p": cfg.augment.mixstyle_p,
            "mixstyle_alpha": cfg.augment.mixstyle_alpha, "roll_sec": 0.0,
        },
    }
    job_path, out = work / "job.pt", work / "official.pt"
    torch.save(job, job_path)
    subprocess.run([python, str(OFFICIAL_SIDE), "step", "--code", str(code), "--job", str(job_path),
                    "--out", str(out)], check=True)
    return torch.load(out, weights_only=False)


def rel(a: float, b: float) -> float:
    return abs(a - b) / max(abs(b), 1e-12)


def compare_steps(mine: dict, theirs: dict) -> dict:
    a, b = mine["record"], theirs["record"]
    rows_match = b["rows"] == [r for epoch in mine["order"] for r in epoch]
    steps = []
    for k in range(max(len(a["lr"]), len(b["lr"]))):
        steps.append({
            "step": k, "lr_edgeasc": a["lr"][k], "lr_official": b["lr"][k],
            "loss_edgeasc": a["loss"][k], "loss_official": b["loss"][k],
            "grad_norm_edgeasc": a["grad_norm"][k], "grad_norm_official": b["grad_norm"][k],
        })
    final = state_difference(mine["state"], theirs["state"])
    worst = {
        "lr_abs": max(abs(s["lr_edgeasc"] - s["lr_official"]) for s in steps),
        "loss_rel": max(rel(s["loss_edgeasc"], s["loss_official"]) for s in steps),
        "grad_norm_rel": max(rel(s["grad_norm_edgeasc"], s["grad_norm_official"]) for s in steps),
        "weights_rel_l2": final["weights_rel_l2"],
    }
    integer_buffers_equal = final["integer_buffers_equal"]
    passed = (rows_match and len(a["lr"]) == len(b["lr"]) and integer_buffers_equal
              and mine["total_steps"] == theirs["estimated_stepping_batches"]
              and all(worst[k] <= TOLERANCE[k] for k in worst))
    return {"steps": steps, "worst": worst, "tolerance": {k: TOLERANCE[k] for k in FREE_RUN_KEYS},
            "batches_match": rows_match, "total_steps": {"edgeasc": mine["total_steps"],
                                                          "official": theirs["estimated_stepping_batches"]},
            "integer_buffers_equal": integer_buffers_equal, "passed": passed}


def state_difference(a: dict, b: dict, before: dict | None = None) -> dict:
    """Differences of two model states: `weights_rel_l2` = ||a - b|| / ||b|| over all float tensors together;
    `update_rel_l2` = ||(a - before) - (b - before)|| / ||b - before|| (the step's update; None without
    `before`); `integer_buffers_equal` (num_batches_tracked). A per-tensor ratio would be meaningless for the
    BatchNorm biases, which start at zero."""
    diff = ref = upd = 0.0
    equal = True
    for name, want in b.items():
        got = a[name]
        if not want.dtype.is_floating_point:
            equal = equal and bool(torch.equal(got, want))
            continue
        diff += float((got.double() - want.double()).square().sum())
        ref += float(want.double().square().sum())
        if before is not None:
            upd += float((want.double() - before[name].double()).square().sum())
    return {"weights_rel_l2": math.sqrt(diff / max(ref, 1e-300)),
            "update_rel_l2": math.sqrt(diff / upd) if before is not None and upd > 0 else None,
            "integer_buffers_equal": equal}


def nchw_grad_norm(before: dict, waves: torch.Tensor, rows: list[int], labels: torch.Tensor, cfg) -> float:
    """The gradient norm of one step of edgeasc's model from `before`, recomputed with NCHW input instead of the
    loop's channels-last: the float-rounding floor of a gradient norm on this network (the control)."""
    from edgeasc.features import LogMel

    model = create_model(cfg.model.name, **cfg.model.kwargs)
    model.load_state_dict(before)
    model.train()
    x = LogMel(cfg.frontend)(waves[rows])
    F.cross_entropy(model(x), labels[rows]).backward()
    return float(torch.cat([p.grad.flatten() for p in model.parameters()]).norm())


def compare_forced(mine: dict, theirs: dict) -> dict:
    """Teacher forcing: step k of each from edgeasc's state before step k; one step's differences, per step."""
    a, b = mine["record"], theirs["forced"]
    befores = [mine["initial"]] + a["after"][:-1]
    flat = [rows for epoch in mine["order"] for rows in epoch]
    steps = []
    for k in range(len(a["lr"])):
        d = state_difference(a["after"][k], b["after"][k], befores[k])
        control = nchw_grad_norm(befores[k], mine["waves"], flat[k], mine["labels"], mine["cfg"])
        steps.append({"step": k, "lr_abs": abs(a["lr"][k] - b["lr"][k]), "loss_rel": rel(a["loss"][k], b["loss"][k]),
                      "grad_norm_rel": rel(a["grad_norm"][k], b["grad_norm"][k]),
                      "grad_norm_rel_control": rel(a["grad_norm"][k], control), **d})
    worst = {key: max(s[key] for s in steps if s[key] is not None) for key in TOLERANCE}
    worst["grad_norm_rel_control"] = max(s["grad_norm_rel_control"] for s in steps)
    passed = (len(a["lr"]) == len(b["lr"]) and all(s["integer_buffers_equal"] for s in steps)
              and all(worst[k] <= TOLERANCE[k] for k in TOLERANCE))
    return {"steps": steps, "worst": worst, "tolerance": TOLERANCE, "passed": passed}


Z_LIMIT = 4.0
"""Part 2: a statistic's two means may differ by at most this many standard errors of their difference."""

DRAWS = {"roll": 20_000, "mask": 2_000, "mixstyle": 2_000}


def z_score(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double(), b.double()
    se = math.sqrt(float(a.var()) / len(a) + float(b.var()) / len(b))
    diff = float(a.mean() - b.mean())
    return 0.0 if se == 0 and diff == 0 else diff / se if se else math.inf


def augmentation_statistics(python: str, code: Path, work: Path, mine: dict, seed: int) -> dict:
    """Each augmentation on the same inputs, many draws on both sides; z-scores of per-draw statistics."""
    from edgeasc.config import AugmentConfig
    from edgeasc.data.augment import freq_mixstyle, mask_along, roll_waveform
    from edgeasc.features import LogMel

    sys.path.insert(0, str(OFFICIAL_SIDE.parent))
    from official_side import masked_rows

    base = AugmentConfig()  # edgeasc's values of the official code's settings (recipes/baseline_tau22.toml)
    roll_edgeasc, rate = 3200, 32_000  # 0.1 s at 32 kHz; the official code rolls 0.1 s of its 44.1 kHz audio
    roll_official, official_rate = 4410, 44_100
    waves = mine["waves"][:8]
    mel = LogMel(mine["cfg"].frontend)
    with torch.no_grad():
        power, logmel = mel.power_mel(waves), mel(waves)
    job = {"seed": seed, "draws": DRAWS, "roll_samples": float(official_rate * 0.1), "roll_clip_samples": official_rate,
           "freqm": base.freq_mask_bins, "power_mel": power.unsqueeze(1), "logmel": logmel,
           "mixstyle_p": base.mixstyle_p, "mixstyle_alpha": base.mixstyle_alpha,
           "files": [str(mine["data"] / c.filename) for c in mine["clips"][:8]]}
    job_path, out = work / "augment_job.pt", work / "augment_official.pt"
    torch.save(job, job_path)
    subprocess.run([python, str(OFFICIAL_SIDE), "augment", "--code", str(code), "--job", str(job_path),
                    "--out", str(out)], check=True)
    theirs = torch.load(out, weights_only=False)

    g = torch.Generator().manual_seed(seed)
    impulse = torch.zeros(1, rate)
    impulse[0, 0] = 1.0
    shifts = []
    for _ in range(DRAWS["roll"]):
        at = int(roll_waveform(impulse, roll_edgeasc, g)[0].argmax())
        shifts.append(at if at <= rate // 2 else at - rate)
    mine_s = torch.tensor(shifts, dtype=torch.float64) / rate
    theirs_s = theirs["roll_shifts"].double() / official_rate
    masks = torch.stack([masked_rows(mask_along(power, 1, base.freq_mask_bins, 1, g)) for _ in range(DRAWS["mask"])])
    mix = []
    for _ in range(DRAWS["mixstyle"]):
        o = freq_mixstyle(logmel, base.mixstyle_p, base.mixstyle_alpha, g)
        mix.append([float(not torch.equal(o, logmel)), float(o.mean()), float(o.std()),
                    float((o - logmel).abs().mean())])
    mix_mine, mix_theirs = torch.tensor(mix), theirs["mixstyle"]

    def masks_stats(m):
        width = m[..., 1].flatten().double()
        first = m[..., 0].flatten().double()
        return {"width": width, "empty": (width == 0).double(), "first": first[width > 0]}

    mm, mt = masks_stats(masks), masks_stats(theirs["masks"])
    applied_m, applied_t = mix_mine[:, 0] > 0, mix_theirs[:, 0] > 0
    rows = {
        "roll: shift (s)": (mine_s, theirs_s),
        "roll: shift squared (s^2)": (mine_s.square(), theirs_s.square()),
        "roll: |shift| at the limit": ((mine_s.abs() * rate == roll_edgeasc).double(),
                                       (theirs_s.abs() * official_rate == roll_official).double()),
        "frequency mask: width (bins)": (mm["width"], mt["width"]),
        "frequency mask: no bin masked": (mm["empty"], mt["empty"]),
        "frequency mask: first bin": (mm["first"], mt["first"]),
        "Freq-MixStyle: applied": (mix_mine[:, 0], mix_theirs[:, 0]),
        "Freq-MixStyle: output mean": (mix_mine[applied_m, 1], mix_theirs[applied_t, 1]),
        "Freq-MixStyle: output std": (mix_mine[applied_m, 2], mix_theirs[applied_t, 2]),
        "Freq-MixStyle: mean |change|": (mix_mine[applied_m, 3], mix_theirs[applied_t, 3]),
    }
    table = {name: {"edgeasc": float(a.double().mean()), "official": float(b.double().mean()), "z": z_score(a, b),
                    "draws": [len(a), len(b)]} for name, (a, b) in rows.items()}
    # the data path, not an augmentation: edgeasc's cached 32 kHz waveforms (scipy polyphase resampling)
    # through edgeasc's LogMel, against the official per-batch torchaudio Resample + MelSpectrogram
    official_logmel = theirs["logmel_of_files"]
    diff = (logmel - official_logmel).abs()
    n_mels = diff.shape[2]
    frontend = {"mean_abs_log_difference": float(diff.mean()),
                "mean_abs_log_difference_lowest_half": float(diff[:, :, : n_mels // 2].mean()),
                "mean_abs_log_difference_top_16_bins": float(diff[:, :, -16:].mean()),
                "log_mel_std": float(official_logmel.std())}
    return {"statistics": table, "z_limit": Z_LIMIT, "frontend": frontend,
            "passed": all(abs(r["z"]) <= Z_LIMIT for r in table.values())}


def print_steps(result: dict) -> None:
    print(f"{'step':>4} {'lr edgeasc':>12} {'lr official':>12} {'loss edgeasc':>13} {'loss official':>13} "
          f"{'|g| edgeasc':>12} {'|g| official':>12}")
    for s in result["steps"]:
        print(f"{s['step']:>4} {s['lr_edgeasc']:>12.6g} {s['lr_official']:>12.6g} {s['loss_edgeasc']:>13.6f} "
              f"{s['loss_official']:>13.6f} {s['grad_norm_edgeasc']:>12.6f} {s['grad_norm_official']:>12.6f}")
    w = result["worst"]
    print(f"worst: lr {w['lr_abs']:.2e} abs, loss {w['loss_rel']:.2e} rel, grad norm {w['grad_norm_rel']:.2e} rel, "
          f"weights after the last step {w['weights_rel_l2']:.2e} rel L2; batches match: {result['batches_match']}; "
          f"schedule length {result['total_steps']} (informational: two free runs drift apart by float rounding "
          f"that AdamW amplifies; compare the control below)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--official-code", type=Path, required=True, help="checkout of CPJKU/dcase2025_task1_baseline")
    parser.add_argument("--official-python", required=True, help="the Python of the official code's virtualenv")
    parser.add_argument("--data", type=Path, help="TAU22-layout folder (default: generate `tiny` synthetic data)")
    parser.add_argument("--work", type=Path, default=ROOT / "benchmarks" / ".work" / "step_equivalence")
    parser.add_argument("--clips", type=int, default=48)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--warmup-steps", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", action="append", default=[], help="an extra edgeasc override (section.key=value)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "experiments" / "results" / "step_equivalence.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    data = args.data
    if data is None:
        from edgeasc.synth.generate import generate_dataset

        data = work / "tiny"
        if not (data / "meta.csv").is_file():
            generate_dataset(data, scale="tiny", seed=0, progress=False)
    rows = split25_rows(data.resolve())
    if len(rows) < args.clips:
        raise SystemExit(f"{data} has only {len(rows)} split25 clips")
    subset = subset_folder(data.resolve(), work / "subset", rows[: args.clips])
    overrides = (
        "model.name=cpmobile_baseline", f"seed={args.seed}", f"optim.epochs={args.epochs}",
        f"optim.batch_size={args.batch_size}", f"optim.warmup_steps={args.warmup_steps}",
        "optim.debias_bn=false", "augment.roll_max_samples=0", "augment.freq_mask_bins=0",
        "augment.mixstyle_p=0", "data.val_split=split25", "eval_every=0", *args.set,
        f"data.cache_dir={str(work / 'cache')!r}",
    )
    run = work / "edgeasc_run"
    if run.exists():
        import shutil

        shutil.rmtree(run)
    t0 = time.perf_counter()
    mine = edgeasc_side(subset, run, overrides)
    theirs = official_side(args.official_python, args.official_code.resolve(), work, mine, args.seed)
    result = {"data": str(data), "clips": args.clips, "augmentation_off": compare_steps(mine, theirs),
              "versions": {"edgeasc_torch": torch.__version__, "official": theirs["versions"]}}
    print("free run (each side its own trajectory):")
    print_steps(result["augmentation_off"])
    # the control of the free run: edgeasc against itself with NCHW instead of channels-last input
    control_run = work / "edgeasc_run_nchw"
    if control_run.exists():
        import shutil

        shutil.rmtree(control_run)
    nchw = edgeasc_side(subset, control_run, overrides + ("optim.channels_last=false",))
    drift = {
        "loss_rel": max(rel(x, y) for x, y in zip(nchw["record"]["loss"], mine["record"]["loss"])),
        "grad_norm_rel": max(rel(x, y) for x, y in zip(nchw["record"]["grad_norm"], mine["record"]["grad_norm"])),
        "weights_rel_l2": state_difference(nchw["state"], mine["state"])["weights_rel_l2"],
    }
    result["free_run_control_nchw_vs_channels_last"] = drift
    print(f"control, edgeasc NCHW vs edgeasc channels-last, free run: worst loss {drift['loss_rel']:.2e} rel, "
          f"grad norm {drift['grad_norm_rel']:.2e} rel, weights after the last step "
          f"{drift['weights_rel_l2']:.2e} rel L2")
    forced = result["teacher_forced"] = compare_forced(mine, theirs)
    print("teacher forced (every step from edgeasc's state before it):")
    print(f"{'step':>4} {'lr abs':>9} {'loss rel':>9} {'|g| rel':>9} {'|g| control':>12} {'weights rel':>12} "
          f"{'update rel':>11}")
    for s in forced["steps"]:
        update = "-" if s["update_rel_l2"] is None else f"{s['update_rel_l2']:.1e}"
        print(f"{s['step']:>4} {s['lr_abs']:>9.1e} {s['loss_rel']:>9.1e} {s['grad_norm_rel']:>9.1e} "
              f"{s['grad_norm_rel_control']:>12.1e} {s['weights_rel_l2']:>12.1e} {update:>11}")
    print(f"teacher forced: {'PASS' if forced['passed'] else 'FAIL'} (tolerances {TOLERANCE})")
    aug = result["augmentation_statistics"] = augmentation_statistics(
        args.official_python, args.official_code.resolve(), work, mine, args.seed)
    print("each augmentation alone, many draws on the same input:")
    print(f"{'statistic':<32} {'edgeasc':>11} {'official':>11} {'z':>6}")
    for name, r in aug["statistics"].items():
        print(f"{name:<32} {r['edgeasc']:>11.5g} {r['official']:>11.5g} {r['z']:>6.2f}")
    print(f"augmentation statistics: {'PASS' if aug['passed'] else 'FAIL'} (|z| <= {Z_LIMIT})")
    fr = aug["frontend"]
    print(f"data path (44.1 kHz files -> log-mel; edgeasc's resampling at cache time vs torchaudio's per batch): "
          f"mean |difference| {fr['mean_abs_log_difference']:.4f} (lower half of the bins "
          f"{fr['mean_abs_log_difference_lowest_half']:.4f}, top 16 bins "
          f"{fr['mean_abs_log_difference_top_16_bins']:.4f}; "
          f"log-mel std {fr['log_mel_std']:.2f})")
    result["seconds"] = time.perf_counter() - t0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(args.out.name + ".tmp")
    tmp.write_text(json.dumps(result, indent=1))
    tmp.replace(args.out)
    print(f"wrote {args.out}")
    sys.exit(0 if forced["passed"] and aug["passed"] else 1)


if __name__ == "__main__":
    main()
