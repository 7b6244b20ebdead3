"""Packing local files for other machines: a directory or a module, zipped by content.

    pack(path, excludes, limit) ──▶ Packed(data, digest, files, size)   (the sender)
    unpack_into(data, dest)     ──▶ dest/ made whole, atomically          (each node)

What is left out: ``.git``, ``__pycache__``, ``*.pyc``, ``.ipynb_checkpoints``, what a
``.gitignore`` in the directory or any folder under it names, and ``excludes``
(gitignore patterns relative to the directory: ``data/``, ``*.parquet``,
``/build``, ``**/tmp``, ``!keep.txt``). The zip is the same bytes for the same
content (names sorted, dates fixed), so its hash names it: a node that has it
unpacked already never fetches it again.

``limit`` bounds the bytes of the files kept, checked before any is read; going over
raises ``PackTooLargeError`` naming the size, the limit, the largest entries and how to
leave them out.
"""

from __future__ import annotations

import fnmatch
import hashlib
import io
import os
import re
import shutil
import stat
import zipfile
from typing import NamedTuple

from .errors import KitError

ALWAYS_OUT = (".git/", "__pycache__/", "*.pyc", ".ipynb_checkpoints/", ".DS_Store")
_DATE = (1980, 1, 1, 0, 0, 0)


class PackTooLargeError(KitError, ValueError):
    """What would be shipped is over its size limit; the message names the fix."""


class Packed(NamedTuple):
    """A packed directory or module: the zip's bytes, their hash, files and bytes kept."""

    data: bytes
    digest: str
    files: int
    size: int


def _rule(pattern: str):
    """One gitignore line as ``(regex, negated, only_dirs)``, or None (blank, comment)."""
    line = pattern.rstrip("\n").rstrip()
    if not line or line.startswith("#"):
        return None
    negated = line.startswith("!")
    if negated:
        line = line[1:]
    only_dirs = line.endswith("/")
    line = line.strip("/") if only_dirs else line
    anchored = "/" in line.lstrip("/") or pattern.lstrip("!").startswith("/")
    line = line.lstrip("/")
    parts = []
    i = 0
    while i < len(line):
        if line.startswith("**/", i):
            parts.append("(?:.*/)?")
            i += 3
        elif line.startswith("/**", i) and i + 3 == len(line):
            parts.append("/.*")
            i += 3
        elif line[i] == "*":
            parts.append("[^/]*")
            i += 1
        elif line[i] == "?":
            parts.append("[^/]")
            i += 1
        elif line[i] == "[":
            j = line.find("]", i)
            if j < 0:
                parts.append(re.escape(line[i]))
                i += 1
            else:
                parts.append(fnmatch.translate(line[i : j + 1])[4:-3])
                i = j + 1
        else:
            parts.append(re.escape(line[i]))
            i += 1
    body = "".join(parts)
    regex = re.compile(("" if anchored else "(?:.*/)?") + body + "$")
    return regex, negated, only_dirs


class Ignore:
    """gitignore rules, each scoped to the folder that holds it (``base``, relative).

    Example:
        >>> ig = Ignore(["data/", "*.bin", "!keep.bin"])
        >>> ig.excluded("data", True), ig.excluded("x/a.bin", False), ig.excluded("keep.bin", False)
        (True, True, False)
    """

    def __init__(self, patterns=(), base=""):
        self.rules = []
        self.add(patterns, base)

    def add(self, patterns, base=""):
        for p in patterns:
            r = _rule(p)
            if r is not None:
                self.rules.append((base, *r))

    def excluded(self, rel: str, is_dir: bool) -> bool:
        out = False
        for base, regex, negated, only_dirs in self.rules:
            if base:
                if not rel.startswith(base + "/"):
                    continue
                sub = rel[len(base) + 1 :]
            else:
                sub = rel
            if only_dirs and not is_dir:
                continue
            if regex.match(sub):
                out = not negated
        return out


def _gitignore(path):
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read().splitlines()
    except OSError:
        return []


def walk(root: str, excludes=()) -> list:
    """The files of ``root`` that ship: ``[(relative path, absolute path, size)]``, sorted.

    Example:
        >>> import tempfile
        >>> d = tempfile.mkdtemp(); _ = open(os.path.join(d, "a.py"), "w").write("x = 1")
        >>> [rel for rel, _, _ in walk(d)]
        ['a.py']
    """
    ignore = Ignore(ALWAYS_OUT)
    ignore.add(excludes)
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root)
        rel_dir = "" if rel_dir == "." else rel_dir.replace(os.sep, "/")
        if ".gitignore" in filenames:
            ignore.add(_gitignore(os.path.join(dirpath, ".gitignore")), rel_dir)
        keep = []
        for d in sorted(dirnames):
            rel = f"{rel_dir}/{d}" if rel_dir else d
            if not ignore.excluded(rel, True) and not os.path.islink(os.path.join(dirpath, d)):
                keep.append(d)
        dirnames[:] = keep
        for name in sorted(filenames):
            rel = f"{rel_dir}/{name}" if rel_dir else name
            full = os.path.join(dirpath, name)
            if ignore.excluded(rel, False):
                continue
            try:
                st = os.stat(full)
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode):
                out.append((rel, full, st.st_size))
    out.sort()
    return out


