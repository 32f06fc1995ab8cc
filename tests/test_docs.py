"""The docs cover the whole public API."""

from __future__ import annotations

import re
from pathlib import Path

import gradbasics

DOCS = Path(__file__).resolve().parents[1] / "docs"


def test_every_public_name_is_in_the_api_reference() -> None:
    text = (DOCS / "api.rst").read_text()
    names = re.findall(r"^\.\. (?:auto\w+|py:\w+):: ([\w.]+)", text, flags=re.M)
    documented = {name.rsplit(".", 1)[-1] for name in names}  # gradbasics.rules: rules
    missing = sorted(set(gradbasics.__all__) - documented)
    assert missing == [], f"missing from docs/api.rst: {missing}"


def test_every_example_is_listed_in_the_docs() -> None:
    listed = (DOCS / "examples.rst").read_text()
    scripts = sorted(p.name for p in (DOCS.parent / "examples").glob("[0-9][0-9]_*.py"))
    assert scripts
    for script in scripts:
        assert f"``{script}``" in listed, script
