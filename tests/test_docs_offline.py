"""The built docs read offline: nothing loaded from the network, formulas rendered.

No page loads a script, stylesheet, image or font from the network, and the formulas
render in a headless browser that cannot reach the network.
"""

# ruff: noqa: RUF001  (Chinese text, full-width punctuation on purpose)
from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs"
BROWSER = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def html(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The HTML docs in both languages, built once for this module (as ``make docs`` does).

    ``make check`` builds the docs first and names them in ``GRADBASICS_BUILT_DOCS``;
    they are read from there then, instead of being built a second time.
    """
    built = os.environ.get("GRADBASICS_BUILT_DOCS")
    if built and (Path(built) / "zh_CN" / "index.html").is_file():
        return Path(built)
    out = tmp_path_factory.mktemp("html")
    for language, folder in (("en", out), ("zh_CN", out / "zh_CN")):
        result = subprocess.run(
            [sys.executable, "-m", "sphinx", "-q", "-b", "html", "-D", f"language={language}",
             str(DOCS), str(folder)],
            capture_output=True,
            text=True,
            timeout=600,
        )  # fmt: skip
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
    assert (html / src.group(1).split("?")[0]).is_file()  # "?v=..." (a checksum) aside


@pytest.mark.skipif(BROWSER is None, reason="no chromium here: apt-get install chromium")
@pytest.mark.parametrize("page", ["tutorial.html", "zh_CN/tutorial.html"])
def test_formulas_render_in_a_browser_without_network(
    html: Path, tmp_path: Path, page: str
) -> None:
    assert BROWSER is not None
    dom = subprocess.run(
        [
            BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--host-resolver-rules=MAP * ~NOTFOUND", "--proxy-server=127.0.0.1:9",
            f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=20000",
            "--dump-dom", (html / page).as_uri(),
        ],
        capture_output=True, text=True, timeout=120,
    ).stdout  # fmt: skip
    rendered = dom.count("<mjx-container")
    text = re.sub(r"<[^>]+>", " ", re.sub(r"<script.*?</script>", "", dom, flags=re.S))
    raw = re.findall(r"\\\(|\\\[|\\frac|\\leftarrow", text)
    assert rendered >= 20, f"only {rendered} formulas rendered"
    assert raw == [], f"formulas left as raw TeX: {raw[:5]}"


SWITCH = re.compile(r'<div class="sidebar-language"[^>]*>.*?<a href="([^"]+)"', re.S)


def test_every_page_links_to_itself_in_the_other_language(html: Path) -> None:
    english = sorted(p for p in html.rglob("*.html") if not p.is_relative_to(html / "zh_CN"))
    english = [p for p in english if "_modules" not in p.parts and p.name != "genindex.html"]
    assert len(english) >= 20
    for page in english:
        (there,) = SWITCH.findall(page.read_text())
        other = (page.parent / there).resolve()
        assert other == (html / "zh_CN" / page.relative_to(html)).resolve(), page
        assert other.is_file(), there
        (back,) = SWITCH.findall(other.read_text())
        assert (other.parent / back).resolve() == page.resolve(), other


def test_the_chinese_pages_translate_the_text_and_keep_the_code(html: Path) -> None:
    from babel.messages.pofile import read_po

    locale = DOCS / "locale" / "zh_CN" / "LC_MESSAGES"
    pages = sorted(p.stem for p in locale.glob("*.po") if p.stem != "sphinx")  # sphinx: theme
    assert pages == ["classify", "examples", "guide", "index", "pitfalls", "tutorial"]
    for page in pages:
        en, zh = (html / f"{page}.html").read_text(), (html / "zh_CN" / f"{page}.html").read_text()
        with (locale / f"{page}.po").open("rb") as fh:
            plain = [m.string for m in read_po(fh) if m.id and m.string != m.id]
        heading = next(t for t in plain if not re.search(r"[`:*\\\n]", str(t)))  # plain text
        assert f">{heading}<" in zh and f">{heading}<" not in en, (page, heading)
        assert 'lang="zh-CN"' in zh.split(">", 2)[1]  # the <html> element
        code = re.compile(r'<div class="highlight[^"]*"><pre>(.*?)</pre>', re.S)
        comment = re.compile(r'<span class="c1">#[^<]*</span>')  # translated, the rest not
        en_code, zh_code = code.findall(en), code.findall(zh)
        assert [comment.sub("#", c) for c in zh_code] == [comment.sub("#", c) for c in en_code]
        assert len(en_code) >= 1
        en_notes, zh_notes = comment.findall("".join(en_code)), comment.findall("".join(zh_code))
        if page != "examples":  # its one block has no comment
            assert any(re.search(r"[\u4e00-\u9fff]", c) for c in zh_notes), page
            assert not any(re.search(r"[\u4e00-\u9fff]", c) for c in en_notes), page


def test_pages_left_in_english_say_so_in_the_chinese_build(html: Path) -> None:
    notice = "本页暂无中文翻译"
    assert notice in (html / "zh_CN" / "api.html").read_text()
    assert notice in (html / "zh_CN" / "performance.html").read_text()
    assert notice not in (html / "zh_CN" / "tutorial.html").read_text()
    assert notice not in (html / "api.html").read_text()


def test_the_theme_labels_are_chinese_in_the_chinese_build(html: Path) -> None:
    zh, en = (html / "zh_CN" / "tutorial.html").read_text(), (html / "tutorial.html").read_text()
    for english, chinese in (("Back to top", "回到顶部"), ("On this page", "本页内容")):
        assert english in en and chinese not in en
        assert chinese in zh and english not in zh, english


def test_the_typography_check_flags_spaces_at_full_width_punctuation() -> None:
    check = _load_tool("check_translations")
    assert len(check.typography("在设备上。 ``.to(device)`` （或 ``x`` ）")) == 3
    assert check.typography("在设备上。``.to(device)``，或（``x``）用 :func:`f` 做") == []
    assert check.typography("检查）::") and check.typography("如下:")
    assert check.typography("See below::") == []
    assert len(check.typography("用 ``--device cpu``（默认）或（a）``b`` 做")) == 2
    assert check.typography("用 ``--device cpu``\\ （默认）") == []
    assert check.typography(">>> x = 1  # 任务 2：1, 1.02") == []  # code is left alone


def test_the_translation_check_flags_untranslated_and_fuzzy_messages(tmp_path: Path) -> None:
    from babel.messages.catalog import Catalog
    from babel.messages.pofile import write_po

    check = _load_tool("check_translations")
    (tmp_path / "pot").mkdir()
    (tmp_path / "po").mkdir()
    template, done = Catalog(), Catalog(locale="zh_CN")
    for msgid in ("Loss", "Gradient", "Learning rate"):
        template.add(msgid)
    done.add("Loss", "损失")
    done.add("Gradient", "梯度", flags=["fuzzy"])
    with (tmp_path / "pot" / "page.pot").open("wb") as fh:
        write_po(fh, template)
    with (tmp_path / "po" / "page.po").open("wb") as fh:
        write_po(fh, done)
    found = check.problems(tmp_path / "pot", tmp_path / "po")
    assert found == [
        "page: fuzzy message 'Gradient'",
        "page: untranslated message 'Learning rate'",
    ]
    done["Gradient"].flags.discard("fuzzy")
    done.add("Learning rate", "学习率")
    with (tmp_path / "po" / "page.po").open("wb") as fh:
        write_po(fh, done)
    assert check.problems(tmp_path / "pot", tmp_path / "po") == []


def _load_tool(name: str) -> Any:
    spec = importlib.util.spec_from_file_location(name, DOCS.parent / "tools" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
