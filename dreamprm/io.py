"""Reading and writing the pipeline's record files.

Every stage reads JSON or JSONL and writes JSONL. Input comes from our stages, from the authors' released
files and from records a user writes by hand, so a reader never trusts it: every record is located
(`file:line`, 1-based), and a bad one is either a one-line `DataError` naming that location (strict
readers) or a counted skip (`Skips`: per kind, with the first few locations, and a ceiling that turns a
flood of skips into an error). Writes are atomic (whole files, with the umask's mode) or append-only and
flushed per record (long stages), so a crash never loses finished work and `--resume` never duplicates
it; each output has one writer at a time (`lock_output`).
"""
from __future__ import annotations

import atexit
import json
import math
import os
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

NL = b"\n"


class DataError(ValueError):
    """A record file is unreadable or a record is malformed. The message names file and line."""


class OutputLocked(DataError):
    """Another process is writing this output."""


class BadRecord(Exception):
    """One record cannot be used: `kind` is what is counted ("missing field", "out of range", ...),
    `detail` what a user needs to fix it. Raised by record checks; readers turn it into a skip or an error."""

    def __init__(self, kind: str, detail: str = ""):
        super().__init__(f"{kind}: {detail}" if detail else kind)
        self.kind, self.detail = kind, detail


class Record(dict):
    """A record read from a file; `where` is its location, `file:line`."""
    where: str = "?"


def where(record: dict, fallback: str = "?") -> str:
    return getattr(record, "where", fallback)


class Skips:
    """Bad records skipped by one stage on one input, counted per kind, with the first few locations.

        skips = Skips("runs/mc/tree.jsonl")
        records = read_records(path, skips=skips)       # counts what it reads and what it skips
        ...; skips.add("missing image", where(r), str(img))
        print(skips.line()); skips.check(cfg.max_skip_fraction)
    """

    def __init__(self, source: str, keep: int = 3):
        self.source, self.keep = str(source), keep
        self.seen = 0  # records read, good and bad
        self.counts: Counter = Counter()
        self.first: dict[str, list[str]] = {}

    def add(self, kind: str, location: str, detail: str = "") -> None:
        self.counts[kind] += 1
        shown = self.first.setdefault(kind, [])
        if len(shown) < self.keep:
            shown.append(f"{location} ({detail})" if detail else location)

    def bad(self, e: BadRecord, location: str) -> None:
        self.add(e.kind, location, e.detail)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def line(self) -> str:
        if not self.total:
            return f"{self.source}: no record skipped"
        kinds = "; ".join(f"{k} {n} (e.g. {', '.join(self.first[k])})" for k, n in self.counts.most_common())
        return f"{self.source}: skipped {self.total} of {self.seen} records: {kinds}"

    def as_dict(self) -> dict:
        return {"source": self.source, "read": self.seen, "skipped": self.total,
                "kinds": {k: {"count": n, "first": self.first[k]} for k, n in self.counts.most_common()}}

    def check(self, max_fraction: float) -> None:
        """A DataError when more than `max_fraction` of the records read were skipped (or all of them)."""
        if self.seen and (self.total > max_fraction * self.seen or self.total == self.seen):
            raise DataError(f"{self.line()}; that is {self.total / self.seen:.0%}, over the ceiling "
                            f"--max_skip_fraction {max_fraction:g}: fix the input or raise the ceiling")

    def report(self, max_fraction: float | None = None) -> dict:
        """Print the summary line when anything was skipped, apply the ceiling; the dict for a JSON summary."""
        if self.total:
            print(self.line())
        if max_fraction is not None:
            self.check(max_fraction)
        return self.as_dict()


# --- checks of single fields: raise BadRecord, so a reader can count or report them ----------------------

def number(record: dict, key: str, lo: float | None = None, hi: float | None = None,
           integer: bool = False) -> float:
    """`record[key]` as a finite number in [lo, hi] (an int if `integer`); JSON bools are not numbers."""
    v = record.get(key)
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise BadRecord("wrong type", f"{key} must be a number, got {v!r}")
    if not math.isfinite(v):
        raise BadRecord("not a finite number", f"{key} is {v}")
    if integer and v != int(v):
        raise BadRecord("wrong type", f"{key} must be a whole number, got {v!r}")
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        span = f"[{'-inf' if lo is None else f'{lo:g}'}, {'inf' if hi is None else f'{hi:g}'}]"
        raise BadRecord("out of range", f"{key} = {v!r} outside {span}")
    return int(v) if integer else v


