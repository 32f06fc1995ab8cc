"""The built docs read offline: nothing loaded from the network, formulas rendered.

No page loads a script, stylesheet, image or font from the network, and the formulas
render in a headless browser that cannot reach the network.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs"
BROWSER = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def html(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The HTML docs, built once for this module (as ``make docs`` builds them)."""
    out = tmp_path_factory.mktemp("html")
    result = subprocess.run(
        [sys.executable, "-m", "sphinx", "-q", "-b", "html", str(DOCS), str(out)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    return out


def test_no_page_loads_a_script_stylesheet_or_font_from_the_network(html: Path) -> None:
    pages = sorted(html.glob("*.html"))
    assert len(pages) >= 8
    remote = re.compile(r"<(?:script|link|img)\b[^>]*(?:src|href)=\"(?:https?:)?//", re.I)
    for page in pages:
        text = page.read_text()
        assert not remote.search(text), page.name
        for css in re.findall(r'<link[^>]*href="([^"]+\.css)[^"]*"', text):
            sheet = (html / css).read_text()
            assert not re.search(r"url\((['\"]?)(?:https?:)?//", sheet), (page.name, css)
    tutorial = (html / "tutorial.html").read_text()
    src = re.search(r'<script[^>]*src="(_static/mathjax/[^"]+)"', tutorial)
    assert src is not None, "MathJax is not loaded from the docs' own _static folder"
    assert (html / src.group(1)).is_file()


@pytest.mark.skipif(BROWSER is None, reason="no chromium here: apt-get install chromium")
def test_formulas_render_in_a_browser_without_network(html: Path, tmp_path: Path) -> None:
    assert BROWSER is not None
    dom = subprocess.run(
        [
            BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--host-resolver-rules=MAP * ~NOTFOUND", "--proxy-server=127.0.0.1:9",
            f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=20000",
            "--dump-dom", (html / "tutorial.html").as_uri(),
        ],
        capture_output=True, text=True, timeout=120,
    ).stdout  # fmt: skip
    rendered = dom.count("<mjx-container")
    text = re.sub(r"<[^>]+>", " ", re.sub(r"<script.*?</script>", "", dom, flags=re.S))
    raw = re.findall(r"\\\(|\\\[|\\frac|\\leftarrow", text)
    assert rendered >= 20, f"only {rendered} formulas rendered"
    assert raw == [], f"formulas left as raw TeX: {raw[:5]}"
