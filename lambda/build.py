"""Lay out the serving function's code: ``python lambda/build.py OUT_DIR``. Standard library only.

The one list of what the function runs, for both packages: the zip (``make lambda-zip`` builds
build/lambda-zip, template.yaml's CodeUri) and the container image (lambda/Dockerfile runs this
script in the image build). OUT_DIR gets

* lambda's code, laid out as in lambda/: the serving package ``intentflow_serving/`` (the app,
  its settings, the request path, the model store, review routing, AWS access) and the one-line
  ``handler.py`` at the top, which the Lambda Handler setting names (``handler.handler``: the
  zip's Handler in template.yaml, the image's CMD in lambda/Dockerfile);
* the part of mlcore they run, found in the source: the mlcore modules the serving modules import
  (at module level or inside a function, but not the torch backend below), what those import,
  transitively, and the packages' ``__init__`` files;

then byte-compiles them. OUT_DIR is the function's task root (on sys.path there): ``handler``,
``intentflow_serving`` and ``mlcore`` import by those names. No module that imports torch,
transformers, datasets or Django at module level may be in that list: the build stops and names
the import.

The import graph is read from the source with ``ast`` (nothing is imported to build it): one node
per module of the given packages and of lambda (named with lambda/ as the import root, as the task
root is on Lambda: ``handler``, ``intentflow_serving.core``), one edge per import of one of them, at
module level or inside a function alike. ``import a.b`` and ``from a import b`` depend on the
module ``a.b`` where there is one, else on the package ``a``; relative imports are resolved against
the importer's package. Importing ``a.b`` also runs ``a/__init__``, but that is not counted as an
edge (the package's own imports are).
tests/test_architecture.py checks the whole project (mlcore, webapp, lambda) with the same graph.
"""

from __future__ import annotations

import argparse
import ast
import compileall
import json
import py_compile
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
LAMBDA_DIR = "lambda"
BUILD_SCRIPT = Path(__file__).name  # in lambda/, but not a serving module
# The packages whose modules serving may import (copied in part); lambda/ imports nothing else of ours.
SERVING_PACKAGES = ("mlcore",)
# What lambda/ holds (besides this script): the serving package, and the module the Lambda Handler
# setting names, one line importing the package's handler. tests/serving/test_deployment.py holds
# template.yaml's Handler and lambda/Dockerfile's CMD to it.
SERVING_PACKAGE = "intentflow_serving"
HANDLER = "handler.handler"

# What the serving function must never load: its requirements (lambda/requirements.txt) have none.
NOT_IN_SERVING = frozenset({"torch", "transformers", "datasets", "django"})
# Imported by lambda inside a function on purpose, only for a .pt artifact, right after
# `import torch` (intentflow_serving.model.load_predictor): the torch backend, for local serving
# with the development install. The image and the zip package serve .onnx exports and have no
# torch: the build leaves these out (and what only they import).
SERVING_TORCH_BACKEND = frozenset({"mlcore.predictor"})

# The function's Python: template.yaml's Runtime (python3.12, the zip) and lambda/Dockerfile's base
# image (public.ecr.aws/lambda/python:3.12) run it; the lock is resolved for it.
# tests/serving/test_deployment.py holds the three together.
LAMBDA_PYTHON = "3.12"
REQUIREMENTS = REPO_ROOT / LAMBDA_DIR / "requirements.txt"
LOCK = REPO_ROOT / LAMBDA_DIR / "requirements.lock"
# Lambda's x86_64 runtimes for python3.12 run Amazon Linux 2023 (glibc 2.34); wheels up to
# manylinux_2_28, as the packages publish them, the newest glibc they need.
LOCK_PLATFORMS = ("manylinux2014_x86_64", *(f"manylinux_2_{minor}_x86_64" for minor in range(17, 29)))


class BuildError(Exception):
    pass


@dataclass(frozen=True)
class Import:
    importer: str
    target: str  # a project module, or the top-level name of an outside package ("numpy")
    internal: bool  # whether ``target`` is a project module
    top_level: bool  # run when the importer is imported (module or class body), not in a function
    line: int


def _package_modules(root: Path, package: str) -> dict[str, Path]:
    """The modules of the package ``root/package`` by name: ``mlcore.metrics``, ``mlcore`` (its __init__)."""
    modules = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def _imports_in(tree: ast.AST):
    """(node, top_level) for every import statement, top_level False inside a function."""
    def walk(node: ast.AST, in_function: bool):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                yield child, not in_function
            yield from walk(child, in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))

    yield from walk(tree, False)


