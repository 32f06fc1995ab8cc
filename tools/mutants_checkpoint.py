"""Mutants of the checkpoint files' third red-team fixes (run by tools/mutate.py).

Each is a fix undone, or a check forgotten: exports onto the checkpoint itself, stray
temporary files, folders that cannot be read, damaged and newer files.
"""

from __future__ import annotations

S = "src/gradbasics/"
BUGS = ["tests/test_checkpoint_bugs3.py"]

# (file, original text, mutated text, test files that guard it)
MUTANTS: list[tuple[str, str, str, list[str]]] = [
    (S + "checkpoint.py", "    if same_file(source, target):", "    if source == target:", BUGS),
    (S + "_ckptio.py", "        return os.path.samefile(a, b)", "        return False", BUGS),
    (
        S + "_ckptio.py",
        "    except (PermissionError, OverflowError):",
        "    except PermissionError:",
        BUGS,
    ),
    (
        S + "_ckptio.py",
        "            found = [e.name for e in entries if e.name.startswith(prefix)]",
        '            found = [p.name for p in folder.glob(f"{prefix}*.tmp")]',
        BUGS,
    ),
    (
        S + "_ckptio.py",
        "        dir_fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)\n    except OSError:",
        "        dir_fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)\n"
        "    except FileNotFoundError:",
        BUGS,
    ),
    (
        S + "_ckptio.py",
        "    except Exception as exc:  # damaged bytes fail in many ways (IndexError",
        "    except (RuntimeError, EOFError, OSError, ValueError) as exc:  # (IndexError",
        BUGS,
    ),
    (
        S + "_ckptio.py",
        "    except Exception as exc:  # damaged bytes fail in many ways (NotImplementedError",
        "    except (zipfile.BadZipFile, ValueError, OSError) as exc:  # (NotImplementedError",
        BUGS,
    ),
    (
        S + "_ckptio.py",
        "    if fmt is None or (type(fmt) is int and 1 <= fmt <= FORMAT):",
        "    if fmt is None or (type(fmt) is int and 1 <= fmt):",
        BUGS,
    ),
    (S + "_ckptio.py", "    _check_format(data, path)\n    return data", "    return data", BUGS),
    (S + "_ckptio.py", "    if sound:", "    if True:", BUGS),
    (
        S + "_ckptio.py",
        "    elif exc.errno == errno.ENOENT and folder is not None and not folder.is_dir():",
        "    elif False:",
        BUGS,
    ),
    (S + "_ckptio.py", "            if sealed:", "            if True:", BUGS),
]
