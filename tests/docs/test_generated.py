"""The docs' generated blocks are what ``tools/docs.py`` renders from the code and the results
(``make verify`` runs the same check), and the generator notices what it must notice."""

from __future__ import annotations

import argparse
import importlib.util
import pathlib
import sys

import pytest
from blocks import ROOT

# tools/ is not a package, and `docs` is this directory's name: load the tool by its path.
_spec = importlib.util.spec_from_file_location("docs_generator", ROOT / "tools" / "docs.py")
assert _spec is not None
assert _spec.loader is not None
generator = importlib.util.module_from_spec(_spec)
sys.modules["docs_generator"] = generator
_spec.loader.exec_module(generator)


def test_every_generated_block_and_the_architecture_tree_are_current() -> None:
    assert generator.stale() == [], "run `make generate`"


def test_every_renderer_is_used_somewhere() -> None:
    used = {
        match["name"]
        for path in generator.documents()
        for match in generator.BLOCK.finditer(path.read_text())
    }
    assert used == set(generator.BLOCKS)


def test_a_changed_block_is_found_stale_and_rewritten() -> None:
    text = (ROOT / "README.md").read_text()
    start = text.index("<!-- generated:flags -->\n") + len("<!-- generated:flags -->\n")
    tampered = text[:start] + "| `--gone` | | a flag that no longer exists |\n" + text[start:]
    current = generator.rewrite(text, "README.md")
    assert "`--gone`" not in current
    assert generator.rewrite(tampered, "README.md") == current
    assert generator.rewrite(current, "README.md") == current


def test_unknown_blocks_and_unclosed_markers_are_errors() -> None:
    with pytest.raises(SystemExit, match="unknown generated block 'nope'"):
        generator.rewrite("<!-- generated:nope -->\n<!-- end -->\n", "x.md")
    with pytest.raises(SystemExit, match="has no <!-- end -->"):
        generator.rewrite("<!-- generated:flags -->\nno end\n", "x.md")


def test_the_flags_table_follows_the_parser(monkeypatch: pytest.MonkeyPatch) -> None:
    from deviceplugin_operator import cli

    original = cli._parser

    def with_new_flag() -> argparse.ArgumentParser:
        parser = original()
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                action.choices["run"].add_argument("--brand-new", default="x", help="new here")
        return parser

    rendered = generator.render_flags()
    for action in original()._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                assert f"`deviceplugin-operator {name}`" in rendered
                for option in (o for a in sub._actions for o in a.option_strings):
                    if option not in ("-h", "--help"):
                        assert f"`{option}`" in rendered, option
    monkeypatch.setattr(cli, "_parser", with_new_flag)
    assert "| `--brand-new` | `x` | new here |" in generator.render_flags()


def test_chart_value_descriptions_are_read_helm_docs_style() -> None:
    text = """# -- Top.
top: 1
# A plain comment is no description.
plain: 2
nested:
  # -- Inner,
  # two lines.
  inner: 3
  other: 4
"""
    assert generator.value_descriptions(text) == {
        "top": "Top.",
        "nested.inner": "Inner, two lines.",
    }
    rows = list(
        generator._value_rows(
            {"top": 1, "plain": 2, "nested": {"inner": 3, "other": 4}},
            generator.value_descriptions(text),
        )
    )
    assert [row[0] for row in rows] == ["`top`", "`plain`", "`nested.inner`", "`nested.other`"]


def test_every_chart_value_is_in_the_table() -> None:
    import yaml

    def leaves(values: dict[str, object], prefix: str = "") -> list[str]:
        found = []
        for key, value in values.items():
            if isinstance(value, dict) and value:
                found += leaves(value, f"{prefix}{key}.")  # type: ignore[arg-type]
            else:
                found.append(f"{prefix}{key}")
        return found

    table = generator.render_chart_values()
    for leaf in leaves(yaml.safe_load(generator.VALUES.read_text())):
        # A described mapping is one row: its leaves are then inside that row's default.
        assert f"`{leaf}`" in table or any(
            f"`{leaf.rsplit('.', depth)[0]}`" in table for depth in range(1, leaf.count(".") + 1)
        ), leaf


def test_the_tree_check_finds_missing_paths_and_unnamed_modules(tmp_path: pathlib.Path) -> None:
    (tmp_path / "src" / "pkg").mkdir(parents=True)
    (tmp_path / "src" / "pkg" / "named.py").write_text("")
    (tmp_path / "src" / "pkg" / "forgotten.py").write_text("")
    markdown = """<!-- checked:tree -->
```
src/pkg/
├── named.py     here
├── sub/
│   └── gone.py  removed long ago
tools/absent.py  never there
```
"""
    assert generator.tree_problems(markdown, tmp_path) == [
        "names src/pkg/sub/, which does not exist",
        "names src/pkg/sub/gone.py, which does not exist",
        "names tools/absent.py, which does not exist",
        "does not name src/pkg/forgotten.py",
    ]


def test_memory_figures_in_the_docs_are_the_committed_results() -> None:
    figures = generator.memory_figures()
    install = (ROOT / "docs" / "install.md").read_text()
    assert f"{figures['idle']:.0f} MiB RSS idle" in install
    for path in (
        ROOT / "charts" / "intel-deviceplugin-operator" / "values.yaml",
        ROOT / "deployments" / "operator" / "manager" / "manager.yaml",
    ):
        assert "94 MiB" not in path.read_text(), path


@pytest.mark.parametrize(
    ("converged", "steady", "shown"),
    [(67.2, 66.1, "66\u201367 MiB"), (66.1, 67.2, "66\u201367 MiB"), (66.4, 65.6, "66 MiB")],
)
def test_the_memory_at_convergence_reads_as_a_low_high_range(
    monkeypatch: pytest.MonkeyPatch, converged: float, steady: float, shown: str
) -> None:
    figures = {
        **generator.memory_figures(),
        "converged": converged,
        "steady": steady,
    }
    monkeypatch.setattr(generator, "memory_figures", lambda: figures)
    assert f"{shown} with 8 resources" in generator.render_memory()
