"""Sphinx configuration for gradbasics. Builds offline; see GRADBASICS_INTERSPHINX below."""

from __future__ import annotations

import logging
import os
import sys
import warnings
from pathlib import Path

from sphinx.application import Sphinx
from sphinx.deprecation import RemovedInSphinx10Warning

import gradbasics

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # for _figures.py and _gallery.py

import _gallery as gallery  # noqa: E402

# Quiet builds, hiding nothing of ours: sphinx-autodoc-typehints 3.6.1 (the latest)
# still calls a parser method Sphinx 9 deprecates, once per documented object, and
# myst-parser logs its whole configuration at every build. Only those two are silenced;
# any other warning still fails ``-W``.
warnings.filterwarnings(
    "ignore",
    message=r".*_RstSnippetParser\.set_application' is deprecated",
    category=RemovedInSphinx10Warning,
    module=r"sphinx_autodoc_typehints\.",
)


class _NoMystConfigDump(logging.Filter):
    """Drop myst-parser's "myst vX: MdParserConfig(...)" line; keep its warnings."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.levelno == logging.INFO and "myst v" in str(record.msg))


logging.getLogger("sphinx.myst_parser.sphinx_ext.main").addFilter(_NoMystConfigDump())

project = "gradbasics"
author = "gradbasics maintainers"
copyright = "2026, gradbasics maintainers"
release = gradbasics.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.doctest",
    "sphinx.ext.mathjax",
    "sphinx-mathjax-offline",  # MathJax 3 copied into _static: formulas render offline
    "sphinx_gallery.gen_gallery",  # the examples, run at build time, as pages
    "sphinx.ext.viewcode",
    "sphinx_autodoc_typehints",
    "myst_parser",
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build"]
sphinx_gallery_conf = gallery.CONF  # read by sphinx_gallery.gen_gallery


# Translations (gettext): docs/locale/zh_CN/LC_MESSAGES/PAGE.po, one file per page, built
# with -D language=zh_CN into build/docs/html/zh_CN (see the Makefile's docs target).
locale_dirs = ["locale/"]
gettext_compact = False
gettext_uuid = False
# Code blocks and the gallery's raw HTML titles are messages too: the code's comments are
# translated (tools/zh_code_comments.py copies the code as it is, so the translated
# doctests run the same code).
gettext_additional_targets = ["literal-block", "doctest-block", "raw"]
templates_path = ["_templates"]
html_sidebars = {
    "**": [
        "sidebar/brand.html",
        "sidebar/language.html",  # every page links to itself in the other language
        "sidebar/search.html",
        "sidebar/scroll-start.html",
        "sidebar/navigation.html",
        "sidebar/scroll-end.html",
        "sidebar/variant-selector.html",
    ]
}

nitpicky = True
html_theme = "furo"
html_title = f"gradbasics {release}"
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_typehints_description_target = "documented"  # no bare "None" or undescribed lists
typehints_document_rtype = True
typehints_document_rtype_none = False
typehints_use_signature = False
typehints_use_signature_return = False
napoleon_google_docstring = True
napoleon_numpy_docstring = False
myst_heading_anchors = 3

doctest_global_setup = """
import torch
import gradbasics
torch.manual_seed(0)
"""

# These machines reach no documentation site: cross-links to other projects' docs are
# only made when asked for (GRADBASICS_INTERSPHINX=1); otherwise their names stay plain.
if os.environ.get("GRADBASICS_INTERSPHINX"):
    extensions.append("sphinx.ext.intersphinx")
    intersphinx_mapping = {
        "python": ("https://docs.python.org/3", None),
        "torch": ("https://pytorch.org/docs/stable", None),
        "matplotlib": ("https://matplotlib.org/stable", None),
    }
else:
    nitpick_ignore_regex = [
        ("py:.*", r"(torch|matplotlib|typing_extensions|collections\.abc|typing|os|pathlib)\..*"),
        ("py:class", r"(Tensor|Figure|Generator|Module|Optimizer|Path|nn\..*)"),
        ("py:.*", r"(int|float|str|bool|object|None|list|dict|tuple|type|Any|Callable)"),
    ]


def _make_figures(app: Sphinx) -> None:
    """Draw every figure of the docs from gradbasics itself, at build time.

    Once per change: ``make docs`` runs five builds (and the test suite two more), and
    drawing takes about 20 s. The figures are drawn again when ``_figures.py``, a source
    of the package or the pinned versions changed since they were last drawn, or one is
    missing (the stamp lists them).
    """
    from _figures import build_all

    out, root = HERE / "_generated", HERE.parent
    stamp = out / ".drawn"
    sources = [HERE / "_figures.py", root / "constraints" / "dev.txt",
               *(root / "src" / "gradbasics").rglob("*.py")]  # fmt: skip
    if stamp.is_file():
        drawn = stamp.read_text().split()
        newest = max(p.stat().st_mtime for p in sources if p.is_file())
        if drawn and all((out / n).is_file() for n in drawn) and stamp.stat().st_mtime > newest:
            return
    stamp.unlink(missing_ok=True)
    build_all(out)
    stamp.write_text("\n".join(sorted(p.name for p in out.glob("*.png"))) + "\n")


TRANSLATED = HERE / "locale" / "zh_CN" / "LC_MESSAGES"
NOTICE = (
    '<div class="admonition note"><p class="admonition-title">注意</p>'
    "<p>本页暂无中文翻译，以下是英文原文。</p></div>\n"  # noqa: RUF001
)


def _notice_untranslated(
    app: Sphinx, pagename: str, templatename: str, context: dict[str, object], doctree: object
) -> None:
    """Say so at the top of a page of the Chinese build that has no translation."""
    if app.config.language != "zh_CN" or not isinstance(context.get("body"), str):
        return
    if pagename.startswith("_modules") or (TRANSLATED / f"{pagename}.po").is_file():
        return
    context["body"] = NOTICE + str(context["body"])


def setup(app: Sphinx) -> None:
    """Register the figure generation and the notice on untranslated pages with Sphinx."""
    app.connect("builder-inited", _make_figures)
    app.connect("html-page-context", _notice_untranslated)