def text(record: dict, key: str, allow_none: bool = False) -> str | None:
    v = record.get(key)
    if v is None and allow_none:
        return None
    if not isinstance(v, str):
        raise BadRecord("wrong type", f"{key} must be a string, got {v!r}")
    return v


def require(record: dict, fields: Iterable[str]) -> None:
    missing = [k for k in fields if k not in record]
    if missing:
        raise BadRecord("missing field", ", ".join(missing))


# --- reading -------------------------------------------------------------------------------------------

def _jsonl_lines(path: Path, raw: bytes) -> Iterator[tuple[int, dict | BadRecord]]:
    for lineno, line in enumerate(raw.split(b"\n"), 1):
        if not line.strip():
            continue
        try:
            s = line.decode("utf-8")
        except UnicodeDecodeError as e:
            yield lineno, BadRecord("non-UTF-8 bytes", f"at byte {e.start} of the line")
            continue
        try:
            record = json.loads(s)
        except json.JSONDecodeError as e:
            yield lineno, BadRecord("malformed JSON", f"{e.msg} at column {e.colno}")
            continue
        if not isinstance(record, dict):
            yield lineno, BadRecord("not a JSON object", f"got {type(record).__name__}")
            continue
        yield lineno, record


def _json_array(path: Path, s: str) -> Iterator[tuple[int, Any]]:
    """The elements of a JSON array with the line each starts on. A malformed array is one error: the
    parser cannot tell where the next element would start."""
    dec, ws = json.JSONDecoder(), " \t\r\n"
    line, at = 1, 0

    def line_of(i):
        nonlocal line, at
        line += s.count("\n", at, i)
        at = i
        return line

    def skip(i):
        while i < len(s) and s[i] in ws:
            i += 1
        return i

    def fail(msg, i):
        raise DataError(f"{path}:{line_of(i)}: malformed JSON ({msg})")

    i = skip(0) + 1  # past "["
    i = skip(i)
    if i < len(s) and s[i] == "]":
        i += 1
    else:
        while True:
            try:
                obj, end = dec.raw_decode(s, i)
            except json.JSONDecodeError as e:
                fail(f"{e.msg} at column {e.colno}", e.pos)
            yield line_of(i), obj
            i = skip(end)
            if i < len(s) and s[i] == ",":
                i = skip(i + 1)
                continue
            if i < len(s) and s[i] == "]":
                i += 1
                break
            fail("expected ',' or ']' after an element", i)
    if skip(i) != len(s):
        fail("extra data after the array", skip(i))


def read_records(path: str | Path, required: Iterable[str] = (), check: Callable[[dict], None] | None = None,
                 skips: Skips | None = None) -> list[Record]:
    """Read a JSON array or a JSONL file (decided by content, not extension) into located records.

    Per record: not UTF-8, malformed (JSONL), not an object, a `required` key missing, or `check(record)`
    raising BadRecord. With `skips` such a record is counted there and left out; without, it is a
    DataError naming `file:line`. A missing, empty or malformed-array file is always a DataError: an empty
    input almost always means an earlier stage failed.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file" if not path.exists() else f"{path}: not a file")
    raw = path.read_bytes()
    if raw.startswith(b"\xef\xbb\xbf"):  # a byte-order mark from an editor
        raw = raw[3:]
    if not raw.strip():
        raise DataError(f"{path}: empty file")
    if raw.lstrip()[:1] == b"[":
        try:
            s = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise DataError(f"{path}:{raw.count(NL, 0, e.start) + 1}: non-UTF-8 bytes") from None
        items: Iterable = _json_array(path, s)
    else:
        items = _jsonl_lines(path, raw)
    required = tuple(required)
    out = []
    for lineno, r in items:
        loc = f"{path}:{lineno}"
        if skips is not None:
            skips.seen += 1
        try:
            if isinstance(r, BadRecord):
                raise r
            if not isinstance(r, dict):
                raise BadRecord("not a JSON object", f"got {type(r).__name__}")
            require(r, required)
            if check is not None:
                check(r)
        except BadRecord as e:
            if skips is None:
                raise DataError(f"{loc}: {e}") from None
            skips.bad(e, loc)
            continue
        rec = Record(r)
        rec.where = loc
        out.append(rec)
    return out


def read_json(path: str | Path, what: str = "JSON file") -> Any:
    """A whole JSON document (a config, a summary); missing, non-UTF-8 or malformed is one DataError line."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such {what}")
    try:
        return json.loads(path.read_bytes().decode("utf-8-sig"))
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not a {what} (non-UTF-8 bytes at byte {e.start})") from None
    except json.JSONDecodeError as e:
        raise DataError(f"{path}:{e.lineno}: malformed {what} ({e.msg} at column {e.colno})") from None


