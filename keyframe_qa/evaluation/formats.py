"""Public benchmarks' label files, read as eval rows with no code: Video-MME, MVBench, NExT-QA, NExT-GQA,
Charades-STA and ActivityNet Captions, each with its own grouping fields, its videos found under `videos:`.

- `videomme`: parquet or JSON with videoID, question_id, duration, domain, sub_category, task_type,
  question, options, answer (a letter): choice rows grouped by duration, domain, sub_category, task_type;
- `mvbench`: one JSON per task with video, question, candidates, answer (the candidate's text): choice rows
  grouped by task (the file's name);
- `nextqa`: CSV with video, qid, question, a0..a4, answer (an index), type: choice rows grouped by type;
- `nextgqa`: that CSV plus `gsub_*.json` beside it ({video_id: {duration, location: {qid: [[s, e], ...]},
  fps}}): the choice rows, and a span row for each located question, paired with its choice row;
- `charades-sta`: text lines `vid start end##sentence`: span rows;
- `activitynet-captions`: JSON {vid: {duration, timestamps: [[s, e], ...], sentences: [...]}}: span rows.

A row whose video is not under `videos:` is that row's error (`Label.error`): it is recorded, not run, and
the summary counts it; the rest of the benchmark runs. A file that cannot be read as its format is one
LabelError line naming the file and the line.
"""

from __future__ import annotations

import csv
import glob
import json
import os
import re
from collections.abc import Callable, Iterable
from typing import Any, Optional

from .labels import LETTERS, Label, LabelError

FORMATS = ("videomme", "mvbench", "nextqa", "nextgqa", "charades-sta", "activitynet-captions")
VIDEO_EXTENSIONS = (".mp4", ".mkv", ".webm", ".avi", ".mov")
MAX_FILE_BYTES = 128 * 1024 * 1024  # a benchmark's label file: the largest (ActivityNet's train JSON) is tens of MB


class _Videos:
    """Finds a dataset's video by its name under the `videos:` folder (direct, by extension, or anywhere
    below it: NExT-QA keeps its videos in numbered subfolders), indexing the folder once."""

    def __init__(self, folder: str):
        self.folder = folder
        self._index: Optional[dict[str, str]] = None

    def find(self, name: str) -> Optional[str]:
        stem = os.path.basename(str(name))
        for candidate in (stem, *(stem + ext for ext in VIDEO_EXTENSIONS)):
            path = os.path.join(self.folder, candidate)
            if os.path.isfile(path):
                return path
        if self._index is None:
            self._index = {}
            for path in sorted(glob.glob(os.path.join(glob.escape(self.folder), "**", "*"), recursive=True)):
                if path.lower().endswith(VIDEO_EXTENSIONS):
                    self._index.setdefault(os.path.splitext(os.path.basename(path))[0], path)
                    self._index.setdefault(os.path.basename(path), path)
        return self._index.get(stem) or self._index.get(os.path.splitext(stem)[0])


def read_format(fmt: str, file: str, videos: str) -> list[Label]:
    """The eval rows of one benchmark file; LabelError (one line, naming the file and the line) when it
    cannot be read as `fmt`."""
    if fmt not in FORMATS:
        raise LabelError([f"{file}: format {fmt!r} is not one of {', '.join(FORMATS)}"])
    if not os.path.isfile(file):
        raise LabelError([f"{file}: not a file"])
    if os.path.getsize(file) > MAX_FILE_BYTES:
        raise LabelError([f"{file}: larger than {MAX_FILE_BYTES >> 20} MiB"])
    reader: Callable[[str, _Videos], list[Label]] = _READERS[fmt]
    try:
        return reader(file, _Videos(videos))
    except LabelError:
        raise
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, IndexError, csv.Error) as exc:
        raise LabelError([f"{file}: cannot be read as {fmt} ({type(exc).__name__}: {str(exc)[:200]})"]) from exc


def _row(videos: _Videos, name: str, source: str, **fields: Any) -> Label:
    """A Label for the dataset's video `name`; a missing video is the row's error, not a refusal."""
    path = videos.find(name)
    error = None if path is not None else f"video {name!r} is not under {videos.folder}"
    return Label(video=path or os.path.join(videos.folder, str(name)), source=source, error=error, **fields)


