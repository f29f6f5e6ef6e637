"""Reviewers' verdicts on explanation maps, kept in a local SQLite database.

A verdict says of one map (one method's explanation of one case by one model) that it is
plausible, not plausible, or that the reviewer is unsure, with a free-text note, the reviewer's
name and the time. :meth:`ReviewStore.record` writes it in one transaction the moment it is
given, together with what is needed to draw the report again without the model or the image
file: the case (where it came from, its name, the sha256 of its bytes), the model's name and
fingerprint, the method, its parameters, seed, baseline and target, the predictions, the
model input and the raw map.

Rows are only ever added: a reviewer who changes their mind adds a newer verdict, the older
one stays in the history (:meth:`ReviewStore.history`) and :meth:`ReviewStore.latest` shows the
newest per reviewer. Two reviewers never overwrite each other.

Durability: each operation opens its own connection (safe from any thread or process), the
database runs in WAL mode with ``synchronous=FULL`` (a committed verdict survives a killed
process and a power cut) and waits up to ``busy_timeout_s`` for another writer instead of
failing. Writes take the write lock at their start (``BEGIN IMMEDIATE``).
"""

from __future__ import annotations

import datetime as _dt
import enum
import io
import json
import sqlite3
import zlib
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from xaicore.errors import ParameterError, ReviewStoreError
from xaicore.review.config import DB_ENV, default_db_path

if TYPE_CHECKING:  # not imported at run time: reading and writing verdicts needs no torch
    from xaicore.explainers.results import ExplainResult, Prediction

SCHEMA_VERSION = 1
DEFAULT_BUSY_TIMEOUT_S = 10.0
MAX_REVIEWER_CHARS = 100
MAX_NOTE_CHARS = 5000


class Judgement(str, enum.Enum):  # noqa: UP042 - str() must stay the plain value in f-strings and SQL
    """What a reviewer says of a map."""

    PLAUSIBLE = "plausible"
    NOT_PLAUSIBLE = "not plausible"
    UNSURE = "unsure"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class CaseRef:
    """A case as the database names it: the list it came from, its name there, its bytes' sha256."""

    source: str
    name: str
    sha256: str


@dataclass(frozen=True)
class ReviewedMap:
    """One method's map of one case by one model, with what is needed to draw it again.

    ``image`` is the model input (H, W, 3) float32 in [0, 1]; ``attribution`` the raw (3, H, W)
    float32 map, ``None`` when the method produced none (its ``status`` says why).
    """

    model_name: str
    model_fingerprint: str
    method: str
    title: str
    params: Mapping[str, Any]
    seed: int
    baseline: str
    target: int
    target_label: str
    predictions: tuple[Prediction, ...]
    status: str
    image: np.ndarray
    attribution: np.ndarray | None
    provenance: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_result(cls, result: ExplainResult, method: str) -> ReviewedMap:
        """The map of ``method`` in ``result`` (an :func:`~xaicore.explainers.api.explain` result)."""
        found = result.by_method().get(method)
        if found is None:
            raise ParameterError(f"The explanation holds no map of the method {method!r}.")
        provenance = result.provenance
        return cls(
            model_name=provenance.model_name,
            model_fingerprint=provenance.model_fingerprint,
            method=found.method,
            title=found.title,
            params=dict(found.params),
            seed=int(provenance.seed),
            baseline=result.baseline,
            target=int(result.target),
            target_label=result.target_label,
            predictions=tuple(result.predictions),
            status=found.status.value,
            image=np.asarray(result.image, dtype=np.float32),
            attribution=None if found.attribution is None else np.asarray(found.attribution, dtype=np.float32),
            provenance=provenance.to_dict(),
        )

    @property
    def params_text(self) -> str:
        """The parameters as canonical JSON (sorted keys): part of the map's identity."""
        return _json(self.params)


@dataclass(frozen=True)
class Verdict:
    """One verdict as stored: ``id`` grows with every verdict written."""

    id: int
    case: CaseRef
    map_id: int
    method: str
    model_fingerprint: str
    reviewer: str
    judgement: Judgement
    note: str
    created: str


@dataclass(frozen=True)
class StoredMap:
    """A map in the database with its case and every verdict given on it (oldest first)."""

    id: int
    case: CaseRef
    map: ReviewedMap
    created: str
    verdicts: tuple[Verdict, ...]

    def latest(self) -> tuple[Verdict, ...]:
        """The newest verdict of each reviewer, reviewers in the order they first judged."""
        return _latest_per_reviewer(self.verdicts)


