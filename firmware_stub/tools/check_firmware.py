"""`make -C firmware_stub test [MODEL=FILE] [DATA=DIR]`: the firmware of a full-int8 .tflite, built for the host
and the emulated Cortex-M4, checked bit for bit against TFLite Micro.

The model is `--model` when it exists (by default `demo_out/pipeline/export/general/model_int8.tflite` from `make demo`);
otherwise a seeded SSCP-Mobile S1 student with randomized BatchNorm statistics is exported, calibrated on a
synthesized `tiny` dataset. Inputs: the log-mel of the evaluation split of `--data` when given (else of
`demo_out/data` for the demo's model, else of that tiny dataset); for a model given without a dataset,
seeded random int8 inputs (the output says which, and the C frontend check is skipped then).

Exit codes: 0 every check passed; 1 a check failed; 2 bad input (a model the firmware does not support, a
dataset whose log-mel does not fit the model's input, a missing file): one line on stderr.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
DEMO_MODEL = ROOT / "demo_out/pipeline/export/general/model_int8.tflite"
DEMO_DATA = ROOT / "demo_out/data"

from edgeasc import firmware  # noqa: E402
from edgeasc.artifacts import write_json_atomic  # noqa: E402
from edgeasc.errors import EdgeAscError  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    try:
        return _check(argv)
    except EdgeAscError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _check(argv: list[str] | None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=DEMO_MODEL)
    parser.add_argument("--data", type=Path, help="TAU22-layout dataset for the features")
    parser.add_argument("--build", type=Path, default=ROOT / "firmware_stub/build")
    parser.add_argument("--inputs", type=int, default=200, help="evaluation clips checked against TFLite Micro")
    parser.add_argument("--targets", default="cortex-m4", help="comma-separated: cortex-m4,cortex-m7 ('' for none)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random inputs (no dataset)")
    parser.add_argument("--weights", choices=("int16", "int8"), default="int16",
                        help="convolution weight storage (edgeasc firmware --weights)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    build = args.build.resolve()
    model, data = args.model.resolve(), args.data
    if not model.is_file():
        if model != DEMO_MODEL:
            raise EdgeAscError(f"--model {args.model}: no such file")
        from edgeasc.synth.generate import generate_dataset

        data = data or build / "tiny_data"
        if not (data / "meta.csv").is_file():
            logging.info("synthesizing a tiny dataset in %s", data)
            generate_dataset(data, scale="tiny", seed=0, progress=False)
        model = build / "demo_model/export/model_int8.tflite"
        if not model.is_file():
            logging.info("%s not found: exporting a seeded sscp_mobile_s1 with randomized BatchNorm", args.model)
            model = firmware.export_demo_model(build / "demo_model", data, cache_dir=build / "cache")
    elif data is None and model == DEMO_MODEL and (DEMO_DATA / "meta.csv").is_file():
        data = DEMO_DATA  # the demo's model on the demo's data
    if data is not None and not (Path(data) / "meta.csv").is_file():
        raise EdgeAscError(f"--data {data}: not a TAU22-layout dataset (no meta.csv)")
    report = firmware.check_firmware(model, data, build / "check", n_inputs=args.inputs,
                                     targets=tuple(t for t in args.targets.split(",") if t), cache_dir=build / "cache",
                                     seed=args.seed, weights=args.weights)
    write_json_atomic(build / "check_report.json", report)
    print(firmware.format_check(report))
    print(f"report: {build / 'check_report.json'}")
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
