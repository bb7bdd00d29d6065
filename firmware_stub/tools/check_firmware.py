"""`make -C firmware_stub test`: the firmware of a demo-sized model, built for the host and the emulated
Cortex-M4, checked bit for bit against TFLite Micro on real features of the evaluation split.

The model is `--model` when it exists (by default `demo_out/pipeline/export/general/model_int8.tflite` from `make demo`);
otherwise a seeded SSCP-Mobile S1 student with randomized BatchNorm statistics is exported, calibrated on a
synthesized `tiny` dataset. Features come from `--data` when given, else from `demo_out/data` when the model
is the demo's, else from that tiny dataset. Exit code 0 when every check passes, 1 otherwise.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from edgeasc import firmware  # noqa: E402
from edgeasc.artifacts import write_json_atomic  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=ROOT / "demo_out/pipeline/export/general/model_int8.tflite")
    parser.add_argument("--data", type=Path, help="TAU22-layout dataset for the features")
    parser.add_argument("--build", type=Path, default=ROOT / "firmware_stub/build")
    parser.add_argument("--inputs", type=int, default=200, help="evaluation clips checked against TFLite Micro")
    parser.add_argument("--targets", default="cortex-m4", help="comma-separated: cortex-m4,cortex-m7")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    build = args.build.resolve()
    model, data = args.model.resolve(), args.data
    if not model.is_file():
        from edgeasc.synth.generate import generate_dataset

        data = data or build / "tiny_data"
        if not (data / "meta.csv").is_file():
            logging.info("synthesizing a tiny dataset in %s", data)
            generate_dataset(data, scale="tiny", seed=0, progress=False)
        model = build / "demo_model/export/model_int8.tflite"
        if not model.is_file():
            logging.info("%s not found: exporting a seeded sscp_mobile_s1 with randomized BatchNorm", args.model)
            model = firmware.export_demo_model(build / "demo_model", data, cache_dir=build / "cache")
    elif data is None:
        data = ROOT / "demo_out/data"
        if not (data / "meta.csv").is_file():
            raise SystemExit(f"no dataset for {model}: pass --data DIR")
    report = firmware.check_firmware(model, data, build / "check", n_inputs=args.inputs,
                                     targets=tuple(t for t in args.targets.split(",") if t), cache_dir=build / "cache")
    write_json_atomic(build / "check_report.json", report)
    print(firmware.format_check(report))
    print(f"report: {build / 'check_report.json'}")
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