def _size_text(n: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def size_text(n: float) -> str:
    """Bytes for people: ``size_text(3 << 20)`` is ``'3.0 MiB'``."""
    return _size_text(n)


def pack(path: str, excludes=(), limit=None, what="the directory", prefix="") -> Packed:
    """Zip a directory's files (or one file) deterministically; see the module docstring.

    Args:
        path: a directory, or a single file (a module).
        excludes: gitignore patterns to leave out, relative to ``path``.
        limit: most bytes of files kept (None: no limit).
        what: how the error names it, e.g. "runtime_env['working_dir'] /home/me/proj".
        prefix: a folder the files go under inside the zip (a package's name).

    Raises:
        PackTooLargeError: over ``limit``; names the size, the limit, the largest files
            and the ``excludes`` or ``.gitignore`` fix.
        FileNotFoundError: ``path`` does not exist.

    Example:
        >>> import tempfile
        >>> d = tempfile.mkdtemp(); _ = open(os.path.join(d, "a.py"), "w").write("x = 1")
        >>> p = pack(d); p.files, p.size, len(p.digest)
        (1, 5, 32)
    """
    path = os.path.abspath(path)
    if os.path.isdir(path):
        entries = walk(path, excludes)
    elif os.path.isfile(path):
        entries = [(os.path.basename(path), path, os.path.getsize(path))]
    else:
        raise FileNotFoundError(f"{what}: {path} does not exist")
    total = sum(size for _, _, size in entries)
    if limit is not None and total > limit:
        biggest = _biggest(entries)
        raise PackTooLargeError(
            f"{what} is {_size_text(total)} ({len(entries)} files), over the limit of "
            f"{_size_text(limit)}; the largest: {biggest}. Leave files out with "
            f"runtime_env['excludes'] (gitignore patterns, e.g. ['data/', '*.parquet']) or "
            f"a .gitignore there, and send data with kit.sync(path); or raise the limit "
            f"with KIT_RUNTIME_ENV_LIMIT (bytes)"
        )
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as z:
        for rel, full, _ in entries:
            info = zipfile.ZipInfo(prefix + rel, _DATE)
            mode = os.stat(full).st_mode
            info.external_attr = (0o755 if mode & 0o111 else 0o644) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            with open(full, "rb") as f:
                z.writestr(info, f.read(), compresslevel=1)
    data = buf.getvalue()
    return Packed(data, hashlib.blake2b(data, digest_size=16).hexdigest(), len(entries), total)


def _biggest(entries, n=3) -> str:
    """The largest folders or files among ``entries``, for an error message."""
    by_top: dict = {}
    for rel, _, size in entries:
        top = rel.split("/", 1)[0] + ("/" if "/" in rel else "")
        by_top[top] = by_top.get(top, 0) + size
    top = sorted(by_top.items(), key=lambda kv: -kv[1])[:n]
    return ", ".join(f"{name} {_size_text(size)}" for name, size in top)


def unpack_into(data: bytes, dest: str) -> str:
    """Unzip ``data`` into the new directory ``dest``, whole or not at all; return ``dest``.

    Extracts beside it first and renames: a reader never sees half of it. A name that
    would land outside ``dest`` (absolute, or with ``..``) is refused.

    Raises:
        ValueError: the zip holds a name outside ``dest``.
    """
    parent = os.path.dirname(dest)
    tmp = f"{dest}.part-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp, mode=0o700)
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            for info in z.infolist():
                name = info.filename
                if name.startswith("/") or ".." in name.split("/"):
                    raise ValueError(f"refusing to unpack {name!r}: it leads outside {dest}")
                target = os.path.join(tmp, name)
                os.makedirs(os.path.dirname(target), exist_ok=True)
                with z.open(info) as src, open(target, "wb") as out:
                    shutil.copyfileobj(src, out)
                if (info.external_attr >> 16) & 0o111:
                    os.chmod(target, 0o755)
        os.makedirs(parent, exist_ok=True)
        try:
            os.rename(tmp, dest)
        except OSError:  # someone else finished it first: theirs is as good
            if not os.path.isdir(dest):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest
