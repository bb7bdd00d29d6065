"""Does the int8 export reach the 99% agreement target on a confident student? (issue 3, docs/export.md)

The demo student misses the target on near-ties: it is about 65% accurate on the `small` synthetic data, and
its misses all have small torch top-2 margins. This trains the same student recipe on a synthetic dataset of
the same size made easier (`EASY`: tighter classes, weaker devices, louder foreground), exports it with
`export_checkpoint` exactly as `edgeasc export --int8` does, and prints the int8 parity next to the torch
margin distribution, so the two datasets can be compared:

    .venv/bin/python benchmarks/experiments/int8_easy_data.py [--out runs/int8_easy] [--epochs 16] [--seed 0] [--qat]
    .venv/bin/python benchmarks/experiments/int8_easy_data.py --data demo_out/data --out runs/int8_default  # default data

`--qat` exports after the demo's weight quantisation-aware fine-tuning (`recipes/demo_qat.toml`, 3 epochs from
the trained student), as `make demo` ships it. Writes OUT/int8_easy_data[_qat].json. Runs are resumable
(training resumes, a finished export is reused).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from edgeasc.artifacts import write_json_atomic  # noqa: E402
from edgeasc.bench.machine import describe_machine  # noqa: E402
from edgeasc.synth.presets import Difficulty  # noqa: E402

EASY = Difficulty(overlap=0.0, spread=0.1, city_shift=0.1, snr_offset_db=6.0, device_strength=0.3)
RECIPE = "recipes/demo_student.toml"
QAT_RECIPE = "recipes/demo_qat.toml"


def margins(model_path: Path, data: Path, eval_clips: int, seed: int) -> np.ndarray:
    """Torch top-2 logit margins on the export's evaluation subset (the clips its parity report uses)."""
    from edgeasc.checkpoint import frontend_of, load_model
    from edgeasc.data.dataset import TAUDataset, load_waveforms
    from edgeasc.deploy.parity import _eval_subset
    from edgeasc.evaluate import predict_logits

    model, ckpt = load_model(model_path)
    fe = frontend_of(ckpt)
    ds = TAUDataset(data)
    clips = _eval_subset(ds.clips("test"), eval_clips, seed)
    waves = load_waveforms(ds.root, clips, fe.sample_rate_hz, fe.clip_samples)
    top2 = np.sort(predict_logits(model, waves, fe), axis=1)[:, -2:]
    return top2[:, 1] - top2[:, 0]


def main(argv: list[str] | None = None) -> int:
    from edgeasc.config import resolve_train_config
    from edgeasc.deploy.export import export_checkpoint
    from edgeasc.synth.generate import generate_dataset
    from edgeasc.train.loop import train

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="runs/int8_easy")
    p.add_argument("--data", help="Use this dataset instead of synthesising the easy one into OUT/data.")
    p.add_argument("--epochs", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--eval-clips", type=int, default=900)
    p.add_argument("--qat", action="store_true", help=f"Fine-tune with {QAT_RECIPE} before the export.")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    out = Path(args.out)
    data = Path(args.data) if args.data else out / "data"
    if args.data and not (data / "meta.csv").is_file():
        raise SystemExit(f"--data {data}: no dataset there (no meta.csv)")
    if not (data / "meta.csv").is_file():
        generate_dataset(data, scale="small", seed=0, difficulty=EASY, progress=False)
    cfg = resolve_train_config(ROOT / RECIPE, (f"seed={args.seed}", f"optim.epochs={args.epochs}"))
    model_path = train(cfg, data, out / "student", resume=True, progress=False).model_path
    tag = ""
    if args.qat:
        tag = "_qat"
        qcfg = resolve_train_config(ROOT / QAT_RECIPE,
                                    (f"seed={args.seed}", f"model.init_checkpoint={str(model_path)!r}"))
        model_path = train(qcfg, data, out / "student_qat", resume=True, progress=False).model_path
    report_path = out / f"export{tag}" / "export_report.json"
    if report_path.is_file():
        report = json.loads(report_path.read_text())
    else:
        report = export_checkpoint(model_path, data, report_path.parent, int8=True, eval_clips=args.eval_clips,
                                   seed=args.seed).report
    m = margins(model_path, data, args.eval_clips, args.seed)
    int8 = report["results"]["tflite_int8"]
    result = {
        "benchmark": "int8_easy_data", "data": str(data), "difficulty": None if args.data else vars(EASY),
        "recipe": RECIPE, "epochs": args.epochs, "qat_recipe": QAT_RECIPE if args.qat else None, "seed": args.seed,
        "eval_clips": len(m),
        "torch_macro": 100 * report["results"]["torch"]["macro_accuracy"],
        "int8_macro": 100 * int8["macro_accuracy"], "int8_agreement": 100 * int8["agreement"],
        "int8_max_abs_logit_error": int8["max_abs_logit_error"],
        "disagreement_max_margin": int8["disagreement_max_margin"],
        "margin_below_pct": {str(t): float(100 * np.mean(m < t)) for t in (0.05, 0.1, 0.2, 0.5)},
        "machine": describe_machine(),
    }
    write_json_atomic(out / f"int8_easy_data{tag}.json", result)
    print(f"{data}: torch {result['torch_macro']:.2f}%, int8 {result['int8_macro']:.2f}%, agreement "
          f"{result['int8_agreement']:.2f}% on {len(m)} clips (misses have torch margin <= "
          f"{result['disagreement_max_margin']:.3f}); torch top-2 margin below 0.05/0.1/0.2/0.5: "
          + " / ".join(f"{v:.1f}%" for v in result["margin_below_pct"].values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