class ImportGraph:
    """The import graph of ``packages`` (folders under ``root``) and of what ``root/lambda`` holds: its
    ``*.py`` files but this script as top-level modules, its packages by their names (lambda/ is
    their import root, as the task root is on Lambda)."""

    def __init__(self, root: Path = REPO_ROOT, packages: tuple[str, ...] = SERVING_PACKAGES) -> None:
        self.root = Path(root)
        self.packages = tuple(packages)

    @cached_property
    def lambda_packages(self) -> tuple[str, ...]:
        """The packages in lambda/: ``intentflow_serving``."""
        return tuple(init.parent.name for init in sorted((self.root / LAMBDA_DIR).glob("*/__init__.py")))

    @cached_property
    def lambda_modules(self) -> dict[str, Path]:
        """lambda's modules -> source file: ``handler``, ``intentflow_serving`` (its __init__),
        ``intentflow_serving.app``."""
        lambda_root = self.root / LAMBDA_DIR
        modules = {path.stem: path for path in sorted(lambda_root.glob("*.py")) if path.name != BUILD_SCRIPT}
        for package in self.lambda_packages:
            modules.update(_package_modules(lambda_root, package))
        return modules

    @cached_property
    def modules(self) -> dict[str, Path]:
        """Module name -> source file: ``mlcore.metrics``, ``mlcore`` (its __init__), ``intentflow_serving.app``."""
        modules = {}
        for package in self.packages:
            modules.update(_package_modules(self.root, package))
        return modules | self.lambda_modules

    def is_lambda_module(self, name: str) -> bool:
        return name in self.lambda_modules

    @cached_property
    def imports(self) -> tuple[Import, ...]:
        modules = self.modules
        # lambda's top-level files (handler.py) import by name only on the task root, from lambda's
        # own; its packages (intentflow_serving) from anywhere, as the development install holds them.
        everywhere = {name for name in modules if not self.is_lambda_module(name) or name.split(".")[0] in self.lambda_packages}
        found = []
        for importer, path in modules.items():
            visible = set(modules) if self.is_lambda_module(importer) else everywhere

            def resolve(name: str) -> tuple[str, bool]:
                parts = name.split(".")
                for end in range(len(parts), 0, -1):
                    if ".".join(parts[:end]) in visible:
                        return ".".join(parts[:end]), True
                return parts[0], False

            package = importer if path.name == "__init__.py" else importer.rpartition(".")[0]
            for node, top_level in _imports_in(ast.parse(path.read_text(encoding="utf-8"), str(path))):
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

    def internal_edges(self, *, top_level_only: bool = False) -> dict[str, set[str]]:
        edges: dict[str, set[str]] = {}
        for item in self.imports:
            if item.internal and (item.top_level or not top_level_only):
                edges.setdefault(item.importer, set()).add(item.target)
        return edges

    def serving_reached(self) -> dict[str, str | None]:
        """The modules the serving app runs, each with the module that first reached it (None for
        lambda's own): lambda's files, the modules they import but the torch backend, and the
        modules those import (at any level: a function of theirs may run), transitively, with the
        packages that hold each (importing ``mlcore.ood`` runs ``mlcore/__init__``)."""
        edges = self.internal_edges()
        reached: dict[str, str | None] = {name: None for name in self.modules if self.is_lambda_module(name)}
        pending = list(reached)
        while pending:
            module = pending.pop()
            targets = set(edges.get(module, ())) - SERVING_TORCH_BACKEND
            parts = module.split(".")
            targets |= {".".join(parts[:end]) for end in range(1, len(parts))}  # its packages
            for target in sorted(targets & self.modules.keys() - reached.keys()):
                reached[target] = module
                pending.append(target)
        return reached

    def serving_modules(self) -> set[str]:
        return set(self.serving_reached())

    def heavy_imports(self, modules) -> list[Import]:
        """The imports of torch, transformers, datasets or Django at module level in ``modules``."""
        return [i for i in self.imports
                if i.importer in modules and i.top_level and not i.internal and i.target in NOT_IN_SERVING]

    def where(self, item: Import) -> str:
        return f"{self.modules[item.importer].relative_to(self.root)}:{item.line}"

    def chain(self, module: str) -> str:
        """How serving reaches ``module``: ``intentflow_serving.core -> mlcore.prediction``."""
        reached, links = self.serving_reached(), [module]
        while reached.get(links[-1]):
            links.append(reached[links[-1]])
        return " -> ".join(reversed(links))


def package_files(graph: ImportGraph | None = None) -> dict[str, Path]:
    """What the package holds: its path under OUT_DIR -> the source file. Lambda's files where they
    are in lambda/ (``handler.py``, ``intentflow_serving/app.py``), the packages' modules under their
    folders. Raises BuildError for a module that would load torch (or transformers, datasets,
    Django) at import."""
    graph = graph or ImportGraph()
    modules = graph.serving_modules()
    heavy = graph.heavy_imports(modules)
    if heavy:
        raise BuildError("serving would load what its package must not hold:\n" + "\n".join(
            f"  {graph.where(i)} imports {i.target} at module level (reached by {graph.chain(i.importer)})" for i in heavy)
            + "\nImport it inside the function that needs it, or keep serving from importing that module.")
    files = {}
    for name in sorted(modules):
        source = graph.modules[name]
        base = graph.root / LAMBDA_DIR if graph.is_lambda_module(name) else graph.root
        files[source.relative_to(base).as_posix()] = source
    return files


