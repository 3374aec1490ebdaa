"""Stage 1's shared plumbing: read a source's raw rows, write question records plus their images.

Each converter in `dataset/sources/` turns one raw row into one record dict, with the raw image value(s)
under "image". `SourceWriter.add` does the rest the same way for every source: checks the text fields,
saves the images (HF image dicts, bytes, PIL images or file paths), and counts what it skipped and why.
`close` writes the JSONL atomically and removes images no record points to, so a rerun is byte-identical
and never leaves duplicates behind.

Every raw row carries its location in "_where" (`file:line` for JSON/JSONL, `file, row N` for parquet and the
hub), so a skipped row is counted per reason with the first few locations (a `dreamprm.io.Skips`): in the
summary line and in the JSON summary `<source>.jsonl.done`. A bad line of a local JSONL (not UTF-8, malformed)
is a counted skip too; a file that cannot be read at all is one error naming it.
"""
from __future__ import annotations

import io
import json
import math
import os
import re
import tempfile
from collections import Counter
from pathlib import Path
from typing import Iterable, Iterator

from dreamprm.io import Skips, read_records, where, write_json, write_jsonl

RECORD_KEYS = ("id", "input", "image_path", "ground_truth", "dataset", "type", "hint", "options")
LOCAL_SUFFIXES = (".parquet", ".json", ".jsonl")


