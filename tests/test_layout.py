"""The package layout (docs/layout.md): stage order, no cycles, no private names across packages, and the 0.1
names that answer for one release."""

import ast
import importlib
import importlib.util
import warnings
from pathlib import Path

import pytest

from edgeasc import _moved

PACKAGE = Path(__file__).resolve().parents[1] / "edgeasc"
STAGES = ("data", "synth", "models", "train", "prune", "devices", "deploy", "audit", "bench", "firmware",
          "submission")
"""The stage packages in the order data flows; each may import only the ones before it (and the low layer)."""
LOW_LAYER_MAY_USE = {"data", "models"}
"""The stages the shared low layer builds on: evaluate reads the dataset, checkpoint builds registered models."""
TOP = {"pipeline", "cli"}


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        name = ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)
        out[name] = path
    return out


def _imports(path: Path, module_level_only: bool = False) -> list[tuple[str, list[str]]]:
    """(imported edgeasc module, names) of every import statement (module level only, if asked)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    nodes = tree.body if module_level_only else ast.walk(tree)
    out = []
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "edgeasc":
            out.append((node.module, [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            out += [(a.name, []) for a in node.names if a.name.split(".")[0] == "edgeasc"]
    return out


def _room(module: str) -> str:
    """The stage package of a module, or "low" (top-level module) or "top" (pipeline, cli)."""
    parts = module.split(".")
    if len(parts) < 2:
        return "low"
    if parts[1] in STAGES:
        return parts[1]
    return "top" if parts[1] in TOP else "low"


def test_stages_import_only_earlier_stages_and_the_low_layer():
    bad = []
    for name, path in _modules().items():
        room = _room(name)
        for target, _ in _imports(path):
            to = _room(target)
            if to in ("low", room) or room == "top":
                continue
            if to == "top":
                bad.append(f"{name} imports {target} (pipeline and cli are the top)")
            elif room == "low" and to not in LOW_LAYER_MAY_USE:
                bad.append(f"{name} (low layer) imports {target}")
            elif room != "low" and STAGES.index(to) > STAGES.index(room):
                bad.append(f"{name} ({room}) imports the later stage {target}")
    assert bad == [], "\n".join(bad)


def test_no_import_cycles_between_modules():
    mods = _modules()
    graph = {}
    for name, path in mods.items():
        deps = set()
        for target, names in _imports(path, module_level_only=True):
            deps.add(target)
            deps.update(f"{target}.{n}" for n in names if f"{target}.{n}" in mods)
        graph[name] = {d for d in deps if d in mods and d != name}
    # a package's __init__ that re-exports its modules is not a cycle with them
    for name in graph:
        graph[name] = {d for d in graph[name] if not name.startswith(d + ".")}
    state, cycles = {}, []

    def visit(n, stack):
        state[n] = 1
        for d in sorted(graph[n]):
            if state.get(d) == 1:
                cycles.append(" -> ".join(stack[stack.index(d):] + [d]) if d in stack else f"{n} -> {d}")
            elif d not in state:
                visit(d, stack + [d])
        state[n] = 2

    for n in sorted(graph):
        if n not in state:
            visit(n, [n])
    assert cycles == []


def test_no_private_names_across_packages():
    bad = []
    for name, path in _modules().items():
        pkg = name.rsplit(".", 1)[0] if path.name != "__init__.py" else name
        for target, names in _imports(path):
            target_pkg = target.rsplit(".", 1)[0]
            for n in names:
                if n.startswith("_") and n != "__version__" and target_pkg != pkg and target != pkg:
                    bad.append(f"{name} imports {target}.{n}")
    assert bad == [], "\n".join(bad)


def test_modules_stay_short_or_say_why():
    long = {}
    for name, path in _modules().items():
        n = len(path.read_text(encoding="utf-8").splitlines())
        doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
        if n > 600 and "lines" not in doc:
            long[name] = n
    assert long == {}, f"over 600 lines without a reason in the docstring: {long}"


def test_every_edgeasc_import_in_the_repository_resolves():
    """`from edgeasc.X import name` everywhere (package, tests, benchmarks, firmware tools, function-level imports
    included) names a module that exists and a name it has: what pyflakes cannot see after a move."""
    root = PACKAGE.parent
    files = [p for d in ("edgeasc", "tests", "benchmarks", "firmware_stub") for p in (root / d).rglob("*.py")]
    bad = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        for path in files:
            for target, names in _imports(path):
                module = importlib.import_module(target)
                for n in names:
                    is_submodule = hasattr(module, "__path__") and importlib.util.find_spec(f"{target}.{n}")
                    if not hasattr(module, n) and not is_submodule:
                        bad.append(f"{path.relative_to(root)}: {target} has no {n}")
    assert bad == [], "\n".join(bad)


@pytest.mark.parametrize("old, new", sorted(_moved.MOVED.items()))
def test_a_moved_module_answers_under_its_old_name(old, new):
    import sys

    sys.modules.pop(old, None)
    with pytest.warns(DeprecationWarning, match=f"{old} moved to {new}") as record:
        module = __import__(old, fromlist=["_"])
    assert record[0].filename == __file__  # the user's line: the default filters show it in a script
    assert module is importlib.import_module(new)
    assert module.__spec__.name == new  # the real module keeps its own spec


@pytest.mark.parametrize("module, name", sorted(_moved.MOVED_NAMES))
def test_a_moved_name_answers_from_its_old_module(module, name):
    new = _moved.MOVED_NAMES[(module, name)]
    with pytest.warns(DeprecationWarning, match=f"{module}.{name} moved to {new}.{name}") as record:
        value = getattr(importlib.import_module(module), name)
    assert record[0].filename == __file__
    assert value is getattr(importlib.import_module(new), name)
    with pytest.raises(AttributeError, match="no attribute 'no_such_name'"):
        getattr(importlib.import_module(module), "no_such_name")


@pytest.mark.parametrize("package", ["synth", "train", "prune", "audit", "bench", "firmware", "submission"])
def test_a_package_that_replaced_a_module_re_exports_its_names(package):
    mod = importlib.import_module(f"edgeasc.{package}")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the package names are not deprecated
        for name in getattr(mod, "__all__", None) or [n for n in vars(mod) if not n.startswith("_")]:
            assert getattr(mod, name) is not None


def test_the_names_the_issue_promised_keep_working():
    import sys

    from edgeasc.audit import audit_model
    from edgeasc.synth import generate_dataset

    for old in ("edgeasc.export", "edgeasc.dcase"):
        sys.modules.pop(old, None)  # the warning comes with the first import of the old name

    with pytest.warns(DeprecationWarning):
        from edgeasc.export import export_checkpoint
    with pytest.warns(DeprecationWarning):
        from edgeasc.dcase import DeviceModels, load_model, predict
    assert export_checkpoint.__module__ == "edgeasc.deploy.export"
    assert generate_dataset.__module__ == "edgeasc.synth.generate"
    assert audit_model.__module__ == "edgeasc.audit.report"
    assert {DeviceModels.__module__, load_model.__module__, predict.__module__} == {"edgeasc.devices.dcase"}
