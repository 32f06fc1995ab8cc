"""Fail when a translated page of the docs has an untranslated or fuzzy message.

Usage: python tools/check_translations.py GETTEXT_DIR LOCALE_DIR

GETTEXT_DIR holds the message templates (``PAGE.pot``) that ``sphinx -b gettext`` wrote
from the current English sources; LOCALE_DIR holds the translations
(``docs/locale/zh_CN/LC_MESSAGES/PAGE.po``). A page is translated when it has a ``.po``
file; every message of its template must then have a translation that is not fuzzy, so
an English paragraph changed without its translation fails the build. Pages without a
``.po`` file stay in English in the translated build.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from babel.messages.pofile import read_po

THEME = "sphinx"  # sphinx.po translates the theme's labels, not a page
FULL_WIDTH = "，。；：！？、（）“”‘’《》【】「」…"  # noqa: RUF001 (Chinese punctuation)
MARKUP = r"``|`|\*|:[a-z:]+:`"
# Chinese typography: inline markup touches full-width punctuation without a space (the
# space would show), and a sentence ends in a full-width colon, not ASCII "::".
SPACED = re.compile(rf"[{FULL_WIDTH}] +(?={MARKUP})|(?<=[`*]) +[{FULL_WIDTH}]")
# reStructuredText does not see markup that ends right before an opening bracket or starts
# right after a closing one: the span runs on silently. "\\ " (an escaped space) joins.
UNSEEN = re.compile(r"[`*][（《【「〈]|[）》】」〉](?:``|:[a-z:]+:`|\*)")  # noqa: RUF001
ASCII_COLON = re.compile(r"[\u3400-\u9fff{FULL_WIDTH}]::?$".replace("{FULL_WIDTH}", FULL_WIDTH))
CODE = (">>> ", "pip install", "git clone", "python examples/")


def problems(gettext_dir: Path, locale_dir: Path) -> list[str]:
    """Every untranslated or fuzzy message of every translated page, as a sentence."""
    found: list[str] = []
    translated = sorted(p for p in locale_dir.rglob("*.po") if p.stem != THEME)
    if not translated:
        found.append(f"{locale_dir} holds no translated page (.po file).")
    for po_path in translated:
        page = po_path.relative_to(locale_dir).with_suffix("")
        pot_path = gettext_dir / page.with_suffix(".pot")
        if not pot_path.is_file():
            found.append(f"{page}: translated, but the docs have no such page ({pot_path}).")
            continue
        with pot_path.open("rb") as fh:
            wanted = [m.id for m in read_po(fh) if m.id]
        with po_path.open("rb") as fh:
            catalog = read_po(fh)
        for msgid in wanted:
            message = catalog.get(msgid)
            short = str(msgid)[:60].replace("\n", " ")
            if message is None or not message.string:
                found.append(f"{page}: untranslated message {short!r}")
            elif message.fuzzy:
                found.append(f"{page}: fuzzy message {short!r}")
            else:
                found.extend(f"{page}: {p} in {short!r}" for p in typography(str(message.string)))
    return found


def typography(text: str) -> list[str]:
    """What a translated (non-code) message does against the Chinese typography rules."""
    if text.startswith(CODE):
        return []
    found = [f"a space between full-width punctuation and markup ({m.group()!r})"
             for m in SPACED.finditer(text)]  # fmt: skip
    found += [f"markup touching a bracket ({m.group()!r}), which hides it: join with '\\ '"
              for m in UNSEEN.finditer(text)]  # fmt: skip
    if ASCII_COLON.search(text):
        found.append("an ASCII colon after Chinese text (write a full-width colon)")
    return found


def main(argv: list[str]) -> int:
    """Print the problems found and return 1 if there are any, else 0."""
    if len(argv) != 2:
        print(__doc__.splitlines()[2], file=sys.stderr)
        return 2
    found = problems(Path(argv[0]), Path(argv[1]))
    for line in found:
        print(line, file=sys.stderr)
    if found:
        print(
            f"{len(found)} translation problem(s): update with `sphinx-intl update -p "
            f"{argv[0]} -l zh_CN -d docs/locale`, then translate the messages listed.",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
