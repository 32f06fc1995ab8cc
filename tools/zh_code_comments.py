"""Fill the translations of the docs' code blocks: the code as it is, the comments in Chinese.

Usage: python tools/zh_code_comments.py [LOCALE_DIR]

Code blocks are gettext messages (``gettext_additional_targets`` in docs/conf.py), so a
translated page shows its code comments in Chinese while the code, and the doctests'
expected output, stay byte for byte what the English page runs. For every message that
is a code block, this writes its translation: the code copied, each comment replaced by
its entry in COMMENTS. A comment missing from COMMENTS is reported and the message left
untranslated, so ``make docs`` (tools/check_translations.py) fails until it is added.
Run it after ``sphinx-intl update``; it never touches prose messages.
"""

# ruff: noqa: RUF001  (the Chinese comments use full-width punctuation on purpose)
from __future__ import annotations

import re
import sys
from pathlib import Path

from babel.messages.pofile import read_po, write_po

LOCALE = Path(__file__).resolve().parents[1] / "docs/locale/zh_CN/LC_MESSAGES"
CODE_START = (">>> ", "pip install", "git clone", "python examples/")
# A comment: "#" after two spaces (the house style), or at the start of a line.
COMMENT = re.compile(r"(?:(?<=  )|^)# (.*)$")
KEEP = re.compile(r"^(doctest: .*|fmt: skip|\(.*\)|\[.*\]|[\d\s*+\-/=.,]+|x -> .*)$")

COMMENTS: dict[str, str] = {
    # tutorial
    "2 * 9520: accumulated, not replaced": "2 * 9520：梯度被累加，而不是被替换",
    "it stopped at step 58 of 100": "在 100 步中的第 58 步停止",
    "the first step moves by about lr": "第一步大约移动 lr",
    "the layer's initial weights": "这一层的初始权重",
    "the layers' initial weights": "各层的初始权重",
    "d z / d w sees y as a constant 6": "求 d z / d w 时把 y 当作常数 6",
    "task 2 again, as in section 9": "再做一次任务 2，和第 9 节一样",
    "task 2: 1, 1.02, 1.0396": "任务 2：1, 1.02, 1.0396",
    "one line per epoch": "每个 epoch 一行",
    "a fixed batch": "一个固定的批次",
    "(epochs, units)": "(epoch 数, 单元数)",
    # guide
    "the initial weights": "初始权重",
    "inference: dropout off": "推理：关闭 dropout",
    "val='s batches": "val= 的批次",
    "it sets self.loop.lr": "它会设置 self.loop.lr",
    "what a resumed run must share": "恢复训练时必须保持不变的设置",
    "saved in every checkpoint": "保存在每个检查点里",
    # index
    "needs torch >= 2.11": "需要 torch >= 2.11",
    "+ matplotlib, for the charts": "外加 matplotlib，用于画图",
    "+ tqdm, for progress bars": "外加 tqdm，用于进度条",
    "the built wheel": "构建好的 wheel",
    "installs and runs `gradbasics demo`": "安装并运行 `gradbasics demo`",
    "installs the dev tools and runs every check (tests, types, lint, docs)": (
        "安装开发工具并运行全部检查（测试、类型、lint、文档）"
    ),
    "closed form": "闭式解",
    # pitfalls
    "left over from an earlier step": "上一步遗留下来的",
    "the graph saves w for the backward pass": "计算图为反向传播保存了 w",
    "w.data -= 1.0 * w.grad: w is now 2": "w.data -= 1.0 * w.grad：w 现在是 2",
    "should be 2 * 3 = 6": "应该是 2 * 3 = 6",
    "should be 0": "应该是 0",
    "10 syncs": "10 次同步",
    "1 sync": "1 次同步",
    # classify
    "(1797, 64) pixels in [0, 1]": "(1797, 64) 像素值在 [0, 1] 内",
    "(1797,) int64 labels 0..9": "(1797,) int64 标签 0..9",
    "every digit is in the validation rows": "验证集里每个数字都有",
    "the model is unchanged": "模型没有被改变",
    "the units dead for the last 3 epochs": "最后 3 个 epoch 都死亡的单元",
    "per epoch and unit: (epochs, 32)": "按 epoch 和单元：(epoch 数, 32)",
    "units at 0 on every row, each epoch": "每个 epoch 中对所有行都输出 0 的单元数",
    "(360,) labels": "(360,) 个标签",
    "the same initial weights as above": "和上面相同的初始权重",
    "dead at the start": "一开始就死亡的单元",
}


def translate(code: str, missing: set[str]) -> str | None:
    """The code with its comments in Chinese, or None when a comment has no entry."""
    out = []
    for line in code.split("\n"):
        match = COMMENT.search(line)
        text = match.group(1) if match else None
        if text is not None and text in COMMENTS:
            out.append(line[: match.start(1)] + COMMENTS[text])  # type: ignore[union-attr]
        elif text is None or KEEP.match(text):
            out.append(line)
        else:
            missing.add(text)
            return None
    return "\n".join(out)


def main(argv: list[str]) -> int:
    """Fill every code message of every .po file under the locale folder."""
    locale = Path(argv[0]) if argv else LOCALE
    missing: set[str] = set()
    for path in sorted(locale.glob("*.po")):
        with path.open("rb") as fh:
            catalog = read_po(fh)
        changed = False
        for message in catalog:
            code = str(message.id)
            if not message.id or not code.startswith(CODE_START):
                continue
            filled = translate(code, missing)
            if filled is not None and (message.string != filled or message.fuzzy):
                message.string, changed = filled, True
                message.flags.discard("fuzzy")
                message.previous_id = []
        if changed:
            with path.open("wb") as fh:
                write_po(fh, catalog, width=76)  # as sphinx-intl writes them
    for text in sorted(missing):
        print(f"no translation for the code comment {text!r}: add it to COMMENTS", file=sys.stderr)
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