class ReviewStore:
    """The review database at ``path`` (created with its folder when missing, unless ``create``
    is false).

    Raises :class:`~xaicore.errors.ReviewStoreError` when the file cannot be opened, is not a
    review database, or is missing and ``create`` is false.
    """

    def __init__(
        self,
        path: str | Path | None = None,
        *,
        busy_timeout_s: float = DEFAULT_BUSY_TIMEOUT_S,
        create: bool = True,
    ) -> None:
        self.path = Path(path).expanduser() if path is not None else default_db_path()
        if busy_timeout_s <= 0:
            raise ParameterError("busy_timeout_s must be positive.")
        self.busy_timeout_s = float(busy_timeout_s)
        if not create and not self.path.is_file():
            raise ReviewStoreError(f"There is no review database at {str(self.path)!r}.")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ReviewStoreError(
                f"The folder of the review database {str(self.path)!r} cannot be made ({exc.strerror or exc}); "
                f"choose another place with {DB_ENV}."
            ) from exc
        with self._read() as db:  # executescript commits on its own; every statement is idempotent
            db.executescript(_SCHEMA)
        with self._write() as db:
            row = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            if row is None:
                db.execute("INSERT INTO meta(key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            elif int(row[0]) != SCHEMA_VERSION:
                raise ReviewStoreError(
                    f"The review database {str(self.path)!r} has schema version {row[0]}, this version reads "
                    f"{SCHEMA_VERSION}; use a matching xaicore or a new database file."
                )

    # ------------------------------------------------------------------------------ writing

    def record(
        self,
        case: CaseRef,
        reviewed: ReviewedMap,
        *,
        reviewer: str,
        judgement: Judgement | str,
        note: str = "",
        created: str | None = None,
    ) -> Verdict:
        """Write one verdict on ``reviewed`` (a map of ``case``), committed before it returns.

        The case and the map are stored the first time they are judged and shared by later
        verdicts. ``created`` defaults to now (UTC, microseconds).

        Raises :class:`~xaicore.errors.ParameterError` for an empty reviewer name, an unknown
        judgement or an over-long note, :class:`~xaicore.errors.ReviewStoreError` when the
        database cannot be written.
        """
        name = _reviewer(reviewer)
        verdict = _judgement(judgement)
        text = _note(note)
        when = created or _now()
        with self._write() as db:
            case_id = _case_id(db, case)
            map_id = _map_id(db, case_id, reviewed, when)
            cursor = db.execute(
                "INSERT INTO verdicts(map_id, reviewer, verdict, note, created) VALUES (?, ?, ?, ?, ?)",
                (map_id, name, verdict.value, text, when),
            )
            verdict_id = int(cursor.lastrowid or 0)
        return Verdict(
            id=verdict_id,
            case=case,
            map_id=map_id,
            method=reviewed.method,
            model_fingerprint=reviewed.model_fingerprint,
            reviewer=name,
            judgement=verdict,
            note=text,
            created=when,
        )

    # ------------------------------------------------------------------------------ reading

    def history(self, case: CaseRef | None = None) -> tuple[Verdict, ...]:
        """Every verdict (of ``case``, or all), oldest first."""
        query = _VERDICT_QUERY
        args: tuple[Any, ...] = ()
        if case is not None:
            query += " WHERE c.source = ? AND c.name = ? AND c.sha256 = ?"
            args = (case.source, case.name, case.sha256)
        with self._read() as db:
            return tuple(_verdict(row) for row in db.execute(query + " ORDER BY v.id", args))

    def latest(self, case: CaseRef, *, method: str | None = None) -> tuple[Verdict, ...]:
        """The newest verdict of each reviewer on each map of ``case`` (of ``method`` only when given)."""
        found = [v for v in self.history(case) if method is None or v.method == method]
        by_map: dict[int, list[Verdict]] = {}
        for verdict in found:
            by_map.setdefault(verdict.map_id, []).append(verdict)
        return tuple(v for group in by_map.values() for v in _latest_per_reviewer(group))

    def cases(self) -> tuple[CaseRef, ...]:
        """Every case with at least one map, in the order they were first judged."""
        with self._read() as db:
            rows = db.execute("SELECT source, name, sha256 FROM cases ORDER BY id").fetchall()
        return tuple(CaseRef(*row) for row in rows)

    def maps(self, case: CaseRef | None = None) -> tuple[StoredMap, ...]:
        """The stored maps (of ``case``, or all) with their verdicts, in the order first judged."""
        verdicts: dict[int, list[Verdict]] = {}
        for verdict in self.history(case):
            verdicts.setdefault(verdict.map_id, []).append(verdict)
        query = _MAP_QUERY
        args: tuple[Any, ...] = ()
        if case is not None:
            query += " WHERE c.source = ? AND c.name = ? AND c.sha256 = ?"
            args = (case.source, case.name, case.sha256)
        with self._read() as db:
            rows = db.execute(query + " ORDER BY m.id", args).fetchall()
        return tuple(_stored_map(row, tuple(verdicts.get(int(row[0]), ()))) for row in rows)

    def judged(self, source: str) -> dict[str, frozenset[str]]:
        """For the cases of the list ``source``: case name -> the reviewers who judged a map of it."""
        with self._read() as db:
            rows = db.execute(
                "SELECT DISTINCT c.name, v.reviewer FROM verdicts v JOIN maps m ON m.id = v.map_id "
                "JOIN cases c ON c.id = m.case_id WHERE c.source = ?",
                (source,),
            ).fetchall()
        found: dict[str, set[str]] = {}
        for name, reviewer in rows:
            found.setdefault(name, set()).add(reviewer)
        return {name: frozenset(names) for name, names in found.items()}

    def count(self) -> int:
        """How many verdicts the database holds."""
        with self._read() as db:
            return int(db.execute("SELECT COUNT(*) FROM verdicts").fetchone()[0])

    # ------------------------------------------------------------------------------ connections

    def _connect(self) -> sqlite3.Connection:
        try:
            db = sqlite3.connect(self.path, timeout=self.busy_timeout_s, isolation_level=None)
        except sqlite3.Error as exc:
            raise ReviewStoreError(self._problem("cannot be opened", exc)) from exc
        try:
            db.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_s * 1000)}")
            mode = db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise ReviewStoreError(
                    f"The review database {str(self.path)!r} cannot use write-ahead logging (journal mode {mode}); "
                    "put it on a local disk."
                )
            db.execute("PRAGMA synchronous = FULL")
            db.execute("PRAGMA foreign_keys = ON")
        except sqlite3.Error as exc:
            db.close()
            raise ReviewStoreError(self._problem("cannot be opened", exc)) from exc
        except ReviewStoreError:
            db.close()
            raise
        return db

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        db = self._connect()
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            raise ReviewStoreError(self._problem("could not be written", exc)) from exc
        finally:
            db.close()

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        db = self._connect()
        try:
            yield db
        except sqlite3.Error as exc:
            raise ReviewStoreError(self._problem("could not be read", exc)) from exc
        finally:
            db.close()

    def _problem(self, what: str, exc: sqlite3.Error) -> str:
        return (
            f"The review database {str(self.path)!r} {what} ({exc}); check that the file is a review database "
            "on a writable local disk, or choose another with " + DB_ENV + "."
        )