def iter_jsonl(path: str | Path) -> Iterator[tuple[int, dict]]:
    """(line number, record) for every record of a JSONL file; the first bad line is a DataError."""
    path = Path(path)
    for lineno, r in _jsonl_lines(path, path.read_bytes()):
        if isinstance(r, BadRecord):
            raise DataError(f"{path}:{lineno}: {r}")
        yield lineno, r


# --- writing -------------------------------------------------------------------------------------------

def _umask_mode() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def _dumps(record: Any) -> str:
    # allow_nan=False: a NaN or infinity in an output is a bug upstream, never a value to pass on
    return json.dumps(record, ensure_ascii=False, allow_nan=False)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write a whole file so that readers see either the old or the new content, never half of it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, _umask_mode())  # mkstemp makes 0600; a result file is as readable as any other
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False, allow_nan=False) + "\n")


def write_jsonl(path: str | Path, records: Iterable[dict]) -> None:
    atomic_write_text(path, "".join(_dumps(r) + "\n" for r in records))


# --- one writer per output -----------------------------------------------------------------------------

_held: dict[Path, Any] = {}


def lock_path(path: str | Path, directory: bool = False) -> Path:
    path = Path(path).resolve()
    return path / ".lock" if directory else path.with_name(f".{path.name}.lock")


def _holder(lock_file: Path, wait: float = 2.0) -> str:
    """The holder's pid from its lock file. The holder writes it just after taking the lock, so a process
    refused in that instant finds the file empty: look again for a moment before saying "unknown"."""
    deadline = time.monotonic() + wait
    while True:
        try:
            pid = lock_file.read_text().strip()
        except OSError:
            pid = ""
        if pid or time.monotonic() > deadline:
            return pid or "unknown"
        time.sleep(0.02)


def lock_output(path: str | Path, directory: bool = False) -> None:
    """Make this process the one writer of `path` (a file, or a directory with everything in it) until it
    exits. A second process is refused at once with the holder's pid. An OS lock (filelock, flock on
    Linux): a killed holder releases it, so a crash never blocks the retry. Re-entrant in one process."""
    from filelock import FileLock, Timeout

    lock_file = lock_path(path, directory)
    if lock_file in _held:
        return
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(lock_file), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise OutputLocked(f"{path} is being written by another process (pid {_holder(lock_file)}, lock {lock_file}); "
                           "wait for it to finish or stop it, then run again with --resume") from None
    lock_file.write_text(f"{os.getpid()}\n")  # for the message above; the lock itself is the flock
    _held[lock_file] = lock


def release_output(path: str | Path, directory: bool = False) -> None:
    _release(lock_path(path, directory))


def _release(lock_file: Path) -> None:
    lock = _held.pop(lock_file, None)
    if lock is not None:
        lock_file.write_text("")  # while still held: the next holder's refused rival never reads our pid
        lock.release()


@atexit.register
def _release_all() -> None:
    for lock_file in list(_held):
        try:
            _release(lock_file)
        except OSError:
            pass


