"""Cards: a small, self-contained HTML report of what a run did, logged as ``card.html``.

Every step (and the pipeline's parent run, and ``compare`` and ``sweep``) builds a :class:`Card`
from its outputs and logs it at the root of its run's artifacts, where the MLflow UI shows it
rendered. A card is one HTML file with no external resources: its plots are embedded as PNG data
URIs and its style is inline, so it also reads well downloaded, attached to a ticket or mailed.
Everything put in a card is HTML-escaped.

Building a card is pure (no MLflow, no I/O); :func:`log_card` is the only side effect, and it never
fails the run: a card reports on work already done.
"""

from __future__ import annotations

import base64
import html
import io
import logging
import math
import numbers
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import mlflow
import numpy as np

if TYPE_CHECKING:
    # Only the steps that draw import matplotlib; the pipeline's driver builds its card without it.
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

logger = logging.getLogger(__name__)

CARD_FILE = "card.html"
# The address of `mlflow ui` / `mlflow server` when nothing says otherwise (their default).
DEFAULT_UI_URL = "http://127.0.0.1:5000"

_STYLE = """
body{font-family:-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;color:#1f2328;margin:1.5em;max-width:1100px}
h1{font-size:1.5em;margin:0 0 .2em}h2{font-size:1.15em;margin:1.4em 0 .5em;border-bottom:1px solid #d0d7de;padding-bottom:.2em}
p.subtitle{color:#57606a;margin:0 0 1em}
table{border-collapse:collapse;margin:.5em 0;font-size:.92em}
th,td{border:1px solid #d0d7de;padding:.3em .6em;text-align:left;vertical-align:top}
th{background:#f6f8fa}td.num{text-align:right;font-variant-numeric:tabular-nums}
figure{margin:.8em 0}figcaption{color:#57606a;font-size:.9em}img{max-width:100%;height:auto}
.good{color:#1a7f37;font-weight:600}.bad{color:#cf222e;font-weight:600}.note{color:#57606a}
code{background:#f6f8fa;padding:.1em .3em;border-radius:4px;font-size:.9em}
"""

# Words shown in green / red wherever they are a whole cell (statuses, verdicts, decisions).
_GOOD = frozenset({"passed", "promoted", "finished", "reused", "true", "yes", "already champion"})
_BAD = frozenset({"failed", "rejected", "killed", "false", "no", "missing", "not promoted"})


def format_value(value: Any, digits: int = 4) -> str:
    """A number with ``digits`` significant digits (integers in full, with separators); else text."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, numbers.Integral):
        return f"{int(value):,}"
    if isinstance(value, numbers.Real):
        value = float(value)
        if math.isnan(value):
            return "NaN"
        return f"{value:.{digits}g}"
    return str(value)


def _cell(value: Any, digits: int) -> str:
    text = format_value(value, digits)
    css = []
    if isinstance(value, numbers.Number) and not isinstance(value, bool):
        css.append("num")
    if text.strip().lower() in _GOOD:
        css.append("good")
    elif text.strip().lower() in _BAD:
        css.append("bad")
    attr = f' class="{" ".join(css)}"' if css else ""
    return f"<td{attr}>{html.escape(text)}</td>"


def figure_png(fig: Figure, dpi: int = 90) -> bytes:
    """The figure as PNG bytes (drawn without pyplot, so no global state and no display needed)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


