"""The project's module structure: no import cycles, and a serving app without torch or Django.

The import graph is read from the source with ``ast`` (nothing is imported to build it) by
lambda/build.py's ``ImportGraph``, the one that lists the serving package's files, here over the
whole project: one node per module of mlcore, webapp and lambda (named with lambda/ as the import
root, as the task root is on Lambda: ``handler``, ``intentflow_serving.core``), one edge per import of one of them, at module level or
inside a function alike. ``import a.b`` and ``from a import b`` depend on the module ``a.b`` where
there is one, else on the package ``a``; relative imports are resolved against the importer's
package. Importing ``a.b`` also runs ``a/__init__``, but that is not counted as an edge (the
package's own imports are).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("mlcore", "webapp")
LAMBDA_ROOT = REPO_ROOT / "lambda"


def load_build_script():
    """lambda/build.py as a module (``lambda`` is a keyword, and ``build`` too common a name to import)."""
    if "lambda_build" not in sys.modules:
        spec = importlib.util.spec_from_file_location("lambda_build", LAMBDA_ROOT / "build.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules["lambda_build"] = module  # before running it: its dataclass looks its module up
        spec.loader.exec_module(module)
    return sys.modules["lambda_build"]


build_script = load_build_script()
GRAPH = build_script.ImportGraph(REPO_ROOT, PACKAGES)
Import = build_script.Import

# Import cycles inside webapp, as (importer, imported) edges that lie on a cycle, each with a comment
# saying why it is tolerated, e.g.
#     ("webapp.review.services", "webapp.training.services"),  # in a function: ...
# Known cycles are left to whoever restructures webapp; this set must be exactly the set found, so a
# new cycle fails, and removing one fails until its edges are struck off. Empty today: webapp's
# apps meet in one direction at module level (training.services reads review.selectors), and
# review.services calls training.services only inside functions, with nothing coming back.
KNOWN_WEBAPP_CYCLE_EDGES: frozenset[tuple[str, str]] = frozenset()

# What the serving function must never load: its requirements have none (lambda/build.py refuses
# to package a module that imports one of them at module level).
NOT_IN_SERVING = build_script.NOT_IN_SERVING


def project_modules() -> dict[str, Path]:
    return GRAPH.modules


def is_lambda_module(name: str) -> bool:
    return GRAPH.is_lambda_module(name)


def imports() -> tuple[Import, ...]:
    return GRAPH.imports


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
    return GRAPH.internal_edges(top_level_only=top_level_only)


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
    """A check of the checker: known edges of each kind are found, lambda's by their names under lambda/."""
    found = {(i.importer, i.target, i.top_level) for i in imports() if i.internal}
    assert ("mlcore.ood", "mlcore.metrics", True) in found
    assert ("intentflow_serving.core", "mlcore.prediction", True) in found
    assert ("intentflow_serving.app", "intentflow_serving.core", True) in found
    assert ("handler", "intentflow_serving.app", True) in found  # lambda/handler.py, the Handler setting's module
    assert ("intentflow_serving.model", "mlcore.onnx_predictor", False) in found
    assert ("intentflow_serving.model", "intentflow_serving.aws", False) in found
    assert any(importer.startswith("webapp.") and target.startswith("mlcore.") for importer, target, _ in found)
    assert {"mlcore", "mlcore.metrics", "webapp", "webapp.settings", "handler", "intentflow_serving",
            "intentflow_serving.app", "intentflow_serving.model"} <= set(project_modules())
    assert all(is_lambda_module(name) for name in project_modules() if name.split(".")[0] in {"handler", "intentflow_serving"})
    assert not any(is_lambda_module(name) for name in project_modules() if name.split(".")[0] in PACKAGES)
    assert "build" not in project_modules()  # lambda/build.py: the packaging script, not a serving module


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


# The Django apps' layers, lowest first: an app imports only apps below it (at module level or in a
# function alike). Labeling knows neither of the others; training (the registry) knows labeling;
# review (what serving's predictions of a trained model become) knows both. Where training needs the
# review queue (self-training's unlabeled texts, the run page's live accuracy), the project's
# configuration and templates compose them (TRAINING_UNLABELED_TEXTS_SOURCE, review's template tags).
APP_LAYERS = ("webapp.labeling", "webapp.training", "webapp.review")


def app_of(module: str) -> str | None:
    return next((app for app in APP_LAYERS if module == app or module.startswith(app + ".")), None)


def test_the_apps_depend_one_way():
    upward = [i for i in imports() if i.internal and app_of(i.importer) and app_of(i.target)
              and APP_LAYERS.index(app_of(i.target)) > APP_LAYERS.index(app_of(i.importer))]
    assert not upward, "an app imports one above it:\n" + describe({(i.importer, i.target) for i in upward})


def serving_modules() -> set[str]:
    """The modules the serving app runs, and the files its package holds (lambda/build.py)."""
    return GRAPH.serving_modules()


def test_what_serving_imports_at_module_level_needs_no_torch_or_django():
    modules = serving_modules()
    assert {"mlcore.onnx_predictor", "mlcore.prediction", "mlcore.ood", "mlcore.metrics"} <= modules
    assert not modules & {"mlcore.predictor", "mlcore.train", "mlcore.modeling"}
    assert not any(m.startswith("webapp") for m in modules)
    heavy = [f"{GRAPH.where(i)} imports {i.target}" for i in GRAPH.heavy_imports(modules)]
    assert not heavy, heavy


def test_the_serving_app_imports_without_torch_or_django(tmp_path):
    """The serving package imported from the development install, from outside the repository (no
    import path edited; the preload finds no model and the app starts without one), and the module
    an ONNX model is loaded with (intentflow_serving.model.load_predictor).
    tests/serving/test_deployment.py serves a request from lambda/build.py's files without torch as well."""
    code = ("import sys, intentflow_serving.app, mlcore.onnx_predictor; "
            "assert intentflow_serving.app.__file__.startswith(sys.argv[1]), intentflow_serving.app.__file__; "
            "print(sorted({name.split('.')[0] for name in sys.modules} & set(sys.argv[2:])))")
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "MODEL_URI": str(tmp_path / "missing.onnx")}
    out = subprocess.run([sys.executable, "-c", code, str(LAMBDA_ROOT / "intentflow_serving"), *sorted(NOT_IN_SERVING)],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout + out.stderr[-2000:]