class AppendWriter:
    """Append-only JSONL output that a stage can be killed in and resumed from.

    On open it takes the output's lock, reads what an earlier run wrote, drops a torn last line (the only
    damage a kill can do to an append-only file), and remembers each record's key, so `done(key)` tells
    the stage what to skip. The file is created at the first `write`: a run that fails before writing
    anything leaves nothing that would refuse the retry. Each `write` is flushed, so a killed process
    loses no finished record; `close` also fsyncs.

        with AppendWriter(out, key=lambda r: r["id"], resume=args.resume) as w:
            for q in questions:
                if w.done(q["id"]): continue
                w.write(solve(q))
    """

    def __init__(self, path: str | Path, key: Callable[[dict], Any], resume: bool = True):
        self.path = Path(path)
        self.key = key
        self.keys: set = set()
        self._f = None
        lock_output(self.path)
        if self.path.exists() and self.path.stat().st_size and not resume:
            raise FileExistsError(f"{self.path} exists; pass --resume to continue it or remove it")
        if self.path.exists():
            self._recover()

    def _recover(self) -> None:
        raw = self.path.read_bytes()
        good = raw.rfind(b"\n") + 1  # everything after the last newline is a torn write
        if good < len(raw):
            with open(self.path, "r+b") as f:
                f.truncate(good)
        for lineno, record in iter_jsonl(self.path):
            try:
                self.keys.add(self.key(record))
            except (KeyError, TypeError) as e:
                raise DataError(f"{self.path}:{lineno}: not a record of this stage (no key {e}); "
                                "is --out the right file?") from None

    @property
    def n_resumed(self) -> int:
        return len(self.keys)

    def done(self, key) -> bool:
        return key in self.keys

    def write(self, record: dict) -> None:
        k = self.key(record)
        if k in self.keys:
            raise ValueError(f"{self.path}: record {k!r} written twice")
        line = _dumps(record) + "\n"
        if self._f is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._f = open(self.path, "a", encoding="utf-8")
        self._f.write(line)
        self._f.flush()
        self.keys.add(k)

    def close(self) -> None:
        if self._f is not None and not self._f.closed:
            self._f.flush()
            os.fsync(self._f.fileno())
            self._f.close()

    def __enter__(self) -> "AppendWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# --- images --------------------------------------------------------------------------------------------

MAX_IMAGE_PIXELS = 89_478_485  # PIL's decompression-bomb limit (about 9,459 x 9,459)


class ImageCheck:
    """Validates each image once, at its first use: found, not empty, decodable, at most `max_pixels`.
    `problem(path)` is None for a good image, else the BadRecord to count; the verdict is cached, so the
    records of one bad image are all skipped without reopening it."""

    def __init__(self, max_pixels: int = MAX_IMAGE_PIXELS):
        from PIL import Image

        self.max_pixels = max_pixels
        self._verdict: dict[str, BadRecord | None] = {}
        if max_pixels > (Image.MAX_IMAGE_PIXELS or max_pixels):  # a raised limit holds for loading too
            Image.MAX_IMAGE_PIXELS = max_pixels

    def problem(self, path: str | Path) -> BadRecord | None:
        key = str(path)
        if key not in self._verdict:
            self._verdict[key] = self._inspect(Path(path))
        return self._verdict[key]

    def check(self, path: str | Path) -> None:
        if (bad := self.problem(path)) is not None:
            raise bad

    def _inspect(self, path: Path) -> BadRecord | None:
        from PIL import Image

        if not path.is_file():
            return BadRecord("missing image", str(path))
        if path.stat().st_size == 0:
            return BadRecord("zero-byte image", str(path))
        limit = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None  # our own limit below, with our own message
        try:
            with Image.open(path) as im:
                w, h = im.size
                if w * h > self.max_pixels:
                    return BadRecord("image too large", f"{path}: {w} x {h} = {w * h:,} pixels > "
                                                        f"--max_image_pixels {self.max_pixels:,}")
                im.load()  # a truncated or corrupt file fails here, not in the middle of a batch
        except Exception as e:  # PIL raises many types for broken files
            return BadRecord("unreadable image", f"{path}: {type(e).__name__}: {e}")
        finally:
            Image.MAX_IMAGE_PIXELS = limit
        return None


def load_image(path: str | Path, max_side: int | None = None):
    """Open an image as RGB, shrunk (aspect kept) so its longest side is at most `max_side` pixels."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
    except FileNotFoundError:
        raise DataError(f"{path}: image not found") from None
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as e:
        raise DataError(f"{path}: unreadable image ({e})") from None
    if max_side and max(im.size) > max_side:
        scale = max_side / max(im.size)
        im = im.resize((max(1, round(im.width * scale)), max(1, round(im.height * scale))), Image.BICUBIC)
    return im
