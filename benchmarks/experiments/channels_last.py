"""Training and inference throughput with NCHW vs channels-last (NHWC) log-mel input, same run, same models.

`edgeasc train` (optim.channels_last, default on) and `edgeasc.evaluate.predict_logits` hand the network its
log-mel batch channels-last; this measures what that buys on the machine it runs on. For each model: one
training step (frontend, forward, cross-entropy, backward, AdamW) on a batch of random 1-s waveforms, and
inference on a batch, each repeated; prints the median clips/s per layout and the NHWC / NCHW ratio.

    .venv/bin/python benchmarks/experiments/channels_last.py
    .venv/bin/python benchmarks/experiments/channels_last.py --models sscp_mobile_b32 --threads 1 --repeats 9
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from edgeasc.config import FrontendConfig  # noqa: E402
from edgeasc.features import LogMel  # noqa: E402
from edgeasc.models import create_model  # noqa: E402


def _median_rate(fn, clips: int, repeats: int) -> float:
    fn()  # warm-up (oneDNN primitive creation)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return clips / statistics.median(times)


def measure(name: str, batch: int, repeats: int) -> dict[str, float]:
    fe = LogMel(FrontendConfig())
    x = torch.randn(batch, FrontendConfig().clip_samples, generator=torch.Generator().manual_seed(0))
    y = torch.randint(0, 10, (batch,), generator=torch.Generator().manual_seed(1))
    out = {}
    for layout, fmt in (("nchw", torch.contiguous_format), ("nhwc", torch.channels_last)):
        torch.manual_seed(0)
        model = create_model(name)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)

        def step(model=model, opt=opt, fmt=fmt) -> None:
            with torch.no_grad():
                feats = fe(x).contiguous(memory_format=fmt)
            loss = torch.nn.functional.cross_entropy(model(feats), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        def infer(model=model, fmt=fmt) -> None:
            with torch.no_grad():
                model(fe(x).contiguous(memory_format=fmt))

        model.train()
        out[f"train_{layout}"] = _median_rate(step, batch, repeats)
        model.eval()
        out[f"infer_{layout}"] = _median_rate(infer, batch, repeats)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", default=["sscp_mobile_b32", "sscp_mobile_b48", "cpmobile_b48"])
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"batch {args.batch}, median of {args.repeats}, {torch.get_num_threads()} torch thread(s); clips/s")
    print(f"{'model':<18}{'train NCHW':>11}{'NHWC':>8}{'ratio':>7}{'infer NCHW':>12}{'NHWC':>8}{'ratio':>7}")
    for name in args.models:
        r = measure(name, args.batch, args.repeats)
        print(f"{name:<18}{r['train_nchw']:>11.1f}{r['train_nhwc']:>8.1f}{r['train_nhwc'] / r['train_nchw']:>7.2f}"
              f"{r['infer_nchw']:>12.1f}{r['infer_nhwc']:>8.1f}{r['infer_nhwc'] / r['infer_nchw']:>7.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
