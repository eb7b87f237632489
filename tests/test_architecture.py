"""The project's module structure: no import cycles, and a serving app without torch or Django.

The import graph is read from the source with ``ast`` (nothing is imported to build it): one node
per module of mlcore, webapp and lambda (lambda's files are top-level modules, ``serving_core``,
as on Lambda), one edge per import of one of them, at module level or inside a function alike.
``import a.b`` and ``from a import b`` depend on the module ``a.b`` where there is one, else on the
package ``a``; relative imports are resolved against the importer's package. Importing ``a.b`` also
runs ``a/__init__``, but that is not counted as an edge (the package's own imports are).
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("mlcore", "webapp")
LAMBDA_ROOT = REPO_ROOT / "lambda"

# Import cycles inside webapp, as (importer, imported) edges that lie on a cycle, each with a comment
# saying why it is tolerated, e.g.
#     ("webapp.review.services", "webapp.training.services"),  # in a function: ...
# Known cycles are left to whoever restructures webapp; this set must be exactly the set found, so a
# new cycle fails, and removing one fails until its edges are struck off. Empty today: webapp's
# apps meet in one direction at module level (training.services reads review.selectors), and
# review.services calls training.services only inside functions, with nothing coming back.
KNOWN_WEBAPP_CYCLE_EDGES: frozenset[tuple[str, str]] = frozenset()

# What the serving function must never load: its requirements (lambda/requirements.txt) have none.
NOT_IN_SERVING = frozenset({"torch", "transformers", "datasets", "django"})
# Imported by lambda inside a function on purpose, only for a .pt artifact, right after
# `import torch` (serving_model.load_predictor): the torch backend, for local serving with the
# development install. The image and the zip package serve .onnx exports and have no torch.
SERVING_TORCH_BACKEND = frozenset({"mlcore.predictor"})


@dataclass(frozen=True)
class Import:
    importer: str
    target: str  # a project module, or the top-level name of an outside package ("numpy")
    internal: bool  # whether ``target`` is a project module
    top_level: bool  # run when the importer is imported (module or class body), not in a function
    line: int


def project_modules() -> dict[str, Path]:
    modules = {}
    for package in PACKAGES:
        for path in sorted((REPO_ROOT / package).rglob("*.py")):
            parts = path.relative_to(REPO_ROOT).with_suffix("").parts
            modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    for path in sorted(LAMBDA_ROOT.glob("*.py")):
        modules[path.stem] = path
    return modules


def is_lambda_module(name: str) -> bool:
    return "." not in name and name not in PACKAGES


def _imports_in(tree: ast.AST):
    """(node, top_level) for every import statement, top_level False inside a function."""
    def walk(node: ast.AST, in_function: bool):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                yield child, not in_function
            yield from walk(child, in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))

    yield from walk(tree, False)


@cache
def imports() -> tuple[Import, ...]:
    modules = project_modules()
    found = []
    for importer, path in modules.items():
        # What the importer can import by name: the packages, and lambda's files from lambda's own.
        visible = {name for name in modules if not is_lambda_module(name) or is_lambda_module(importer)}

        def resolve(name: str) -> tuple[str, bool]:
            parts = name.split(".")
            for end in range(len(parts), 0, -1):
                if ".".join(parts[:end]) in visible:
                    return ".".join(parts[:end]), True
            return parts[0], False

        package = importer if path.name == "__init__.py" else importer.rpartition(".")[0]
        for node, top_level in _imports_in(ast.parse(path.read_text(), str(path))):
            targets = []
            if isinstance(node, ast.Import):
                targets = [resolve(alias.name) for alias in node.names]
            else:
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    base = ".".join(base + ([node.module] if node.module else []))
                else:
                    base = node.module
                for alias in node.names:
                    submodule = f"{base}.{alias.name}"
                    targets.append((submodule, True) if submodule in visible else resolve(base))
            for target, internal in dict.fromkeys(targets):
                if target != importer:
                    found.append(Import(importer, target, internal, top_level, node.lineno))
    return tuple(found)


def strongly_connected_components(nodes, edges: dict[str, set[str]]) -> list[set[str]]:
    """Tarjan's algorithm, iterative."""
    index, low, on_stack, stack, components, counter = {}, {}, set(), [], [], [0]
    for root in nodes:
        if root in index:
            continue
        work = [(root, iter(sorted(edges.get(root, ()))))]
        index[root] = low[root] = counter[0]
        counter[0] += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter[0]
                    counter[0] += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = set()
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.add(member)
                        if member == node:
                            break
                    components.append(component)
    return components


def internal_edges(*, top_level_only: bool = False) -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {}
    for item in imports():
        if item.internal and (item.top_level or not top_level_only):
            edges.setdefault(item.importer, set()).add(item.target)
    return edges


