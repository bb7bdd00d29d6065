"""edgeasc: acoustic scene classification from raw audio to a microcontroller-ready int8 model.

Reproduces the DCASE 2025 Task 1 system of the THU-SJTU team (ensemble-teacher distillation, AGP
pruning of SSCP-Mobile students) as a reusable toolkit, under the DCASE 2025 complexity budget.
"""

__version__ = "0.1.0"

if __name__ == "edgeasc":  # not in a submission's vendored copy
    import importlib as _importlib

    _importlib.import_module("edgeasc._moved").install()  # the 0.1 module names, for one release
