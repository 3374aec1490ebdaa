"""Stage 1's shared plumbing: read a source's raw rows, write question records plus their images.

Each converter in `dataset/sources/` turns one raw row into one record dict, with the raw image value(s)
under "image". `SourceWriter.add` does the rest the same way for every source: checks the text fields,
saves the images (HF image dicts, bytes, PIL images or file paths), and counts what it skipped and why.
`close` writes the JSONL atomically and removes images no record points to, so a rerun is byte-identical
and never leaves duplicates behind.
"""
from __future__ import annotations

import io
import json
import os
import re
import tempfile
from collections import Counter
from pathlib import Path
from typing import Iterable, Iterator

from dreamprm.io import read_records, write_jsonl

RECORD_KEYS = ("id", "input", "image_path", "ground_truth", "dataset", "type", "hint", "options")
LOCAL_SUFFIXES = (".parquet", ".json", ".jsonl")


class Skip(Exception):
    """A row that cannot become a record. The message is the reason counted in the summary."""


# --- reading ---------------------------------------------------------------------------------

def read_rows(hub_id: str, split: str, configs: Iterable[str | None] = (None,), local: list[Path] | None = None,
              cache_dir: str | None = None) -> Iterator[dict]:
    """Raw rows from local files (parquet / JSON / JSONL, or folders of them) or else from the hub.

    Image columns come back undecoded ({"bytes", "path"} dicts), so images are saved byte for byte.
    Rows from local files carry "_base", the folder that relative image paths are resolved against.
    """
    if local:
        for path in _local_files(local):
            rows = _parquet_rows(path, cache_dir) if path.suffix == ".parquet" else _json_rows(path)
            for row in rows:
                yield {**row, "_base": str(path.parent)}
        return
    from datasets import load_dataset

    for config in configs:
        yield from _undecoded(load_dataset(hub_id, config, split=split, cache_dir=cache_dir))


def _local_files(paths: list[Path]) -> list[Path]:
    files = []
    for p in paths:
        if p.is_dir():
            files += sorted(f for f in p.rglob("*") if f.suffix in LOCAL_SUFFIXES and f.is_file())
        elif p.is_file():
            files.append(p)
        else:
            raise FileNotFoundError(f"{p}: no such file or folder")
    if not files:
        raise FileNotFoundError(f"no {'/'.join(LOCAL_SUFFIXES)} files in {', '.join(map(str, paths))}")
    return files


def _parquet_rows(path: Path, cache_dir: str | None):
    from datasets import load_dataset

    return _undecoded(load_dataset("parquet", data_files=[str(path)], split="train", cache_dir=cache_dir))


def _undecoded(ds):
    from datasets import Image

    for col, feature in ds.features.items():
        if isinstance(feature, Image):
            ds = ds.cast_column(col, Image(decode=False))
    return iter(ds)


def _json_rows(path: Path) -> list[dict]:
    """A JSON array, JSONL, or a JSON object keyed by question id (as MathVista's and MM-Vet's files are)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return read_records(path)  # JSONL; errors name the file and line
    if isinstance(data, dict):
        if data and all(isinstance(v, dict) for v in data.values()):
            return [{**v, "_key": k} for k, v in data.items()]
        return [data]
    return read_records(path)


# --- small helpers the converters share -------------------------------------------------------

def text(value) -> str:
    return "" if value is None else str(value).strip()


def option_letter(answer: str, options: list[str] | None) -> str:
    """'B' when the answer is the text of the second option; the answer unchanged otherwise."""
    if options and answer in options:
        return chr(65 + options.index(answer))
    return answer


# --- writing ---------------------------------------------------------------------------------

def image_bytes(value, base: str | Path | None = None) -> bytes:
    """The bytes of an image given as an HF image dict, bytes, a file path or a PIL image."""
    if isinstance(value, dict):  # parquet-exported HF image column: {"bytes": ..., "path": ...}
        value = value.get("bytes") or value.get("path")
    if value is None or value == "" or value == b"":
        raise Skip("missing image")
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, (str, Path)):
        p = Path(value).expanduser()
        tries = [p] if p.is_absolute() or base is None else [Path(base) / p, Path(base) / "images" / p]
        for t in tries:
            if t.is_file():
                return t.read_bytes()
        raise Skip("image file not found")
    if hasattr(value, "save"):  # a decoded PIL image
        im = value if value.mode in ("RGB", "RGBA", "L", "P") else value.convert("RGB")
        buf = io.BytesIO()
        im.save(buf, format="PNG")
        return buf.getvalue()
    raise Skip(f"unsupported image value ({type(value).__name__})")


def encode_image(data: bytes) -> tuple[bytes, str]:
    """(bytes, extension) to store: PNG and JPEG as they are (lossless, and reruns are byte-identical),
    any other format re-encoded as PNG. Bytes PIL cannot fully decode are a Skip, never a crash."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()  # decode everything: a truncated file fails here, not in a later stage
            if im.format in ("PNG", "JPEG"):
                return data, ".png" if im.format == "PNG" else ".jpg"
            im = im if im.mode in ("RGB", "RGBA", "L") else im.convert("RGBA" if "A" in im.mode else "RGB")
            buf = io.BytesIO()
            im.save(buf, format="PNG")
            return buf.getvalue(), ".png"
    except Image.DecompressionBombError:
        raise Skip("image too large to decode safely") from None
    except Exception:  # PIL raises many types for corrupt data (OSError, SyntaxError, ValueError, ...)
        raise Skip("unreadable image bytes") from None


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "image"