def cycles() -> list[set[str]]:
    """The import cycles: the strongly connected components of more than one module."""
    return [c for c in strongly_connected_components(sorted(project_modules()), internal_edges()) if len(c) > 1]


def cycle_edges() -> set[tuple[str, str]]:
    """The (importer, imported) edges that lie on a cycle: those inside one component."""
    component_of = {member: i for i, component in enumerate(cycles()) for member in component}
    return {(a, b) for a, targets in internal_edges().items() for b in targets
            if a in component_of and component_of.get(b) == component_of[a]}


def describe(edges) -> str:
    where = {(i.importer, i.target): i for i in imports() if i.internal}
    return "\n".join(f"  {a} -> {b}  ({project_modules()[a].relative_to(REPO_ROOT)}:{where[a, b].line}"
                     f"{'' if where[a, b].top_level else ', in a function'})" for a, b in sorted(edges))


def test_the_graph_sees_the_imports_it_must():
    """A check of the checker: known edges of each kind are found, lambda's by their top-level names."""
    found = {(i.importer, i.target, i.top_level) for i in imports() if i.internal}
    assert ("mlcore.ood", "mlcore.metrics", True) in found
    assert ("serving_core", "mlcore.prediction", True) in found and ("app", "serving_core", True) in found
    assert ("serving_model", "mlcore.onnx_predictor", False) in found and ("serving_model", "serving_aws", False) in found
    assert any(importer.startswith("webapp.") and target.startswith("mlcore.") for importer, target, _ in found)
    assert {"mlcore", "mlcore.metrics", "webapp", "webapp.settings", "app", "serving_model"} <= set(project_modules())


def test_mlcore_and_lambda_have_no_import_cycle():
    outside_webapp = [c for c in cycles() if any(not m.startswith("webapp.") for m in c)]
    edges = {(a, b) for a, b in cycle_edges() if any(a in c for c in outside_webapp)}
    assert not outside_webapp, "import cycles:\n" + describe(edges)


def test_the_webapp_import_cycles_are_exactly_the_known_ones():
    found = {(a, b) for a, b in cycle_edges() if a.startswith("webapp.")}
    new, gone = found - KNOWN_WEBAPP_CYCLE_EDGES, KNOWN_WEBAPP_CYCLE_EDGES - found
    assert not new, "new import cycles in webapp:\n" + describe(new)
    assert not gone, f"these edges are no longer on a cycle: strike them off KNOWN_WEBAPP_CYCLE_EDGES: {sorted(gone)}"


def test_mlcore_imports_neither_django_nor_webapp_nor_serving():
    wrong = [i for i in imports() if i.importer.split(".")[0] == "mlcore"
             and (i.target == "django" or i.target.split(".")[0] == "webapp" or is_lambda_module(i.target) and i.internal)]
    assert not wrong, wrong


def serving_modules() -> set[str]:
    """The modules the serving app runs: lambda's files, and the mlcore modules they import (at any
    level but the torch backend), with what those import at module level, transitively."""
    edges = internal_edges()
    top_level = internal_edges(top_level_only=True)
    reached = {name for name in project_modules() if is_lambda_module(name)}
    pending = list(reached)
    while pending:
        module = pending.pop()
        targets = edges.get(module, set()) - SERVING_TORCH_BACKEND if is_lambda_module(module) else top_level.get(module, set())
        for target in targets - reached:
            reached.add(target)
            pending.append(target)
    return reached


def test_what_serving_imports_at_module_level_needs_no_torch_or_django():
    modules = serving_modules()
    assert {"mlcore.onnx_predictor", "mlcore.prediction", "mlcore.ood", "mlcore.metrics"} <= modules
    assert not modules & {"mlcore.predictor", "mlcore.train", "mlcore.modeling"}
    assert not any(m.startswith("webapp") for m in modules)
    heavy = [f"{project_modules()[i.importer].relative_to(REPO_ROOT)}:{i.line} imports {i.target}" for i in imports()
             if i.importer in modules and i.top_level and not i.internal and i.target in NOT_IN_SERVING]
    assert not heavy, heavy


def test_the_serving_app_imports_without_torch_or_django(tmp_path):
    """Imported as Lambda imports it (lambda/ on sys.path; the preload finds no model and the app
    starts without one), and the module an ONNX model is loaded with (serving_model.load_predictor).
    tests/serving/test_deployment.py serves a request from the image's files without torch as well."""
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import app, mlcore.onnx_predictor; "
            "print(sorted({name.split('.')[0] for name in sys.modules} & set(sys.argv[2:])))")
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "MODEL_URI": str(tmp_path / "missing.onnx")}
    out = subprocess.run([sys.executable, "-c", code, str(LAMBDA_ROOT), *sorted(NOT_IN_SERVING)], cwd=REPO_ROOT, env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout + out.stderr[-2000:]