class Card:
    """An HTML report built section by section; :meth:`render` gives the whole document."""

    def __init__(self, title: str, subtitle: str = ""):
        self.title = title
        self._parts: list[str] = [f"<h1>{html.escape(title)}</h1>"]
        if subtitle:
            self._parts.append(f'<p class="subtitle">{html.escape(subtitle)}</p>')

    def heading(self, text: str) -> Card:
        self._parts.append(f"<h2>{html.escape(text)}</h2>")
        return self

    def text(self, text: str, *, note: bool = False) -> Card:
        css = ' class="note"' if note else ""
        self._parts.append(f"<p{css}>{html.escape(text)}</p>")
        return self

    def code(self, text: str) -> Card:
        """A command or URI, shown verbatim."""
        self._parts.append(f"<p><code>{html.escape(text)}</code></p>")
        return self

    def facts(self, facts: Mapping[str, Any], digits: int = 4) -> Card:
        """A two-column table of ``name: value``; ``None`` values are left out."""
        rows = "".join(f"<tr><th>{html.escape(str(k))}</th>{_cell(v, digits)}</tr>" for k, v in facts.items() if v is not None)
        self._parts.append(f"<table>{rows}</table>")
        return self

    def table(
        self, rows: Iterable[Mapping[str, Any]], columns: Sequence[str] | None = None, *, digits: int = 4, links: Sequence[str] = ()
    ) -> Card:
        """A table with one row per mapping; ``columns`` chooses and orders them (default: the
        first row's keys). ``links`` names the columns whose cells may be ``(text, href)`` pairs."""
        rows = list(rows)
        links = (links,) if isinstance(links, str) else tuple(links)
        if columns is None:
            columns = list(rows[0]) if rows else []
        head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
        body = []
        for row in rows:
            cells = []
            for column in columns:
                value = row.get(column)
                if column in links and isinstance(value, tuple):
                    text, href = value
                    cells.append(f'<td><a href="{html.escape(href, quote=True)}">{html.escape(str(text))}</a></td>')
                else:
                    cells.append(_cell(value, digits))
            body.append(f"<tr>{''.join(cells)}</tr>")
        if not body:
            body.append(f'<tr><td colspan="{max(1, len(columns))}" class="note">(none)</td></tr>')
        self._parts.append(f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>")
        return self

    def image(self, png: bytes, caption: str) -> Card:
        """A PNG embedded as a data URI, with ``caption`` as its alt text and caption."""
        data = base64.b64encode(png).decode("ascii")
        alt = html.escape(caption, quote=True)
        self._parts.append(
            f'<figure><img src="data:image/png;base64,{data}" alt="{alt}"><figcaption>{html.escape(caption)}</figcaption></figure>'
        )
        return self

    def figure(self, fig: Figure, caption: str) -> Card:
        return self.image(figure_png(fig), caption)

    def link(self, text: str, href: str) -> Card:
        self._parts.append(f'<p><a href="{html.escape(href, quote=True)}">{html.escape(text)}</a></p>')
        return self

    def render(self) -> str:
        body = "\n".join(self._parts)
        return (
            '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f"<title>{html.escape(self.title)}</title>\n<style>{_STYLE}</style>\n</head>\n<body>\n{body}\n</body>\n</html>\n"
        )


def log_card(build: Callable[[], Card], artifact_file: str = CARD_FILE) -> None:
    """Build a card with ``build`` and log it on the active run (the MLflow UI renders it in the
    run's Artifacts tab).

    A card reports on work already done: if building or logging it fails (a plot numpy cannot
    draw, an upload that times out), the run goes on and a warning says why it has no card.
    """
    try:
        mlflow.log_text(build().render(), artifact_file)
    except Exception as exc:
        logger.warning("no %s for this run: %s: %s", artifact_file, type(exc).__name__, str(exc).splitlines()[0] if str(exc) else "")


def ui_url(tracking_uri: str) -> str:
    """Where the MLflow UI for ``tracking_uri`` is: the server itself for http(s) tracking URIs,
    else ``mlflow ui``'s default address (a local store has no UI until someone starts one)."""
    parts = urlsplit(tracking_uri)
    if parts.scheme in ("http", "https"):
        # Never put credentials of the tracking URI in a card.
        netloc = parts.netloc.rpartition("@")[2]
        return f"{parts.scheme}://{netloc}{parts.path.rstrip('/')}"
    return DEFAULT_UI_URL


def run_url(tracking_uri: str, experiment_id: str, run_id: str) -> str:
    """The MLflow UI page of a run."""
    return f"{ui_url(tracking_uri)}/#/experiments/{experiment_id}/runs/{run_id}"


def artifact_url(tracking_uri: str, experiment_id: str, run_id: str, artifact_path: str = CARD_FILE) -> str:
    """The MLflow UI page of one artifact of a run (e.g. its card)."""
    return f"{run_url(tracking_uri, experiment_id, run_id)}/artifacts/{artifact_path}"


def bar_figure(labels: Sequence[str], values: Sequence[float], title: str, xlabel: str) -> Figure:
    """Horizontal bars, one per label (e.g. coefficients); negative values drawn to the left."""
    from matplotlib.figure import Figure  # noqa: PLC0415 - see the import at the top

    fig = Figure(figsize=(6, 0.6 + 0.3 * max(1, len(labels))), layout="constrained")
    ax = fig.add_subplot()
    colors = ["#cf222e" if v < 0 else "#0969da" for v in values]
    ax.barh(list(labels), list(values), color=colors)
    ax.axvline(0, color="grey", linewidth=0.8)
    ax.invert_yaxis()
    ax.set(title=title, xlabel=xlabel)
    return fig


def histogram(ax: Axes, values: np.ndarray, bins: int, **style: Any) -> None:
    """A histogram of ``values`` as one filled outline (``ax.stairs``: one shape, not a patch per
    bar, several times faster to draw), also for (nearly) equal values: one bar then, where
    numpy's equal-width bins would be narrower than float precision and raise."""
    with np.errstate(over="ignore"):
        spread = float(values.max() - values.min()) if len(values) else 0.0
    if not np.isfinite(spread):
        # E.g. -1e308 and 1e308: equal-width bins of an infinite range; bin by rank instead.
        values = np.argsort(np.argsort(values)) / max(1, len(values) - 1)
        ax.set_xlabel("quantile (range too wide to draw)", fontsize=8)
        counts, edges = np.histogram(values, bins=bins)
    elif spread <= 1e-9 * max(1.0, float(np.abs(values).max(initial=0.0))):
        middle = float(values.mean()) if len(values) else 0.0
        counts, edges = np.histogram(values, bins=1, range=(middle - 0.5, middle + 0.5))
    else:
        counts, edges = np.histogram(values, bins=bins)
    ax.stairs(counts, edges, fill=True, **style)
