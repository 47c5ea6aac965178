"""The floors of the code, read from the source with `ast`: core at the bottom, the apps above it, config (wiring)
on top. An arrow from a lower floor up fails here, wherever the import sits (module level or inside a function)."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path
from typing import cast

ROOT = Path(__file__).resolve().parents[2]
APPS = ("core", "knowledge", "chat", "mlmodels")
DOMAIN_APPS = ("knowledge", "chat", "mlmodels")
# The NumPy core is a library of its own: it may import the standard library, NumPy and its own data sets.
DJANGO_FREE = "mlmodels.core"
DJANGO = ("django", "rest_framework", "ninja", "celery")
# chat stands on knowledge's public face: its selectors, search and embeddings, never its models (rows are read
# through knowledge.selectors) nor a private name. A type-only import (under `if TYPE_CHECKING:`) runs nothing
# and may name a model in an annotation.
PUBLIC_FACE = {"chat": ("knowledge", "knowledge.models")}


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(node: ast.AST) -> bool:
    test = node.test if isinstance(node, ast.If) else None
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _runtime_nodes(tree: ast.AST) -> Iterator[ast.AST]:
    """Every node of `tree` but the bodies of `if TYPE_CHECKING:` blocks (their `else` runs)."""
    todo = [tree]
    while todo:
        node = todo.pop()
        yield node
        if _is_type_checking(node):
            todo.extend(cast(ast.If, node).orelse)
        else:
            todo.extend(ast.iter_child_nodes(node))


def _imports(path: Path, root: Path, *, runtime_only: bool = False) -> Iterator[tuple[int, str]]:
    """(line, module) for each module `path` imports; `from a import b` imports `a.b` (a module or a name in `a`).
    `runtime_only`: leave out the imports made for type checkers only."""
    name = _module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in _runtime_nodes(tree) if runtime_only else ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            if base == "__future__":
                continue
            for alias in node.names:
                yield node.lineno, base if alias.name == "*" else f"{base}.{alias.name}"


def _within(module: str, package: str) -> bool:
    return module == package or module.startswith(f"{package}.")


def _source_of(module: str, root: Path) -> list[Path]:
    """The project's files that importing `module` runs: each package's __init__ on the way, then the module."""
    parts = module.split(".")
    files = []
    for depth in range(1, len(parts) + 1):
        folder = root.joinpath(*parts[:depth])
        if (folder / "__init__.py").is_file():
            files.append(folder / "__init__.py")
        elif folder.with_suffix(".py").is_file():
            files.append(folder.with_suffix(".py"))
            break
        else:
            break
    return files


def violations(root: Path) -> list[str]:
    """Every import under `root` that points up a floor, as "path:line: what is wrong"."""
    found: set[str] = set()
    for app in APPS:
        for path in sorted((root / app).rglob("*.py")):
            where = path.relative_to(root)
            name = _module_name(path, root)
            for line, imported in _imports(path, root):
                if _within(imported, "config") and not _within(imported, "config.settings"):
                    found.add(f"{where}:{line}: imports {imported}; app code may import config.settings only")
                if app == "core" and any(_within(imported, other) for other in DOMAIN_APPS):
                    found.add(f"{where}:{line}: core imports the app module {imported}")
            if app in PUBLIC_FACE:
                found.update(_beyond_public_face(path, root, *PUBLIC_FACE[app]))
            if _within(name, DJANGO_FREE):
                found.update(_django_reached(path, root))
    return sorted(found)


def _beyond_public_face(path: Path, root: Path, other: str, models: str) -> list[str]:
    """Imports by `path` of a private name of the app `other` (any part of it starting with "_"), or at run time
    of its models."""
    where = path.relative_to(root)
    found = []
    for line, imported in _imports(path, root):
        if _within(imported, other) and any(part.startswith("_") for part in imported.split(".")):
            found.append(
                f"{where}:{line}: imports the private {imported}; {other} is used through its public names"
            )
    for line, imported in _imports(path, root, runtime_only=True):
        if _within(imported, models):
            found.append(
                f"{where}:{line}: imports {imported}; {other}'s rows are read through {other}.selectors"
            )
    return found


def _django_reached(start: Path, root: Path) -> list[str]:
    """Imports of Django (or a framework on it) by `start` or by a project module it imports, transitively."""
    found = []
    seen = {start}
    todo = [start]
    while todo:
        path = todo.pop()
        for line, imported in _imports(path, root):
            if any(_within(imported, framework) for framework in DJANGO):
                via = "" if path == start else f", reached from {start.relative_to(root)}"
                found.append(
                    f"{path.relative_to(root)}:{line}: imports {imported}{via}; the NumPy core imports no Django"
                )
            for source in _source_of(imported, root):
                if source not in seen:
                    seen.add(source)
                    todo.append(source)
    return found


def test_no_import_points_up_a_floor():
    assert violations(ROOT) == []


def _tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    for app in APPS:
        (root / app).mkdir(exist_ok=True)
    return root


def test_the_check_names_each_kind_of_arrow_up(tmp_path):
    root = _tree(
        tmp_path,
        {
            "core/__init__.py": "",
            "core/jobs.py": "def claim():\n    from knowledge.models import Document\n",
            "knowledge/__init__.py": "",
            "knowledge/views.py": "from config.errors import ObjectNotFound\nfrom config.settings import base\n",
            "chat/__init__.py": "",
            "chat/api.py": "import config.api\nfrom django.conf import settings\n",
            "mlmodels/__init__.py": "",
            "mlmodels/helpers.py": "from django.db import models\n",
            "mlmodels/core/__init__.py": "",
            "mlmodels/core/net.py": "import numpy as np\nfrom .. import helpers\n",
            "mlmodels/core/fit.py": "from django.conf import settings\n",
        },
    )

    found = violations(root)

    assert sorted(found) == sorted(
        [
            "core/jobs.py:2: core imports the app module knowledge.models.Document",
            "knowledge/views.py:1: imports config.errors.ObjectNotFound; app code may import config.settings only",
            "chat/api.py:1: imports config.api; app code may import config.settings only",
            "mlmodels/core/fit.py:1: imports django.conf.settings; the NumPy core imports no Django",
            "mlmodels/helpers.py:1: imports django.db.models, reached from mlmodels/core/net.py; the NumPy core imports no Django",
        ]
    )


def test_chat_reaches_knowledge_through_its_public_names_only(tmp_path):
    root = _tree(
        tmp_path,
        {
            "chat/__init__.py": "",
            "chat/services.py": "from knowledge.models import Chunk\nfrom knowledge.selectors import chunk_get\n",
            "chat/pipeline.py": (
                "from typing import TYPE_CHECKING\n"
                "from knowledge.search import _candidates\n"
                "if TYPE_CHECKING:\n"
                "    from knowledge.models import Collection\n"
                "def answer():\n"
                "    import knowledge.models\n"
                "    from knowledge import _batch\n"
            ),
            "knowledge/__init__.py": "",
            "knowledge/views.py": "from knowledge.models import Chunk\nfrom knowledge.search import _candidates\n",
        },
    )

    found = violations(root)

    assert sorted(found) == sorted(
        [
            "chat/services.py:1: imports knowledge.models.Chunk; knowledge's rows are read through knowledge.selectors",
            "chat/pipeline.py:2: imports the private knowledge.search._candidates; knowledge is used through its public names",
            "chat/pipeline.py:6: imports knowledge.models; knowledge's rows are read through knowledge.selectors",
            "chat/pipeline.py:7: imports the private knowledge._batch; knowledge is used through its public names",
        ]
    )


PROJECT = (*APPS, "config")


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _is_module(name: str, root: Path) -> bool:
    folder = root.joinpath(*name.split("."))
    return (folder / "__init__.py").is_file() or folder.with_suffix(".py").is_file()


def _module_aliases(path: Path, root: Path) -> dict[str, str]:
    """The names under which `path` holds a project module (`from knowledge.services import indexing`,
    `import knowledge.services.indexing as indexing`), each with the module's dotted name."""
    name = _module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    aliases = {}
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            aliases.update({a.asname: a.name for a in node.names if a.asname and _is_module(a.name, root)})
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                if _is_module(f"{base}.{alias.name}", root):
                    aliases[alias.asname or alias.name] = f"{base}.{alias.name}"
    return aliases


