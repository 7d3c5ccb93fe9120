"""The README's Python example runs as written (skipped outside a source tree)."""

import pathlib
import re

import pytest

README = pathlib.Path(__file__).resolve().parents[2] / "README.md"


def test_readme_python_example(capsys):
    if not README.exists():
        pytest.skip("README.md not beside the tests")
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.DOTALL)
    assert blocks, "README.md has no python example"
    exec(compile(blocks[0], "README.md", "exec"), {})  # noqa: S102 -- the README example itself
    out = capsys.readouterr().out
    assert re.match(r"\d+ voxels -> \d+ voxels at stride \(2, 2, 2\) \(\d+, 32\)", out), out


def test_readme_torch_example(capsys):
    pytest.importorskip("torch")
    if not README.exists():
        pytest.skip("README.md not beside the tests")
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.DOTALL)
    assert len(blocks) >= 2, "README.md has no lattice.torch example"
    exec(compile(blocks[1], "README.md", "exec"), {})  # noqa: S102 -- the README example itself
    out = capsys.readouterr().out
    assert re.match(r"loss \d+\.\d{3}", out), out
