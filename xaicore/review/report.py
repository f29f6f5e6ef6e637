"""The review report: what each reviewer saw and decided, one page per case, as HTML and PDF.

:func:`build_review_report` reads everything from the review database
(:class:`~xaicore.review.verdicts.ReviewStore`): each case's model input, the predictions, each
judged method's stored raw map (drawn again here exactly as the Review page drew it:
:data:`REVIEW_VIEW`, by :mod:`xaicore.render.heatmaps`, with its colour bar in attribution
units), every reviewer's latest verdict and note (and how many earlier ones the history holds),
the model's name and fingerprint, the method's parameters, seed, baseline and target, and the
library versions the map was made with. Neither the model nor the image files are needed, so the
report can be made again from the database alone (``xai review-report DB --out DIR``).

:func:`html_text` writes a self-contained page (pictures inlined as PNG, every text escaped);
:func:`pdf_bytes` one PDF page per case with matplotlib (text drawn as plain text: a ``$`` in a
note is not read as mathematics).
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import io
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from xaicore.render import heatmaps
from xaicore.review.verdicts import CaseRef, ReviewStore, StoredMap, Verdict

VERSION_KEYS = ("xaicore", "torch", "torchvision", "captum", "numpy", "python")


@dataclass(frozen=True)
class ReviewView:
    """How a map is drawn for review: signed colours over the model input, clipped at a
    percentile of |attribution|."""

    mode: str = "all"
    channel: str = "sum"
    alpha: float = 0.8
    percentile: float = heatmaps.DEFAULT_PERCENTILE

    def describe(self) -> str:
        meaning = heatmaps.COLOR_MEANING if self.mode == "all" else "darker red: stronger evidence"
        return (
            f"Maps are drawn over the model input ({meaning}), each clipped at the {self.percentile:g}th "
            "percentile of its |attribution|; the bar under a map gives that value in attribution units."
        )


REVIEW_VIEW = ReviewView()
"""The one view the Review page shows and the report draws again."""


@dataclass(frozen=True)
class ReportMap:
    """One judged map as the report shows it."""

    title: str
    method: str
    model_name: str
    model_fingerprint: str
    settings: str
    status: str
    tile: np.ndarray
    colorbar: np.ndarray | None
    colorbar_text: str
    latest: tuple[Verdict, ...]
    earlier: int
    history: tuple[Verdict, ...]


@dataclass(frozen=True)
class CasePage:
    """One case: its model input, what the model predicted, and each judged map."""

    case: CaseRef
    image: np.ndarray
    prediction: str
    target: str
    maps: tuple[ReportMap, ...]
    models: tuple[tuple[str, str], ...]
    versions: Mapping[str, str]


@dataclass(frozen=True)
class ReviewReport:
    """Every case of a review database that has a judged map, in the order first judged."""

    pages: tuple[CasePage, ...]
    database: str
    created: str
    view: ReviewView = REVIEW_VIEW

    def __len__(self) -> int:
        return len(self.pages)


def build_review_report(
    store: ReviewStore,
    *,
    cases: Sequence[CaseRef] | None = None,
    view: ReviewView = REVIEW_VIEW,
    created: str | None = None,
) -> ReviewReport:
    """The report of ``cases`` (every case in the database when ``None``); ``created`` (default
    now, UTC) is the time written on it: the same database and time give the same files."""
    chosen = tuple(cases) if cases is not None else store.cases()
    pages = []
    for case in chosen:
        maps = store.maps(case)
        if maps:
            pages.append(_page(case, maps, view))
    when = created or _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
    return ReviewReport(pages=tuple(pages), database=str(store.path), created=when, view=view)


def draw_map(attribution: np.ndarray | None, image: np.ndarray, status: str, *, view: ReviewView = REVIEW_VIEW):
    """A stored map drawn as on the Review page: ``(tile uint8, colour bar uint8 or None,
    colour bar text)``; a map without values is the neutral grey tile with its status."""
    if attribution is None:
        return heatmaps.grey_tile(*image.shape[:2]), None, status
    tile = heatmaps.heatmap_tile(
        attribution, mode=view.mode, channel=view.channel, image=image, alpha=view.alpha, percentile=view.percentile
    )
    if tile.status.value != "ok":
        return tile.rgb, None, tile.caption
    bar = heatmaps.colorbar(tile.clip, mode=view.mode, width=256, alpha=view.alpha)
    return tile.rgb, bar, heatmaps.colorbar_text(tile.clip, mode=view.mode, percentile=view.percentile)


def verdict_line(verdict: Verdict) -> str:
    """``Dr Ada: not plausible, 2026-12-07 23:41 UTC: "edges only"``."""
    when = verdict.created[:16].replace("T", " ") + " UTC"
    note = f': "{verdict.note}"' if verdict.note else ""
    return f"{verdict.reviewer}: {verdict.judgement.value}, {when}{note}"


# ----------------------------------------------------------------------------------------
# files


def write_report(report: ReviewReport, out_dir: str | Path, *, stem: str = "review-report") -> tuple[Path, Path]:
    """Write ``<stem>.html`` and ``<stem>.pdf`` into ``out_dir`` (made when missing)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    html_path, pdf_path = out / f"{stem}.html", out / f"{stem}.pdf"
    html_path.write_text(html_text(report), encoding="utf-8")
    pdf_path.write_bytes(pdf_bytes(report))
    return html_path, pdf_path