def _at(file: str, number: int) -> str:
    return f"{os.path.basename(file)}:{number}"


def _option_text(option: str, position: int) -> str:
    """An option without the letter the dataset already put before it ("A. a cat" -> "a cat")."""
    text = str(option).strip()
    match = re.match(rf"^\(?{LETTERS[position]}[.):]\s*", text)
    return text[match.end() :] if match else text


def _json_rows(file: str) -> list[Any]:
    with open(file, encoding="utf-8") as handle:
        text = handle.read()
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise LabelError([f"{file}:{exc.lineno}: not JSON ({exc.msg})"]) from exc


def _videomme(file: str, videos: _Videos) -> list[Label]:
    if file.lower().endswith(".parquet"):
        try:
            import pyarrow.parquet as parquet
        except ImportError as exc:
            raise LabelError([f"{file}: reading parquet needs pyarrow: pip install 'keyframe-qa[parquet]'"]) from exc
        rows = parquet.read_table(file).to_pylist()
    else:
        rows = _json_rows(file)
        if not isinstance(rows, list):
            raise LabelError([f"{file}:1: a Video-MME JSON file is a list of questions"])
    labels = []
    for number, row in enumerate(rows, 1):
        source = _at(file, number)
        if not isinstance(row, dict):
            raise LabelError([f"{source}: a question is an object"])
        missing = [key for key in ("videoID", "question", "options", "answer") if row.get(key) in (None, "")]
        if missing:
            raise LabelError([f"{source}: no {', '.join(missing)}"])
        options = tuple(_option_text(option, i) for i, option in enumerate(list(row["options"])))
        letter = str(row["answer"]).strip().upper()
        if len(letter) != 1 or letter not in LETTERS[: len(options)]:
            raise LabelError([f"{source}: answer {row['answer']!r} is not a letter among the options"])
        groups = tuple(
            (key, str(row[key])) for key in ("duration", "domain", "sub_category", "task_type") if row.get(key)
        )
        labels.append(_row(videos, str(row["videoID"]), source, id=str(row.get("question_id") or source), kind="choice",
                           question=str(row["question"]), options=options, correct=LETTERS.index(letter),
                           groups=groups))  # fmt: skip
    return labels


def _mvbench(file: str, videos: _Videos) -> list[Label]:
    rows = _json_rows(file)
    task = os.path.splitext(os.path.basename(file))[0]
    if not isinstance(rows, list):
        raise LabelError([f"{file}:1: an MVBench task file is a list of questions"])
    labels = []
    for number, row in enumerate(rows, 1):
        source = _at(file, number)
        if not isinstance(row, dict) or not row.get("video") or not row.get("question"):
            raise LabelError([f"{source}: a question needs `video` and `question`"])
        candidates = tuple(str(c).strip() for c in row.get("candidates") or [])
        if len(candidates) < 2 or str(row.get("answer", "")).strip() not in candidates:
            raise LabelError([f"{source}: the answer must be one of at least two candidates"])
        labels.append(_row(videos, str(row["video"]), source, id=f"{task}:{number}", kind="choice",
                           question=str(row["question"]), options=candidates,
                           correct=candidates.index(str(row["answer"]).strip()), groups=(("task", task),)))  # fmt: skip
    return labels


def _nextqa_rows(file: str) -> Iterable[tuple[str, dict]]:
    with open(file, encoding="utf-8-sig", newline="") as handle:
        reader = csv.DictReader(handle)
        for number, row in enumerate(reader, 2):
            yield _at(file, number), row


def _nextqa_label(source: str, row: dict, videos: _Videos) -> Label:
    options = tuple(str(row.get(f"a{i}", "")).strip() for i in range(5))
    if not row.get("video") or not row.get("question") or not all(options):
        raise LabelError([f"{source}: a row needs video, question and a0 to a4"])
    try:
        answer = int(str(row.get("answer", "")).strip())
    except ValueError:
        answer = -1
    if not 0 <= answer < 5:
        raise LabelError([f"{source}: answer {row.get('answer')!r} is not an index 0 to 4"])
    qid = str(row.get("qid", "")).strip()
    return _row(videos, str(row["video"]).strip(), source, id=f"{row['video']}_{qid or source}", kind="choice",
                question=str(row["question"]), options=options, correct=answer,
                groups=(("type", str(row.get("type", "")).strip()),) if row.get("type") else ())  # fmt: skip


