"""The examples gallery: each numbered script runs at build time, offline.

Scripts that draw a figure take ``--out PATH``; the gallery passes a path in a scratch
folder and shows the PNG found there under the script's output.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
EXAMPLES = HERE.parent / "examples"
SCRATCH = Path(tempfile.mkdtemp(prefix="gradbasics-gallery-"))
WITH_FIGURE = {"08_train_only_w2.py", "12_train_your_own_model.py", "14_classify_digits.py"}

sys.path.insert(0, str(EXAMPLES))  # the scripts import their shared _common.py


def argv(gallery_conf: dict[str, Any], script_vars: dict[str, Any]) -> list[str]:
    """The command line each script runs with: ``--out`` for those that draw."""
    name = Path(script_vars["src_file"]).name
    return ["--out", str(SCRATCH / f"{name}.png")] if name in WITH_FIGURE else []


def png_scraper(block: Any, block_vars: dict[str, Any], gallery_conf: dict[str, Any]) -> str:
    """Show the PNG a script wrote to its ``--out`` path (gradbasics returns bare Figures)."""
    from sphinx_gallery.scrapers import figure_rst

    written = SCRATCH / f"{Path(block_vars['src_file']).name}.png"
    if not written.exists():
        return ""
    target = Path(next(block_vars["image_path_iterator"]))
    shutil.move(written, target)
    return figure_rst([str(target)], gallery_conf["src_dir"])


CONF: dict[str, Any] = {
    "examples_dirs": str(EXAMPLES),
    "gallery_dirs": str(HERE / "gallery"),
    "filename_pattern": r"/\d\d_",
    "within_subsection_order": "FileNameSortKey",
    "ignore_pattern": r"_common\.py|ddp_train\.py",
    "image_scrapers": ("_gallery.png_scraper",),
    "reset_argv": "_gallery.argv",
    "abort_on_example_error": True,
    "download_all_examples": False,
    "write_computation_times": False,
    "show_memory": False,
    "show_signature": False,
    "remove_config_comments": True,
}
