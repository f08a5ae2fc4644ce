"""Training text for the zoo, cut from the Python standard library installed on this machine.

No downloads: every model in the zoo is trained on text found under
``sysconfig.get_paths()["stdlib"]``.  The ``.py`` files are listed, sorted, then visited in a
fixed pseudo-random order (sorted by SHA-256 of ``salt`` + the relative path) so that every domain
samples the whole library rather than its alphabetical head; another ``salt`` cuts other slices
(zoo B's corpus; zoo A's salt is empty).  Each file lands in exactly one group:

* ``tests``  -- files under a ``test``/``tests``/``idle_test`` folder, raw source;
* ``web``    -- email, http, urllib, xml, json, html, wsgiref, xmlrpc, raw source;
* ``async``  -- asyncio, concurrent, multiprocessing and the threading/socket modules, raw source;
* ``tools``  -- idlelib, tkinter, turtledemo, lib2to3, distutils, ensurepip, venv, raw source;
* the rest (general modules) feeds two domains: ``code`` (the source with every docstring and
  comment removed, via ``ast`` round-trip) and ``prose`` (those docstrings and comments alone,
  via ``ast.get_docstring`` and ``tokenize`` COMMENT tokens).

Every domain is capped at ``chars_per_domain`` characters (and each file at ``chars_per_file``)
and the result carries a SHA-256 over all domains: the corpus hash that enters the zoo's recipe
hash, so a different Python build gives a different (and correctly re-built) zoo.
"""

from __future__ import annotations

import ast
import hashlib
import io
import sysconfig
import tokenize
from dataclasses import dataclass
from pathlib import Path

DOMAINS = ("code", "prose", "tests", "web", "async", "tools")

_WEB = {"email", "http", "urllib", "xml", "json", "html", "wsgiref", "xmlrpc"}
_ASYNC = {
    "asyncio",
    "concurrent",
    "multiprocessing",
    "threading.py",
    "queue.py",
    "selectors.py",
    "socket.py",
    "socketserver.py",
    "subprocess.py",
    "sched.py",
    "signal.py",
}
_TOOLS = {"idlelib", "tkinter", "turtledemo", "lib2to3", "distutils", "ensurepip", "venv", "turtle.py", "pydoc.py"}
_SKIP = {"site-packages", "dist-packages", "__pycache__", "encodings", "pydoc_data", "__phello__"}
_TEST_DIRS = {"test", "tests", "idle_test"}


@dataclass(frozen=True)
class Corpus:
    """Text per domain plus the SHA-256 of all of it (``sha256``) and the file count used."""

    domains: dict[str, str]
    sha256: str
    files_used: int

    def text(self, *names: str) -> str:
        """The named domains joined by blank lines (a data mix by concatenation)."""
        return "\n\n".join(self.domains[n] for n in names)


def stdlib_files(root: Path | None = None) -> list[Path]:
    """All ``.py`` files of the standard library, sorted, minus third-party and data tables."""
    root = Path(root or sysconfig.get_paths()["stdlib"])
    return sorted(p for p in root.rglob("*.py") if not _SKIP.intersection(p.relative_to(root).parts))


def group_of(rel: Path) -> str:
    """The group a stdlib file belongs to: tests, web, async, tools or general."""
    parts = rel.parts
    if _TEST_DIRS.intersection(parts[:-1]) or parts[-1].startswith("test_"):
        return "tests"
    head = parts[0]
    for name, members in (("web", _WEB), ("async", _ASYNC), ("tools", _TOOLS)):
        if head in members:
            return name
    return "general"


def strip_docs(tree: ast.Module) -> str:
    """Source code of ``tree`` with every docstring removed (comments are gone after parsing)."""
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if (
                body
                and isinstance(body[0], ast.Expr)
                and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)
            ):
                node.body = body[1:] or [ast.Pass()]
    return ast.unparse(tree)


def prose_of(source: str, tree: ast.Module) -> str:
    """Docstrings (cleaned) followed by comment paragraphs (``#`` stripped) of one file."""
    pieces: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            doc = ast.get_docstring(node, clean=True)
            if doc and len(doc) > 20:
                pieces.append(doc)
    para: list[str] = []
    try:
        for tok in tokenize.generate_tokens(io.StringIO(source).readline):
            if tok.type == tokenize.COMMENT:
                text = tok.string.lstrip("#").strip()
                if text and not text.startswith(("!", "-*-", "noqa", "type:", "pragma")):
                    para.append(text)
                    continue
            if tok.type not in (tokenize.NL, tokenize.COMMENT) and para:
                if sum(map(len, para)) > 30:
                    pieces.append(" ".join(para))
                para = []
    except (tokenize.TokenError, SyntaxError):
        pass
    return "\n\n".join(pieces)


def build_corpus(
    chars_per_domain: int, chars_per_file: int = 12_000, root: Path | None = None, salt: str = ""
) -> Corpus:
    """Cut the six domains from the stdlib; deterministic for a given Python installation and salt."""
    root = Path(root or sysconfig.get_paths()["stdlib"])
    files = stdlib_files(root)
    order = sorted(files, key=lambda p: hashlib.sha256((salt + str(p.relative_to(root))).encode()).hexdigest())
    buckets: dict[str, list[str]] = {d: [] for d in DOMAINS}
    sizes = dict.fromkeys(DOMAINS, 0)
    used = 0
    for path in order:
        if all(sizes[d] >= chars_per_domain for d in DOMAINS):
            break
        group = group_of(path.relative_to(root))
        targets = ("prose", "code") if group == "general" else (group,)  # prose first: strip_docs mutates
        if all(sizes[t] >= chars_per_domain for t in targets):
            continue
        try:
            source = path.read_text(encoding="utf-8")
            tree = ast.parse(source) if group == "general" else None
        except (UnicodeDecodeError, SyntaxError, ValueError, RecursionError):
            continue
        used += 1
        for target in targets:
            if tree is not None and target == "code":
                text = strip_docs(tree)
            elif tree is not None and target == "prose":
                text = prose_of(source, tree)
            else:
                text = source
            text = text[:chars_per_file].strip()
            if text and sizes[target] < chars_per_domain:
                buckets[target].append(text)
                sizes[target] += len(text) + 2
    domains = {d: "\n\n".join(buckets[d])[:chars_per_domain] for d in DOMAINS}
    digest = hashlib.sha256()
    for d in DOMAINS:
        digest.update(d.encode() + b"\0" + domains[d].encode() + b"\0")
    return Corpus(domains=domains, sha256=digest.hexdigest(), files_used=used)
