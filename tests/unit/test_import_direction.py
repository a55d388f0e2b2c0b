"""Imports point one way: web (blueprints, CLI) -> services -> domain -> models -> db, no cycles.

The contracts are import-linter's, in ``pyproject.toml`` (``[tool.importlinter]``); ``make lint``
runs them too (``lint-imports``). A new upward import or cycle fails here with the chain that
breaks the rule. An exception would be listed there as ``ignore_imports``, with why; there is none.
"""

from __future__ import annotations

import pkgutil
import subprocess
import sys
import tomllib
from pathlib import Path

import grimp

import qol_app

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "pyproject.toml"


def _contracts() -> dict[str, dict]:
    with CONFIG.open("rb") as fh:
        settings = tomllib.load(fh)["tool"]["importlinter"]
    return {contract["id"]: contract for contract in settings["contracts"]}


def _layered_modules() -> list[str]:
    names = []
    for layer in _contracts()["layers"]["layers"]:
        names += [name.strip() for name in layer.replace("|", ":").split(":")]
    return names


def test_the_import_contracts_hold():
    # In a process of its own: the linter configures logging and sys.path for its process.
    linter = Path(sys.executable).parent / "lint-imports"
    done = subprocess.run(
        [linter, "--config", CONFIG, "--no-cache", "--no-logo"], cwd=ROOT, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_module_of_the_app_has_a_layer():
    """A new top-level module or package must say where it sits, or the layers say nothing about it."""
    children = {f"qol_app.{m.name}" for m in pkgutil.iter_modules(qol_app.__path__)}
    layered = _layered_modules()
    assert len(layered) == len(set(layered)), "a module is named in two layers"
    assert children - set(layered) == set(), "add these to a layer in pyproject.toml"
    assert set(layered) - children == set(), "these layers name modules that do not exist"


def test_an_upward_import_would_be_caught():
    """The layers contract is not vacuous: services importing a blueprint, or db importing a
    service (as db.py did for the lock-order hook), is an illegal dependency."""
    graph = grimp.build_graph("qol_app")
    layers = [
        grimp.Layer(*(n.strip() for n in layer.split(":")), independent=False)
        for layer in _contracts()["layers"]["layers"]
    ]
    assert not _illegal(graph, layers)
    graph.add_import(importer="qol_app.services.responses", imported="qol_app.nurse.views")
    graph.add_import(importer="qol_app.db", imported="qol_app.services.audit")
    found = {(d.importer, d.imported) for d in _illegal(graph, layers)}
    assert ("qol_app.services", "qol_app.nurse") in found and ("qol_app.db", "qol_app.services") in found


def _illegal(graph: grimp.ImportGraph, layers: list) -> set:
    ignored = [tuple(p.strip() for p in rule.split("->")) for rule in _contracts()["layers"].get("ignore_imports", [])]
    for importer, imported in ignored:
        graph.remove_import(importer=importer, imported=imported)
    return graph.find_illegal_dependencies_for_layers(layers=layers)