def html_text(report: ReviewReport) -> str:
    """The report as one self-contained HTML page (a printed page per case)."""
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'><title>Review report</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>Review report</h1>",
        f"<p>{_e(_header(report))}</p><p>{_e(report.view.describe())}</p>",
    ]
    for number, page in enumerate(report.pages, start=1):
        parts.append("<section class='case'>")
        parts.append(f"<h2>Case {number} of {len(report)}: {_e(page.case.name)}</h2>")
        parts.append(f"<p class='meta'>{_e(_case_meta(page))}</p>")
        parts.append(f"<p><b>Prediction:</b> {_e(page.prediction)}. <b>Explained:</b> {_e(page.target)}.</p>")
        parts.append("<div class='grid'>")
        parts.append(
            f"<figure><img src='{_data_url(page.image)}' alt='model input'><figcaption>model input</figcaption>"
        )
        parts.append("</figure>")
        for item in page.maps:
            parts.append("<figure class='map'>")
            parts.append(f"<img src='{_data_url(item.tile)}' alt='{_e(item.title)} map'>")
            if item.colorbar is not None:
                parts.append(f"<img class='bar' src='{_data_url(item.colorbar)}' alt='{_e(item.colorbar_text)}'>")
            parts.append(f"<figcaption><b>{_e(item.title)}</b><br>{_e(item.settings)}<br>{_e(item.colorbar_text)}")
            parts.append("<ul>")
            for verdict in item.latest:
                parts.append(f"<li class='verdict'>{_e(verdict_line(verdict))}</li>")
            parts.append("</ul>")
            if item.earlier:
                history = "".join(f"<li>{_e(verdict_line(v))}</li>" for v in item.history)
                parts.append(f"<details><summary>{_e(_earlier(item.earlier))}</summary><ol>{history}</ol></details>")
            parts.append("</figcaption></figure>")
        parts.append("</div>")
        parts.append(f"<p class='meta'>{_e(_provenance(page))}</p>")
        parts.append("</section>")
    parts.append("</body></html>")
    return "\n".join(parts)


def pdf_bytes(report: ReviewReport) -> bytes:
    """The report as a PDF, one A4 page per case (matplotlib, no system libraries)."""
    from matplotlib.backends.backend_pdf import PdfPages
    from matplotlib.figure import Figure

    buffer = io.BytesIO()
    metadata = {"Title": "Review report", "Creator": "xaicore", "CreationDate": None}
    with PdfPages(buffer, metadata=metadata) as pdf:
        for number, page in enumerate(report.pages, start=1):
            figure = Figure(figsize=_A4)
            _draw_page(figure, report, page, number)
            pdf.savefig(figure)
    return buffer.getvalue()


# ----------------------------------------------------------------------------------------
# internals


def _page(case: CaseRef, maps: Sequence[StoredMap], view: ReviewView) -> CasePage:
    first = maps[0].map
    top = first.predictions[0] if first.predictions else None
    prediction = f"{top.label} ({top.probability:.1%})" if top is not None else "not recorded"
    entries = []
    for stored in maps:
        m = stored.map
        tile, bar, bar_text = draw_map(m.attribution, m.image, m.status, view=view)
        latest = stored.latest()
        entries.append(
            ReportMap(
                title=m.title,
                method=m.method,
                model_name=m.model_name,
                model_fingerprint=m.model_fingerprint,
                settings=_settings(m.params, seed=m.seed, baseline=m.baseline, model=m.model_name),
                status=m.status,
                tile=tile,
                colorbar=bar,
                colorbar_text=bar_text,
                latest=latest,
                earlier=len(stored.verdicts) - len(latest),
                history=stored.verdicts,
            )
        )
    models = tuple(dict.fromkeys((s.map.model_name, s.map.model_fingerprint) for s in maps))
    versions = first.provenance.get("versions", {}) if isinstance(first.provenance, Mapping) else {}
    return CasePage(
        case=case,
        image=heatmaps.to_uint8(first.image),
        prediction=prediction,
        target=f"class {first.target_label} (index {first.target})",
        maps=tuple(entries),
        models=models,
        versions={k: str(versions[k]) for k in VERSION_KEYS if k in versions},
    )


