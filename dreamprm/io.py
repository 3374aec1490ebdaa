"""Reading and writing the pipeline's record files.

Every stage reads JSON or JSONL and writes JSONL. Errors name the file and line so a researcher can fix
a record by hand; writes are atomic (whole files) or append-only and flushed per record (long stages), so a crash
never loses finished work and `--resume` never duplicates it.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator


class DataError(ValueError):
    """A record file is unreadable or a record is malformed. The message names file and line."""


def iter_jsonl(path: str | Path) -> Iterator[tuple[int, dict]]:
    """Yield (line number, record) for every non-blank line of a JSONL file."""
    path = Path(path)
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{path}:{lineno}: malformed JSON ({e.msg} at column {e.colno})") from None
            if not isinstance(record, dict):
                raise DataError(f"{path}:{lineno}: expected a JSON object, got {type(record).__name__}")
            yield lineno, record


def read_records(path: str | Path, required: Iterable[str] = ()) -> list[dict]:
    """Read a JSON array or a JSONL file (decided by content, not extension) into a list of dicts.

    `required` keys are checked on every record; a missing one is a DataError naming file and record.
    An empty file is an error: an empty input almost always means an earlier stage failed.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    with open(path, encoding="utf-8") as f:
        head = f.read(4096).lstrip()
    if not head:
        raise DataError(f"{path}: empty file")
    if head.startswith("["):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise DataError(f"{path}:{e.lineno}: malformed JSON ({e.msg} at column {e.colno})") from None
        located = [(f"record {i}", r) for i, r in enumerate(data)]
        for where, r in located:
            if not isinstance(r, dict):
                raise DataError(f"{path}: {where}: expected a JSON object, got {type(r).__name__}")
    else:
        located = [(f"line {n}", r) for n, r in iter_jsonl(path)]
    required = tuple(required)
    for where, r in located:
        missing = [k for k in required if k not in r]
        if missing:
            raise DataError(f"{path}: {where}: missing field(s) {', '.join(missing)}")
    return [r for _, r in located]


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write a whole file so that readers see either the old or the new content, never half of it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


def write_jsonl(path: str | Path, records: Iterable[dict]) -> None:
    atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))


class AppendWriter:
    """Append-only JSONL output that a stage can be killed in and resumed from.

    On open it reads what an earlier run wrote, drops a torn last line (the only damage a kill can do to
    an append-only file), and remembers each record's key, so `done(key)` tells the stage what to skip.
    Each `write` is flushed, so a killed process loses no finished record; `close` also fsyncs.

        with AppendWriter(out, key=lambda r: r["id"], resume=args.resume) as w:
            for q in questions:
                if w.done(q["id"]): continue
                w.write(solve(q))
    """

    def __init__(self, path: str | Path, key: Callable[[dict], Any], resume: bool = True):
        self.path = Path(path)
        self.key = key
        self.keys: set = set()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists() and not resume:
            raise FileExistsError(f"{self.path} exists; pass --resume to continue it or remove it")
        if self.path.exists():
            self._recover()
        self._f = open(self.path, "a", encoding="utf-8")

    def _recover(self) -> None:
        raw = self.path.read_bytes()
        good = raw.rfind(b"\n") + 1  # everything after the last newline is a torn write
        if good < len(raw):
            with open(self.path, "r+b") as f:
                f.truncate(good)
        for _, record in iter_jsonl(self.path):
            self.keys.add(self.key(record))

    @property
    def n_resumed(self) -> int:
        return len(self.keys)

    def done(self, key) -> bool:
        return key in self.keys

    def write(self, record: dict) -> None:
        k = self.key(record)
        if k in self.keys:
            raise ValueError(f"{self.path}: record {k!r} written twice")
        self._f.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._f.flush()
        self.keys.add(k)

    def close(self) -> None:
        if not self._f.closed:
            self._f.flush()
            os.fsync(self._f.fileno())
            self._f.close()

    def __enter__(self) -> "AppendWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def load_image(path: str | Path, max_side: int | None = None):
    """Open an image as RGB, shrunk (aspect kept) so its longest side is at most `max_side` pixels."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
    except FileNotFoundError:
        raise DataError(f"{path}: image not found") from None
    except (UnidentifiedImageError, OSError) as e:
        raise DataError(f"{path}: unreadable image ({e})") from None
    if max_side and max(im.size) > max_side:
        scale = max_side / max(im.size)
        im = im.resize((max(1, round(im.width * scale)), max(1, round(im.height * scale))), Image.BICUBIC)
    return im