def _nextqa(file: str, videos: _Videos) -> list[Label]:
    return [_nextqa_label(source, row, videos) for source, row in _nextqa_rows(file)]


def _nextgqa(file: str, videos: _Videos) -> list[Label]:
    """The QA rows as choice rows, and for each question the grounding file locates, a span row of its own
    (the question as the query), grouped under `grounded` so the report shows both."""
    folder = os.path.dirname(os.path.abspath(file))
    grounding: dict = {}
    found = sorted(glob.glob(os.path.join(glob.escape(folder), "gsub_*.json")))
    if not found:
        raise LabelError([f"{file}: NExT-GQA's grounding file gsub_*.json is not beside it"])
    for path in found:
        data = _json_rows(path)
        if not isinstance(data, dict):
            raise LabelError([f"{path}:1: a gsub file maps video ids to their locations"])
        grounding.update(data)
    labels = []
    for source, row in _nextqa_rows(file):
        label = _nextqa_label(source, row, videos)
        labels.append(label)
        entry = grounding.get(str(row["video"]).strip()) or {}
        spans = (entry.get("location") or {}).get(str(row.get("qid", "")).strip())
        if not spans:
            continue
        try:
            pairs = tuple((float(s), float(e)) for s, e in spans)
        except (TypeError, ValueError) as exc:
            raise LabelError([f"{source}: its grounding location {spans!r} is not [[start, end], ...]"]) from exc
        if any(e <= s or s < 0 for s, e in pairs):
            raise LabelError([f"{source}: its grounding location {spans!r} has a span that ends before it starts"])
        labels.append(Label(id=f"{label.id}:span", video=label.video, kind="span", source=source, error=label.error,
                            query=label.question, spans=pairs, groups=label.groups + (("grounded", "yes"),),
                            pair=label.id))  # fmt: skip
    return labels


_CHARADES = re.compile(r"^(\S+)\s+(\d+(?:\.\d+)?)\s+(\d+(?:\.\d+)?)##(.+)$")


def _charades(file: str, videos: _Videos) -> list[Label]:
    labels = []
    with open(file, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            match = _CHARADES.match(line.strip())
            if not match:
                raise LabelError([f"{_at(file, number)}: not `vid start end##sentence`"])
            vid, start, end, sentence = match.groups()
            if float(end) <= float(start):
                raise LabelError([f"{_at(file, number)}: the moment ends before it starts"])
            labels.append(_row(videos, vid, _at(file, number), id=f"{vid}:{number}", kind="span",
                               query=sentence.strip(), spans=((float(start), float(end)),)))  # fmt: skip
    return labels


def _activitynet(file: str, videos: _Videos) -> list[Label]:
    data = _json_rows(file)
    if not isinstance(data, dict):
        raise LabelError([f"{file}:1: ActivityNet Captions maps video ids to their captions"])
    labels = []
    for vid, entry in data.items():
        source = f"{os.path.basename(file)}:{vid}"
        if not isinstance(entry, dict):
            raise LabelError([f"{source}: an entry is an object with timestamps and sentences"])
        stamps, sentences = entry.get("timestamps") or [], entry.get("sentences") or []
        if len(stamps) != len(sentences):
            raise LabelError([f"{source}: {len(stamps)} timestamps for {len(sentences)} sentences"])
        for index, ((start, end), sentence) in enumerate(zip(stamps, sentences)):
            if float(end) <= float(start):
                continue  # a zero-length caption cannot be grounded; ActivityNet has a few
            name = vid if videos.find(vid) else vid.removeprefix("v_")
            labels.append(_row(videos, name, source, id=f"{vid}:{index}", kind="span", query=str(sentence).strip(),
                               spans=((float(start), float(end)),)))  # fmt: skip
    return labels


_READERS: dict[str, Callable[[str, _Videos], list[Label]]] = {
    "videomme": _videomme,
    "mvbench": _mvbench,
    "nextqa": _nextqa,
    "nextgqa": _nextgqa,
    "charades-sta": _charades,
    "activitynet-captions": _activitynet,
}
