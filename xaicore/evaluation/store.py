"""An evaluation kept in a folder, so that an interrupted run loses nothing.

Layout of the folder::

    settings.json   the EvalSettings of the run (written first)
    rows.jsonl      one JSON object per (image, method) row, appended and flushed row by row
    summary.json    per-method means and 95% intervals (rewritten at the end of every run)
    summary.csv     the same, one line per method
    rows.csv        every row as CSV

**Resuming.** Running again on the same folder with the same settings reads ``rows.jsonl`` and
computes only the missing rows (:func:`xaicore.evaluation.rows.iter_rows`); the summary then equals
that of an uninterrupted run. A last line cut short by an interruption is dropped (and cut from
the file) so the row is computed again. **Other settings** (another model, image set, method
list, metric, seed...) are refused with :class:`~xaicore.errors.ParameterError` naming what
differs: one folder holds one evaluation; use another folder for other settings.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from xaicore.errors import ParameterError
from xaicore.evaluation.rows import EvalRow, EvalSettings, Evaluation, ProgressFn, evaluate, rows_csv
from xaicore.models.bundle import ModelBundle

SETTINGS_FILE = "settings.json"
ROWS_FILE = "rows.jsonl"
SUMMARY_JSON = "summary.json"
SUMMARY_CSV = "summary.csv"
ROWS_CSV = "rows.csv"

# evaluate()'s signature: (bundle, image_set, settings, *, done_rows, on_rows, progress, should_stop)
Engine = Callable[..., Evaluation]


def _write_atomic(path: Path, text: str) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)


class RunFolder:
    """The folder of one evaluation: its settings, its rows so far, and its summary files.

    Open with :meth:`open`, which refuses a folder holding an evaluation with other settings.
    """

    def __init__(self, path: Path, settings: EvalSettings) -> None:
        self.path = path
        self.settings = settings

    @classmethod
    def open(cls, path: str | Path, settings: EvalSettings) -> RunFolder:
        """Create the folder (or reuse one with the same settings) and record the settings."""
        folder = Path(path)
        if folder.exists() and not folder.is_dir():
            raise ParameterError(f"{str(folder)!r} is a file; give a folder for the evaluation's output.")
        folder.mkdir(parents=True, exist_ok=True)
        settings_path = folder / SETTINGS_FILE
        if settings_path.is_file():
            try:
                earlier = EvalSettings.from_record(json.loads(settings_path.read_text(encoding="utf-8")))
            except (json.JSONDecodeError, UnicodeDecodeError, TypeError) as exc:
                raise ParameterError(
                    f"{settings_path} cannot be read, so the rows beside it cannot be trusted; "
                    "use another output folder or delete that one."
                ) from exc
            differing = settings.differences(earlier)
            if differing:
                raise ParameterError(
                    f"{str(folder)!r} already holds an evaluation with other settings "
                    f"(different {', '.join(differing)}). Rerun with the same settings to continue it, "
                    "or choose another output folder."
                )
        elif (folder / ROWS_FILE).exists():
            raise ParameterError(
                f"{str(folder)!r} holds rows but no {SETTINGS_FILE}, so they cannot be matched to these settings; "
                "use another output folder."
            )
        else:
            _write_atomic(settings_path, json.dumps(settings.record(), indent=2))
        return cls(folder, settings)

    @property
    def rows_path(self) -> Path:
        return self.path / ROWS_FILE

    def read_rows(self) -> list[EvalRow]:
        """Rows written so far; a damaged last line (an interrupted write) is cut off the file."""
        if not self.rows_path.is_file():
            return []
        data = self.rows_path.read_bytes()
        lines = data.split(b"\n")
        complete, tail = lines[:-1], lines[-1]  # tail: bytes after the last newline
        rows: list[EvalRow] = []
        keep = 0
        for number, line in enumerate(complete, start=1):
            try:
                rows.append(EvalRow.from_record(json.loads(line)))
            except (json.JSONDecodeError, UnicodeDecodeError, TypeError) as exc:
                raise ParameterError(
                    f"Line {number} of {self.rows_path} is damaged; remove that line (its row is then "
                    "computed again) or use another output folder."
                ) from exc
            keep += len(line) + 1
        if tail:
            with self.rows_path.open("r+b") as handle:
                handle.truncate(keep)
        return rows

    def append(self, rows: Sequence[EvalRow]) -> None:
        """Append rows, flushing after each one and syncing to disk after the batch."""
        with self.rows_path.open("a", encoding="utf-8") as handle:
            for row in rows:
                handle.write(json.dumps(row.record(), allow_nan=False) + "\n")
                handle.flush()
            os.fsync(handle.fileno())

    def write_results(self, evaluation: Evaluation) -> list[Path]:
        """Write ``summary.json``, ``summary.csv`` and ``rows.csv``; returns their paths."""
        paths = [self.path / SUMMARY_JSON, self.path / SUMMARY_CSV, self.path / ROWS_CSV]
        record: dict[str, Any] = evaluation.summary.record()
        record["runtime_s"] = evaluation.runtime_s
        _write_atomic(paths[0], json.dumps(record, indent=2, allow_nan=False))
        _write_atomic(paths[1], evaluation.summary.csv_text())
        _write_atomic(paths[2], rows_csv(evaluation.rows))
        return paths


def evaluate_in_folder(
    bundle: ModelBundle,
    image_set: Any,
    settings: EvalSettings,
    out_dir: str | Path,
    *,
    progress: ProgressFn | None = None,
    should_stop: Callable[[], bool] | None = None,
    engine: Engine = evaluate,
) -> Evaluation:
    """Run (or resume) the evaluation in ``out_dir`` and write its summary files.

    Rows found in the folder are not computed again; every new batch of rows is appended to
    ``rows.jsonl`` as soon as it exists. The summary files are written when the run ends,
    also when ``should_stop`` ended it early (they then say ``"complete": false``).
    ``engine`` computes the rows: :func:`~xaicore.evaluation.rows.evaluate` in this process
    (default), or a :class:`~xaicore.evaluation.ray_engine.RayEngine`; both write the same rows.
    """
    folder = RunFolder.open(out_dir, settings)
    earlier = folder.read_rows()
    evaluation = engine(
        bundle,
        image_set,
        settings,
        done_rows=earlier,
        on_rows=folder.append,
        progress=progress,
        should_stop=should_stop,
    )
    folder.write_results(evaluation)
    return evaluation