def private_names_shared(root: Path) -> list[str]:
    """Every private (underscore) name that a module of core, the apps or config takes from another project
    module: imported by name, or read as an attribute of a project module it imported."""
    found = []
    for top in PROJECT:
        for path in sorted((root / top).rglob("*.py")):
            where = path.relative_to(root)
            for line, imported in _imports(path, root):
                if any(_within(imported, project) for project in PROJECT) and any(
                    _is_private(part) for part in imported.split(".")
                ):
                    found.append(f"{where}:{line}: imports the private {imported}")
            aliases = _module_aliases(path, root)
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
                if (
                    isinstance(node, ast.Attribute)
                    and isinstance(node.value, ast.Name)
                    and node.value.id in aliases
                    and _is_private(node.attr)
                ):
                    found.append(
                        f"{where}:{node.lineno}: uses the private {aliases[node.value.id]}.{node.attr}"
                    )
    return sorted(found)


def test_no_module_takes_a_private_name_of_another():
    assert private_names_shared(ROOT) == []


def test_the_private_name_check_sees_imports_and_attributes(tmp_path):
    root = _tree(
        tmp_path,
        {
            "knowledge/__init__.py": "",
            "knowledge/services/__init__.py": "",
            "knowledge/services/indexing.py": "def _enqueue():\n    pass\n__all__ = []\n",
            "knowledge/services/documents.py": (
                "from knowledge.services.indexing import _enqueue\n"
                "from knowledge.services import indexing\n"
                "from django.utils.translation import gettext_lazy as _\n"
                "def add(model):\n"
                "    indexing._enqueue()\n"
                "    return model._meta, indexing.__all__, _('text')\n"
            ),
            "config/__init__.py": "",
            "config/urls.py": "from . import _private\nimport knowledge.services.indexing as ix\nix._enqueue()\n",
        },
    )

    found = private_names_shared(root)

    assert found == [
        "config/urls.py:1: imports the private config._private",
        "config/urls.py:3: uses the private knowledge.services.indexing._enqueue",
        "knowledge/services/documents.py:1: imports the private knowledge.services.indexing._enqueue",
        "knowledge/services/documents.py:5: uses the private knowledge.services.indexing._enqueue",
    ]