class Skip(Exception):
    """A row that cannot become a record. The message is the reason counted in the summary; `detail` says
    what exactly (shown beside the row's location)."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(reason)
        self.detail = detail


# Reasons by which a source's own rules leave a well-formed row out (MMMU-Pro: the released code's rules).
# They are reported apart and never count against --max_skip_fraction: they are a selection, not bad input.
FILTERED = ("several images", "question starts with <image 1>", "question does not end with <image 1>")


# --- reading ---------------------------------------------------------------------------------

def read_rows(hub_id: str, split: str, configs: Iterable[str | None] = (None,), local: list[Path] | None = None,
              cache_dir: str | None = None) -> Iterator[dict]:
    """Raw rows from local files (parquet / JSON / JSONL, or folders of them) or else from the hub.

    Image columns come back undecoded ({"bytes", "path"} dicts), so images are saved byte for byte.
    Rows from local files carry "_base", the folder that relative image paths are resolved against.
    """
    if local:
        for path in _local_files(local):
            if path.suffix == ".parquet":
                rows = ({**r, "_where": f"{path}, row {k}"} for k, r in enumerate(_parquet_rows(path, cache_dir), 1))
            else:
                rows = _json_rows(path)
            for row in rows:
                yield {**row, "_base": str(path.parent)}
        return
    from datasets import load_dataset

    for config in configs:
        name = f"hub {hub_id}{f' {config}' if config else ''} {split}"
        for k, row in enumerate(_undecoded(load_dataset(hub_id, config, split=split, cache_dir=cache_dir)), 1):
            yield {**row, "_where": f"{name}, row {k}"}


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
    """A JSON array, JSONL, or a JSON object keyed by question id (as MathVista's and MM-Vet's files are).

    Rows carry "_where". A bad JSONL line (not UTF-8, malformed, not an object) does not stop the source: the
    lines are counted in a `Skips` that comes last, as the row {"_skipped": skips} (`SourceWriter.offer`)."""
    raw = path.read_bytes()
    if raw.lstrip(b"\xef\xbb\xbf \t\r\n")[:1] == b"{":  # one object, or JSONL whose lines are objects
        try:
            data = json.loads(raw.decode("utf-8-sig"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            data = None  # JSONL (or a broken object): read line by line below, each bad line counted
        if isinstance(data, dict):
            if data and all(isinstance(v, dict) for v in data.values()):
                return [{**v, "_key": k, "_where": f"{path} (key {k!r})"} for k, v in data.items()]
            return [{**data, "_where": f"{path}:1"}]
    skips = Skips(path)
    rows = [{**r, "_where": where(r)} for r in read_records(path, skips=skips)]
    return rows + [{"_skipped": skips}] if skips.total else rows


# --- small helpers the converters share -------------------------------------------------------

def text(value) -> str:
    """A field as stripped text; None and NaN (pandas' "no value" in exported tables) are ""."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return ""
    return str(value).strip()


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
        raise Skip("image file not found", str(tries[-1]))
    if hasattr(value, "save"):  # a decoded PIL image
        im = value if value.mode in ("RGB", "RGBA", "L", "P") else value.convert("RGB")
        buf = io.BytesIO()
        im.save(buf, format="PNG")
        return buf.getvalue()
    raise Skip(f"unsupported image value ({type(value).__name__})")


def encode_image(data: bytes, max_pixels: int | None = None) -> tuple[bytes, str]:
    """(bytes, extension) to store: PNG and JPEG as they are (lossless, and reruns are byte-identical),
    any other format re-encoded as PNG. Bytes PIL cannot fully decode, and an image of more than `max_pixels`
    (--max_image_pixels), are a Skip, never a crash."""
    from PIL import Image, UnidentifiedImageError

    if not data:
        raise Skip("zero-byte image")
    try:
        with Image.open(io.BytesIO(data)) as im:
            w, h = im.size
            if max_pixels is not None and w * h > max_pixels:
                raise Skip("image too large", f"{w} x {h} = {w * h:,} pixels > --max_image_pixels {max_pixels:,}")
            im.load()  # decode everything: a truncated file fails here, not in a later stage
            if im.format in ("PNG", "JPEG"):
                return data, ".png" if im.format == "PNG" else ".jpg"
            im = im if im.mode in ("RGB", "RGBA", "L") else im.convert("RGBA" if "A" in im.mode else "RGB")
            buf = io.BytesIO()
            im.save(buf, format="PNG")
            return buf.getvalue(), ".png"
    except Skip:
        raise
    except Image.DecompressionBombError as e:
        raise Skip("image too large", str(e)) from None
    except Exception as e:  # PIL raises many types for corrupt data (OSError, SyntaxError, ValueError, ...)
        # (UnidentifiedImageError's message holds an object address: not in a summary that reruns reproduce)
        what = "not a format PIL reads" if isinstance(e, UnidentifiedImageError) else f"{type(e).__name__}: {e}"
        raise Skip("unreadable image bytes", what) from None


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "image"


class SourceWriter:
    """Collects one source's records; saves its images in images/<file stem>/ beside the JSONL.

        w = SourceWriter(out_file, root, Skips("mathvista"))
        for row in rows: w.offer(row, convert)        # a bad row is counted with row["_where"]
        print(w.close(max_skip_fraction))
    """

    def __init__(self, out_file: str | Path, root: str | Path, skips: Skips | None = None,
                 max_pixels: int | None = None):
        self.out_file = Path(out_file)
        self.max_pixels = max_pixels
        if max_pixels:
            from PIL import Image

            if max_pixels > (Image.MAX_IMAGE_PIXELS or max_pixels):  # a raised limit holds for PIL's own check too
                Image.MAX_IMAGE_PIXELS = max_pixels
        self.image_dir = self.out_file.parent / "images" / self.out_file.stem
        self.root = Path(root).resolve()
        self.records: list[dict] = []
        self.skips = skips if skips is not None else Skips(self.out_file.stem)
        self.filtered: Counter = Counter()  # rows a source's own rules leave out (FILTERED)
        self.by_dataset: Counter = Counter()
        self.renamed = 0
        self._ids: set[str] = set()
        self._stems: set[str] = set()
        self._kept: set[Path] = set()

    def offer(self, row: dict, convert) -> None:
        """Convert one raw row and add it; a Skip is counted with the row's location ("_where"), or apart
        when a source rule (FILTERED) left it out. The {"_skipped": Skips} row of `_json_rows` is merged."""
        if "_skipped" in row:
            _merge(self.skips, row["_skipped"])
            return
        try:
            self.add(convert(row), base=row.get("_base"))
        except Skip as e:
            if str(e) in FILTERED:
                self.filtered[str(e)] += 1
                return
            self.skips.seen += 1
            self.skips.add(str(e), row.get("_where", "?"), e.detail)
            return
        self.skips.seen += 1

    def add(self, rec: dict, base: str | Path | None = None) -> None:
        """Check, save the images of and keep one converted record; raises Skip with the reason."""
        rec = dict(rec)
        for key in ("input", "ground_truth"):  # a list or an object here would become its Python repr
            v = rec.get(key)
            if isinstance(v, bool) or not isinstance(v, (str, int, float, type(None))):
                raise Skip("wrong type", f"{key} is a {type(v).__name__}: {str(v)[:60]}")
            if isinstance(v, float) and not math.isfinite(v):
                raise Skip("not a finite number", f"{key} is {v}")
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
        encoded = [encode_image(image_bytes(v, base), self.max_pixels) for v in values]  # all or nothing
        rid = self._unique_id(text(rec.get("id")) or str(len(self.records)))
        names = self._names(rid, len(encoded), many)
        paths = [self._save(data, name, ext) for (data, ext), name in zip(encoded, names)]
        options = rec.get("options")
        if options is not None and not isinstance(options, (list, tuple)):
            raise Skip("wrong type", f"options is a {type(options).__name__}, not a list")
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

    def close(self, max_skip_fraction: float | None = None) -> str:
        """Write the JSONL and its JSON summary (`<out>.done`), drop images of an earlier run that no record
        uses, return the summary. Too many bad rows (over `max_skip_fraction`) or none usable is an error
        that leaves the earlier output as it was."""
        if not self.records:
            raise RuntimeError(f"no usable records ({self._skip_text() or 'the source yielded no rows'}); "
                               f"{self.out_file} left as it was")
        if max_skip_fraction is not None:
            self.skips.check(max_skip_fraction)
        write_jsonl(self.out_file, self.records)
        stale = [f for f in self.image_dir.iterdir() if f.is_file() and f not in self._kept]
        for f in stale:
            f.unlink()
        from dreamprm.shards import done_marker  # the same marker every stage leaves beside its output

        write_json(done_marker(self.out_file), {
            "records": len(self.records), "images": len(self._kept), "per_dataset": dict(sorted(self.by_dataset.items())),
            "renamed_ids": self.renamed, "filtered": dict(sorted(self.filtered.items())),
            "skipped": self.skips.as_dict()})
        lines = [f"wrote {len(self.records)} records, {len(self._kept)} images -> {self.out_file}", self.skips.line()]
        if self.filtered:
            lines.append("left out by the source's rules: " + ", ".join(f"{k} {n}" for k, n in sorted(self.filtered.items())))
        if len(self.by_dataset) > 1:
            lines.append("per dataset: " + ", ".join(f"{k} {v}" for k, v in sorted(self.by_dataset.items())))
        if self.renamed:
            lines.append(f"renamed {self.renamed} duplicate id(s) with a -N suffix")
        if stale:
            lines.append(f"removed {len(stale)} image(s) of an earlier run that no record uses")
        return "\n  ".join(lines)

    def _skip_text(self) -> str:
        counts = self.skips.counts + self.filtered
        return ", ".join(f"{reason} {n}" for reason, n in sorted(counts.items()))


def _merge(into: Skips, other: Skips) -> None:
    """Add the skips of `other` to `into` (its good records are counted when they are offered)."""
    into.seen += other.total
    for kind, n in other.counts.items():
        into.counts[kind] += n
        shown = into.first.setdefault(kind, [])
        shown += other.first[kind][: max(0, into.keep - len(shown))]
