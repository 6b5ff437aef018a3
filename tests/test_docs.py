"""The docs keep up with the CLI: every command and every option `--help` lists is documented, the README
stays short, and every relative link (and its #section) leads somewhere."""

from __future__ import annotations

import glob
import os
import re

import click
import pytest

from keyframe_qa.cli import cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = sorted(glob.glob(os.path.join(ROOT, "docs", "*.md")))
PAGES = [os.path.join(ROOT, "README.md"), *DOCS, *glob.glob(os.path.join(ROOT, "*", "README.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def _read(path: str) -> str:
    with open(path, encoding="utf-8") as handle:
        return handle.read()


def _commands() -> dict[str, click.Command]:
    return dict(cli.commands)


def test_the_readme_is_short():
    assert len(_read(os.path.join(ROOT, "README.md")).splitlines()) < 200


@pytest.mark.parametrize("name", sorted(_commands()))
def test_every_command_has_its_page(name):
    pages = {os.path.basename(path): _read(path) for path in DOCS}
    titled = [page for page, text in pages.items() if re.search(rf"^# .*`keyframe-qa {name}`", text, re.M)]
    assert titled, f"no page in docs/ is titled with `keyframe-qa {name}`"


@pytest.mark.parametrize("name", sorted(_commands()))
def test_every_option_of_a_command_is_documented(name):
    text = "\n".join(_read(path) for path in DOCS)
    missing = []
    for param in _commands()[name].params:
        if not isinstance(param, click.Option):
            continue
        flags = [flag for flag in param.opts + param.secondary_opts if flag.startswith("--")]
        if flags == ["--help"]:
            continue
        if not any(re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", text) for flag in flags):
            missing.append("/".join(flags))
    assert not missing, f"keyframe-qa {name}: {missing} appear nowhere in docs/"


def _slug(heading: str) -> str:
    """The anchor GitHub gives a heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _anchors(path: str) -> set[str]:
    return {_slug(line.lstrip("#")) for line in _read(path).splitlines() if line.startswith("#")}


@pytest.mark.parametrize("page", PAGES, ids=lambda p: os.path.relpath(p, ROOT))
def test_every_relative_link_resolves(page):
    broken = []
    for target in LINK.findall(_read(page)):
        if re.match(r"^[a-z]+:", target):
            continue  # a web address
        path, _, anchor = target.partition("#")
        resolved = os.path.normpath(os.path.join(os.path.dirname(page), path)) if path else page
        if not os.path.exists(resolved):
            broken.append(target)
        elif anchor and resolved.endswith(".md") and anchor not in _anchors(resolved):
            broken.append(target)
    assert not broken, f"{os.path.relpath(page, ROOT)}: {broken}"


def test_the_docs_name_no_private_module_path_for_users():
    # Users are sent to `keyframe_qa` itself (the public API), never into a module inside it.
    for page in (os.path.join(ROOT, "README.md"), *DOCS):
        code = re.findall(r"^\s*from (keyframe_qa[\w.]*) import", _read(page), re.M)
        assert set(code) <= {"keyframe_qa"}, f"{os.path.relpath(page, ROOT)} imports from {set(code)}"
