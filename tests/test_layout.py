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


# The stages from the bottom up (docs/architecture.md). A module may import its own layer and those below
# it, never one above: the foundation is shared by all, the CLI sits on top of everything.
LAYERS = [
    ("foundation", {"errors", "texts", "timecodes", "console", "options", "records", "files"}),
    ("video", {"video"}),
    ("model", {"model"}),
    ("selection", {"selection"}),
    ("replies", {"replies"}),
    ("evaluation", {"evaluation"}),
    ("engines", {"engines"}),
    ("answering", {"answering"}),
    ("outputs", {"outputs"}),
    ("exports", {"exports"}),
    ("jobs", {"jobs"}),
    ("cli", {"cli", "__main__", ""}),
]


def _layer(module: str) -> int:
    """The layer of a product module: keyframe_qa.<part>... by its first part ("" for the package)."""
    part = module.split(".")[1] if "." in module else ""
    (found,) = [position for position, (_, parts) in enumerate(LAYERS) if part in parts]
    return found


def test_every_product_module_has_its_layer():
    product = [m for m in MODULES if not m.startswith("keyframe_qa.testing")]
    for module in product:
        _layer(module)  # raises for a folder or module no layer names


def test_imports_go_down_the_stages_only():
    upward = {}
    for module in MODULES:
        if module.startswith("keyframe_qa.testing"):
            continue
        mine = _layer(module)
        above = sorted(n for n in _internal(module) if not n.startswith("keyframe_qa.testing") and _layer(n) > mine)
        if above:
            upward[module] = above
    assert not upward, upward


@pytest.mark.parametrize(
    "importer, imported",
    [
        # The examples the stage order exists for: selection is handed its scorer and writes no output,
        # the console writes no JSON, and reading a reply needs no engine.
        ("keyframe_qa.selection", "keyframe_qa.engines"),
        ("keyframe_qa.selection", "keyframe_qa.outputs"),
        ("keyframe_qa.console", "keyframe_qa.outputs"),
        ("keyframe_qa.replies", "keyframe_qa.engines"),
        ("keyframe_qa.video", "keyframe_qa.model"),
        ("keyframe_qa.model", "keyframe_qa.selection"),
    ],
)
def test_a_stage_never_reaches_up(importer, imported):
    found = {m: sorted(n for n in _internal(m) if n.startswith(imported)) for m in MODULES if m.startswith(importer)}
    assert found and not {m: n for m, n in found.items() if n}


# Third-party packages whose import is slow or optional: the only ones imported inside functions, so
# that a command loads what it uses (the `frames` command no torch, a batch without --ray no ray).
HEAVY = {
    "torch", "torchvision", "transformers", "scenedetect", "ray", "cv2", "pydantic", "yaml", "click", "tqdm",
    "json_repair", "qwen_vl_utils", "tokenizers", "jinja2", "huggingface_hub", "fcntl", "PIL", "av", "numpy",
    "platformdirs", "safetensors", "decord", "scipy", "pyarrow",
}  # fmt: skip
# Where keyframe-qa's own modules are imported inside functions, and why: the CLI imports each command's job
# when it runs; the engine registry imports the engine chosen; the light path (the frames command and
# extract_frames) leaves the model side unloaded (test_the_frames_command_imports_no_model_code).
DEFERRING = ("keyframe_qa.cli", "keyframe_qa.engines", "keyframe_qa.selection.", "keyframe_qa.video.",
             "keyframe_qa.files.", "keyframe_qa.jobs.frames", "keyframe_qa.jobs.relevance", "keyframe_qa.jobs.scenes",
             "keyframe_qa.outputs.images", "keyframe_qa.outputs.report", "keyframe_qa.outputs.jsontext",
             "keyframe_qa.console", "keyframe_qa.options")  # fmt: skip


def _local_imports(path: str) -> list[tuple[int, str, bool]]:
    """(line, name, whether it is keyframe-qa's own) of every import inside a function of the file at `path`."""
    tree = ast.parse(open(path, encoding="utf-8").read())
    found = []
    for function in ast.walk(tree):
        if isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for node in ast.walk(function):
                if isinstance(node, ast.ImportFrom):
                    name = node.module or ""
                    found.append((node.lineno, ("." * node.level) + name, bool(node.level)))
                elif isinstance(node, ast.Import):
                    found += [(node.lineno, alias.name, alias.name.startswith("keyframe_qa")) for alias in node.names]
    return found


def test_only_heavy_or_optional_dependencies_are_imported_inside_functions():
    misplaced = []
    for module, path in MODULES.items():
        if module.startswith("keyframe_qa.testing"):
            continue
        for line, name, own in _local_imports(path):
            if own and module.startswith(DEFERRING):
                continue
            if not own and name.split(".")[0] in HEAVY:
                continue
            misplaced.append(f"{module}:{line} imports {name}")
    assert not misplaced, misplaced


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