# ----------------------------------------------------------------------------------------
# internals

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS cases (
    id INTEGER PRIMARY KEY,
    source TEXT NOT NULL,
    name TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    UNIQUE (source, name, sha256)
);
CREATE TABLE IF NOT EXISTS maps (
    id INTEGER PRIMARY KEY,
    case_id INTEGER NOT NULL REFERENCES cases(id),
    model_name TEXT NOT NULL,
    model_fingerprint TEXT NOT NULL,
    method TEXT NOT NULL,
    title TEXT NOT NULL,
    params TEXT NOT NULL,
    seed INTEGER NOT NULL,
    baseline TEXT NOT NULL,
    target INTEGER NOT NULL,
    target_label TEXT NOT NULL,
    predictions TEXT NOT NULL,
    status TEXT NOT NULL,
    provenance TEXT NOT NULL,
    image BLOB NOT NULL,
    attribution BLOB,
    created TEXT NOT NULL,
    UNIQUE (case_id, model_fingerprint, method, params, seed, baseline, target)
);
CREATE TABLE IF NOT EXISTS verdicts (
    id INTEGER PRIMARY KEY,
    map_id INTEGER NOT NULL REFERENCES maps(id),
    reviewer TEXT NOT NULL,
    verdict TEXT NOT NULL CHECK (verdict IN ('plausible', 'not plausible', 'unsure')),
    note TEXT NOT NULL,
    created TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS verdicts_by_map ON verdicts(map_id);
"""

_VERDICT_QUERY = (
    "SELECT v.id, c.source, c.name, c.sha256, v.map_id, m.method, m.model_fingerprint, v.reviewer, v.verdict, "
    "v.note, v.created FROM verdicts v JOIN maps m ON m.id = v.map_id JOIN cases c ON c.id = m.case_id"
)
_MAP_QUERY = (
    "SELECT m.id, c.source, c.name, c.sha256, m.model_name, m.model_fingerprint, m.method, m.title, m.params, "
    "m.seed, m.baseline, m.target, m.target_label, m.predictions, m.status, m.provenance, m.image, "
    "m.attribution, m.created FROM maps m JOIN cases c ON c.id = m.case_id"
)


def _case_id(db: sqlite3.Connection, case: CaseRef) -> int:
    db.execute(
        "INSERT INTO cases(source, name, sha256) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
        (case.source, case.name, case.sha256),
    )
    row = db.execute(
        "SELECT id FROM cases WHERE source = ? AND name = ? AND sha256 = ?", (case.source, case.name, case.sha256)
    ).fetchone()
    return int(row[0])


def _map_id(db: sqlite3.Connection, case_id: int, m: ReviewedMap, when: str) -> int:
    """The map's row, written the first time it is judged (the caller holds the write lock, so
    looking first and inserting after cannot race; the arrays are compressed only when new)."""
    identity = (case_id, m.model_fingerprint, m.method, m.params_text, int(m.seed), m.baseline, int(m.target))
    found = db.execute(
        "SELECT id FROM maps WHERE case_id = ? AND model_fingerprint = ? AND method = ? AND params = ? "
        "AND seed = ? AND baseline = ? AND target = ?",
        identity,
    ).fetchone()
    if found is not None:
        return int(found[0])
    cursor = db.execute(
        "INSERT INTO maps(case_id, model_fingerprint, method, params, seed, baseline, target, model_name, title, "
        "target_label, predictions, status, provenance, image, attribution, created) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            *identity,
            m.model_name,
            m.title,
            m.target_label,
            _json([p.__dict__ for p in m.predictions]),
            m.status,
            _json(m.provenance),
            _array_blob(m.image),
            None if m.attribution is None else _array_blob(m.attribution),
            when,
        ),
    )
    return int(cursor.lastrowid or 0)


def _verdict(row: Sequence[Any]) -> Verdict:
    return Verdict(
        id=int(row[0]),
        case=CaseRef(row[1], row[2], row[3]),
        map_id=int(row[4]),
        method=row[5],
        model_fingerprint=row[6],
        reviewer=row[7],
        judgement=Judgement(row[8]),
        note=row[9],
        created=row[10],
    )


def _stored_map(row: Sequence[Any], verdicts: tuple[Verdict, ...]) -> StoredMap:
    from xaicore.explainers.results import Prediction

    reviewed = ReviewedMap(
        model_name=row[4],
        model_fingerprint=row[5],
        method=row[6],
        title=row[7],
        params=json.loads(row[8]),
        seed=int(row[9]),
        baseline=row[10],
        target=int(row[11]),
        target_label=row[12],
        predictions=tuple(Prediction(**p) for p in json.loads(row[13])),
        status=row[14],
        provenance=json.loads(row[15]),
        image=_blob_array(row[16]),
        attribution=None if row[17] is None else _blob_array(row[17]),
    )
    return StoredMap(
        id=int(row[0]), case=CaseRef(row[1], row[2], row[3]), map=reviewed, created=row[18], verdicts=verdicts
    )


def _latest_per_reviewer(verdicts: Sequence[Verdict]) -> tuple[Verdict, ...]:
    newest: dict[str, Verdict] = {}
    for verdict in sorted(verdicts, key=lambda v: v.id):
        newest[verdict.reviewer] = verdict  # insertion order: the reviewer's first verdict
    return tuple(newest.values())


def _reviewer(name: str) -> str:
    text = " ".join(str(name or "").split())
    if not text:
        raise ParameterError("Enter your name as reviewer before giving a verdict; every verdict carries it.")
    if len(text) > MAX_REVIEWER_CHARS:
        raise ParameterError(f"A reviewer name may have at most {MAX_REVIEWER_CHARS} characters.")
    return text


def _judgement(value: Judgement | str) -> Judgement:
    try:
        return Judgement(str(value))
    except ValueError:
        choices = ", ".join(repr(j.value) for j in Judgement)
        raise ParameterError(f"A verdict is one of {choices}, not {str(value)!r}.") from None


def _note(note: str) -> str:
    text = str(note or "").strip()
    if len(text) > MAX_NOTE_CHARS:
        raise ParameterError(
            f"A note may have at most {MAX_NOTE_CHARS:,} characters; this one has {len(text):,}. Shorten it."
        )
    return text


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="microseconds")


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=_plain)


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def _array_blob(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array, dtype=np.float32), allow_pickle=False)
    return zlib.compress(buffer.getvalue(), 6)


def _blob_array(blob: bytes) -> np.ndarray:
    return np.load(io.BytesIO(zlib.decompress(blob)), allow_pickle=False)