def build(out_dir: Path, *, graph: ImportGraph | None = None, compile: bool = True) -> list[str]:
    """Copy the package's files into ``out_dir`` (made if missing) and byte-compile them; return
    their paths under it."""
    files = package_files(graph)
    out_dir = Path(out_dir)
    stale = sorted({relative.split("/")[0] for relative in files if (out_dir / relative.split("/")[0]).exists()})
    if stale:
        raise BuildError(f"{out_dir} already holds {', '.join(stale)}: remove it first (a stale module would stay)")
    for relative, source in files.items():
        target = out_dir / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
    if compile:
        # Lambda's file system is read-only: without bytecode, every cold start compiles every module
        # of ours again (about 30 ms measured). Unchecked hashes: the .pyc is used whatever the
        # source's mtime (a zip and a COPY between image stages change mtimes; the files never change).
        for relative in files:
            if not compileall.compile_file(str(out_dir / relative), quiet=1,
                                           invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH):
                raise BuildError(f"could not byte-compile {relative}")
    return list(files)


def lock_command(report: str | Path) -> list[str]:
    """pip's resolution of lambda/requirements.txt for the function's Python and platform, wheels
    only, written as a JSON report; it installs nothing."""
    platforms = [argument for platform in LOCK_PLATFORMS for argument in ("--platform", platform)]
    return [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet", "--only-binary=:all:",
            "--python-version", LAMBDA_PYTHON, "--implementation", "cp", "--abi", "cp" + LAMBDA_PYTHON.replace(".", ""),
            *platforms, "--report", str(report), "-r", str(REQUIREMENTS)]


def write_lock(lock: Path = LOCK) -> list[str]:
    """Resolve lambda/requirements.txt (pip, from the Python running this) and write every package
    of the set as ``name==version``, sorted, to lambda/requirements.lock. Return those lines."""
    with tempfile.TemporaryDirectory() as folder:
        report = Path(folder) / "report.json"
        subprocess.run(lock_command(report), check=True)
        installed = json.loads(report.read_text())["install"]
    pins = sorted((f"{re.sub(r'[-_.]+', '-', item['metadata']['name']).lower()}=={item['metadata']['version']}"
                   for item in installed), key=lambda pin: pin.split("==")[0])
    header = [
        "# The serving function's packages, pinned: lambda/requirements.txt and all it needs, resolved by pip",
        f"# for CPython {LAMBDA_PYTHON} on manylinux x86_64, wheels only. The zip (make lambda-zip: sam build installs",
        "# it) and the image (lambda/Dockerfile) both install this file. Do not edit: change",
        "# lambda/requirements.txt, then regenerate with `.venv/bin/python lambda/build.py --lock`, which runs",
        "#   pip install --dry-run --ignore-installed --only-binary=:all: --python-version "
        f"{LAMBDA_PYTHON} --implementation cp --abi cp{LAMBDA_PYTHON.replace('.', '')}",
        f"#       --platform {LOCK_PLATFORMS[0]} --platform manylinux_2_17_x86_64 ... --platform {LOCK_PLATFORMS[-1]}",
        "#       --report REPORT -r lambda/requirements.txt",
        f"# python-version: {LAMBDA_PYTHON}",
    ]
    lock.write_text("\n".join(header + pins) + "\n")
    return pins


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out_dir", type=Path, nargs="?", help="where the package's files go (made if missing)")
    parser.add_argument("--no-compile", dest="compile", action="store_false",
                        help="leave out the bytecode (e.g. when this Python is not the function's)")
    parser.add_argument("--lock", action="store_true",
                        help=f"instead, resolve lambda/requirements.txt for Python {LAMBDA_PYTHON} into lambda/requirements.lock")
    args = parser.parse_args(argv)
    if args.lock:
        pins = write_lock()
        print(f"{len(pins)} packages pinned in {LOCK.relative_to(REPO_ROOT)} for Python {LAMBDA_PYTHON}")
        return 0
    if args.out_dir is None:
        parser.error("give OUT_DIR, or --lock")
    try:
        copied = build(args.out_dir, compile=args.compile)
    except BuildError as error:
        print(f"lambda/build.py: {error}", file=sys.stderr)
        return 1
    for relative in copied:
        print(f"  {relative}")
    compiled = f", byte-compiled by Python {sys.version_info.major}.{sys.version_info.minor}" if args.compile else ""
    print(f"{len(copied)} files into {args.out_dir}{compiled}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
