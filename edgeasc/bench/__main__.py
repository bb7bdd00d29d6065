"""`python -m edgeasc.bench --arena-probe MODEL.tflite`: the arena probe's child process (internal)."""

import sys

from edgeasc.bench.arena import _probe_main

if len(sys.argv) == 3 and sys.argv[1] == "--arena-probe":
    sys.exit(_probe_main(sys.argv[2]))
print("usage: python -m edgeasc.bench --arena-probe MODEL.tflite (internal; use `edgeasc bench`)", file=sys.stderr)
sys.exit(2)