class SourceWriter:
    """Collects one source's records; saves its images in images/<file stem>/ beside the JSONL."""

    def __init__(self, out_file: str | Path, root: str | Path):
        self.out_file = Path(out_file)
        self.image_dir = self.out_file.parent / "images" / self.out_file.stem
        self.root = Path(root).resolve()
        self.records: list[dict] = []
        self.skipped: Counter = Counter()
        self.by_dataset: Counter = Counter()
        self.renamed = 0
        self._ids: set[str] = set()
        self._stems: set[str] = set()
        self._kept: set[Path] = set()

    def add(self, rec: dict, base: str | Path | None = None) -> None:
        """Check, save the images of and keep one converted record; raises Skip with the reason."""
        rec = dict(rec)
        rec["input"], rec["ground_truth"] = text(rec.get("input")), text(rec.get("ground_truth"))
        if not rec["input"]:
            raise Skip("missing question")
        if not rec["ground_truth"]:
            raise Skip("missing answer")
        values = rec.pop("image", None)
        many = isinstance(values, (list, tuple))
        values = [v for v in values if v is not None] if many else [values]
        if not values:
            raise Skip("missing image")
        encoded = [encode_image(image_bytes(v, base)) for v in values]  # all or nothing
        rid = self._unique_id(text(rec.get("id")) or str(len(self.records)))
        names = self._names(rid, len(encoded), many)
        paths = [self._save(data, name, ext) for (data, ext), name in zip(encoded, names)]
        options = rec.get("options")
        out = {"id": rid, "input": rec["input"], "image_path": paths[0], "ground_truth": rec["ground_truth"],
               "dataset": text(rec.get("dataset")), "type": rec.get("type"), "hint": text(rec.get("hint")),
               "options": [text(o) for o in options] if options else None}
        out.update({k: v for k, v in rec.items() if k not in out and not k.startswith("_")})
        if many:
            out["image_paths"] = paths
        self.records.append(out)
        self.by_dataset[out["dataset"]] += 1

    def _unique_id(self, rid: str) -> str:
        # Deterministic in row order, so a rerun renames the same way; renaming beats dropping a question.
        new, k = rid, 2
        while new in self._ids:
            new, k = f"{rid}-{k}", k + 1
        self.renamed += new != rid
        self._ids.add(new)
        return new

    def _names(self, rid: str, n: int, many: bool) -> list[str]:
        """File names (no extension) that no other record of this run uses: <id>, or <id>_1 .. <id>_n."""
        base, k = _safe(rid), 1
        while True:
            stem = base if k == 1 else f"{base}-{k}"
            names = [f"{stem}_{i}" for i in range(1, n + 1)] if many else [stem]
            if not self._stems.intersection(names):
                self._stems.update(names)
                return names
            k += 1

    def _save(self, data: bytes, stem: str, ext: str) -> str:
        path = self.image_dir / f"{stem}{ext}"
        if not (path.is_file() and path.read_bytes() == data):  # unchanged files are left alone
            self.image_dir.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.image_dir, prefix=".tmp-")
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        self._kept.add(path)
        abs_path = path.resolve()
        return abs_path.relative_to(self.root).as_posix() if abs_path.is_relative_to(self.root) else str(abs_path)

    def close(self) -> str:
        """Write the JSONL, drop images of an earlier run that no record uses, return the summary."""
        if not self.records:
            raise RuntimeError(f"no usable records ({self._skip_text() or 'the source yielded no rows'}); "
                               f"{self.out_file} left as it was")
        write_jsonl(self.out_file, self.records)
        stale = [f for f in self.image_dir.iterdir() if f.is_file() and f not in self._kept]
        for f in stale:
            f.unlink()
        lines = [f"wrote {len(self.records)} records, {len(self._kept)} images -> {self.out_file}",
                 f"skipped {sum(self.skipped.values())}" + (f": {self._skip_text()}" if self.skipped else "")]
        if len(self.by_dataset) > 1:
            lines.append("per dataset: " + ", ".join(f"{k} {v}" for k, v in sorted(self.by_dataset.items())))
        if self.renamed:
            lines.append(f"renamed {self.renamed} duplicate id(s) with a -N suffix")
        if stale:
            lines.append(f"removed {len(stale)} image(s) of an earlier run that no record uses")
        return "\n  ".join(lines)

    def _skip_text(self) -> str:
        return ", ".join(f"{reason} {n}" for reason, n in sorted(self.skipped.items()))
