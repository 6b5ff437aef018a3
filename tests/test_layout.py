"""The layout keeps its promises: stages in folders, one way through them, fixtures out of the product.

Read from the source (every `import` and `from ... import` in each module, those inside functions too),
so a cycle hidden inside a function counts as much as one at the top.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import zipfile

import pytest

PACKAGE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "keyframe_qa")


def _modules() -> dict[str, str]:
    found = {}
    for root, _, names in os.walk(PACKAGE):
        for name in names:
            if name.endswith(".py"):
                path = os.path.join(root, name)
                dotted = os.path.relpath(path, os.path.dirname(PACKAGE))[:-3].replace(os.sep, ".")
                found[dotted.removesuffix(".__init__")] = path
    return found


def _imports(module: str, path: str) -> set[str]:
    """Absolute names of everything `module` imports, anywhere in it."""
    tree = ast.parse(open(path, encoding="utf-8").read())
    package = module if path.endswith("__init__.py") else module.rpartition(".")[0]
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            names.add(target)
            names.update(f"{target}.{alias.name}" for alias in node.names)
    return names


MODULES = _modules()
IMPORTS = {module: _imports(module, path) for module, path in MODULES.items()}


def _internal(module: str) -> set[str]:
    return {name for name in IMPORTS[module] if name in MODULES and name != module}


def test_no_product_module_imports_the_test_fixtures():
    product = [m for m in MODULES if not m.startswith("keyframe_qa.testing")]
    offenders = {m: sorted(n for n in IMPORTS[m] if n.startswith("keyframe_qa.testing")) for m in product}
    assert not {m: n for m, n in offenders.items() if n}


@pytest.mark.parametrize("stage", ["video", "selection", "model", "outputs"])
def test_the_light_stages_never_import_torch_or_transformers(stage):
    modules = [m for m in MODULES if m.startswith(f"keyframe_qa.{stage}")]
    assert modules
    heavy = {
        m: sorted(n for n in IMPORTS[m] if n.split(".")[0] in ("torch", "torchvision", "transformers")) for m in modules
    }
    assert not {m: n for m, n in heavy.items() if n}


def test_torch_is_imported_only_by_the_engines():
    importers = {m for m, names in IMPORTS.items() if any(n.split(".")[0] in ("torch", "transformers") for n in names)}
    allowed = {m for m in importers if m.startswith("keyframe_qa.engines.") or m.startswith("keyframe_qa.testing")}
    assert importers == allowed, sorted(importers - allowed)


def test_there_is_no_import_cycle_even_inside_functions():
    graph = {m: _internal(m) for m in MODULES}
    state: dict[str, int] = {}
    cycles = []

    def visit(node, path):
        state[node] = 1
        for nxt in sorted(graph[node]):
            # A package's __init__ imported by its own modules is the package itself: not a cycle step.
            if nxt == node.rpartition(".")[0]:
                continue
            if state.get(nxt) == 1:
                cycles.append(path[path.index(nxt) :] + [nxt] if nxt in path else [node, nxt])
            elif nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert not cycles, cycles[:5]


def test_the_engines_do_not_import_the_module_that_drives_them():
    for module in MODULES:
        if module.startswith("keyframe_qa.engines"):
            assert not {n for n in IMPORTS[module] if n.startswith(("keyframe_qa.answering", "keyframe_qa.jobs"))}


def test_the_frames_command_imports_no_model_code(tmp_path):
    clip = os.path.join(os.path.dirname(PACKAGE), "sample_videos", "bigbuckbunny.mp4")
    code = (
        "import sys\nfrom keyframe_qa.cli import main\n"
        f"assert main(['frames', {clip!r}, '--at', '1', '--out', {str(tmp_path)!r}]) == 0\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'transformers', 'scenedetect', "
        "'pydantic', 'tokenizers', 'yaml') or m.startswith(('keyframe_qa.answering', 'keyframe_qa.replies', "
        "'keyframe_qa.jobs.ask', 'keyframe_qa.engines', 'keyframe_qa.model')))\nprint(heavy)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]", result.stdout
    assert os.path.exists(tmp_path / "frames.json")


def test_the_wheel_leaves_the_fixtures_out(tmp_path):
    uv = subprocess.run(["uv", "--version"], capture_output=True, text=True)
    if uv.returncode != 0:
        pytest.skip("uv is not installed")
    root = os.path.dirname(PACKAGE)
    built = subprocess.run(
        ["uv", "build", "--wheel", "--out-dir", str(tmp_path), root], capture_output=True, text=True, timeout=300
    )
    assert built.returncode == 0, built.stderr
    (wheel,) = [name for name in os.listdir(tmp_path) if name.endswith(".whl")]
    names = zipfile.ZipFile(tmp_path / wheel).namelist()
    assert "keyframe_qa/cli.py" in names and "keyframe_qa/video/frames.py" in names
    assert not [name for name in names if name.startswith("keyframe_qa/testing/")]