def _settings(params: Mapping[str, Any], *, seed: int, baseline: str, model: str) -> str:
    shown = ", ".join(f"{k}={v}" for k, v in sorted(params.items()))
    return f"model {model}; " + (f"{shown}; " if shown else "") + f"seed {seed}; baseline {baseline}"


def _header(report: ReviewReport) -> str:
    return f"{len(report)} case{'s' if len(report) != 1 else ''} from {report.database}, made {report.created}."


def _case_meta(page: CasePage) -> str:
    return f"from {page.case.source}; file sha256 {page.case.sha256}"


def _provenance(page: CasePage) -> str:
    models = "; ".join(f"{name}: fingerprint {fingerprint}" for name, fingerprint in page.models)
    versions = ", ".join(f"{k} {v}" for k, v in page.versions.items())
    return f"Model {models}. Versions: {versions or 'not recorded'}."


def _earlier(n: int) -> str:
    return f"{n} earlier verdict{'s' if n != 1 else ''} in the history"


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _png(rgb: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(rgb, dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def _data_url(rgb: np.ndarray) -> str:
    return "data:image/png;base64," + base64.b64encode(_png(rgb)).decode("ascii")


_CSS = """
body { font-family: sans-serif; margin: 2em; color: #1a1a1a; }
section.case { page-break-after: always; border-top: 1px solid #999; padding-top: 1em; }
.grid { display: flex; flex-wrap: wrap; gap: 1em; }
figure { margin: 0; width: 260px; }
figure img { width: 256px; image-rendering: pixelated; display: block; }
figure img.bar { image-rendering: auto; }
figcaption { font-size: 0.85em; }
.meta { font-size: 0.8em; color: #444; word-break: break-all; }
li.verdict { margin: 0.2em 0; }
"""

_COLUMNS = 3
_A4 = (8.27, 11.69)  # inches


def tile_box(k: int, cells: int) -> tuple[float, float, float, float]:
    """Where the ``k``-th picture of a PDF page with ``cells`` pictures (the model input first,
    then one per map) lies: (left, bottom, width, height) as fractions of the page, square on it."""
    rows = -(-cells // _COLUMNS)
    top, bottom = 0.88, 0.09
    row_h = (top - bottom) / max(rows, 2)
    width = 0.27
    row, column = divmod(k, _COLUMNS)
    left = 0.05 + column * (width + 0.045)
    side = min(width, row_h * 0.5 * _A4[1] / _A4[0])
    height = side * _A4[0] / _A4[1]
    return left, top - row * row_h - height, side, height


def _draw_page(figure: Any, report: ReviewReport, page: CasePage, number: int) -> None:
    def text(x: float, y: float, words: str, **style: Any) -> None:
        figure.text(x, y, words, parse_math=False, va="top", **style)

    text(0.05, 0.975, f"Case {number} of {len(report)}: {page.case.name}", fontsize=13, weight="bold")
    text(0.05, 0.952, _wrapped(_case_meta(page), 110), fontsize=6.5, color="#444444")
    text(0.05, 0.93, f"Prediction: {page.prediction}.  Explained: {page.target}.", fontsize=9)
    text(0.05, 0.912, _wrapped(report.view.describe(), 120), fontsize=6.5, color="#444444")
    cells: list[tuple[str, np.ndarray, np.ndarray | None, list[str]]] = [("model input", page.image, None, [])]
    for item in page.maps:
        lines = [item.settings, item.colorbar_text] + [verdict_line(v) for v in item.latest]
        if item.earlier:
            lines.append(f"({_earlier(item.earlier)})")
        cells.append((item.title, item.tile, item.colorbar, lines))
    for k, (title, picture, bar, lines) in enumerate(cells):
        left, bottom, side, height = tile_box(k, len(cells))
        axes = figure.add_axes((left, bottom, side, height))
        axes.imshow(picture, interpolation="nearest")
        axes.set_axis_off()
        y = bottom - 0.004
        if bar is not None:
            bar_h = side * bar.shape[0] / bar.shape[1] * _A4[0] / _A4[1]
            bar_axes = figure.add_axes((left, y - bar_h, side, bar_h))
            bar_axes.imshow(bar, interpolation="bilinear")
            bar_axes.set_axis_off()
            y -= bar_h + 0.004
        text(left, y, title, fontsize=8, weight="bold")
        body = "\n".join(_wrapped(line, 46) for line in lines)
        text(left, y - 0.014, body, fontsize=6.5)
    text(0.05, 0.06, _wrapped(_provenance(page), 130), fontsize=6, color="#444444")
    text(0.05, 0.025, _header(report), fontsize=6, color="#444444")


def _wrapped(line: str, width: int) -> str:
    return "\n".join(textwrap.wrap(line, width=width, break_long_words=True)) or line
