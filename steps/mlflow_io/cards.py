"""Cards: a small, self-contained HTML report of what a run did, logged as ``card.html``.

Every step (and the pipeline's parent run, and ``compare`` and ``sweep``) builds a :class:`Card`
from its outputs and logs it at the root of its run's artifacts, where the MLflow UI shows it
rendered. A card is one HTML file with no external resources: its plots are embedded as PNG data
URIs and its style is inline, so it also reads well downloaded, attached to a ticket or mailed.

How it is made: each :class:`Card` method adds a block (a heading, a paragraph, a table, an
image...) to ``card.blocks`` as plain data, numbers already formatted (:func:`format_value`).
:meth:`Card.render` hands the blocks to the jinja2 template ``templates/card.html.j2``, which lays
out the page. The template escapes everything it prints (autoescape), and links only to http(s)
addresses.

Building a card is pure (no MLflow, no I/O); :func:`log_card` is the only side effect, and it never
fails the run: a card reports on work already done.
"""

from __future__ import annotations

import base64
import functools
import html
import io
import logging
import math
import numbers
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import jinja2
import mlflow
import numpy as np
from markupsafe import Markup

from steps.core.errors import storage_error
from steps.core.text import format_value
from steps.mlflow_io.contracts import Artifact

if TYPE_CHECKING:
    # Only the steps that draw import matplotlib; the pipeline's driver builds its card without it.
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

logger = logging.getLogger(__name__)

CARD_FILE = Artifact.CARD
# The page's layout and style: a jinja2 template shipped beside this module.
_TEMPLATES = Path(__file__).with_name("templates")
_TEMPLATE_FILE = "card.html.j2"
# The address of `mlflow ui` / `mlflow server` when nothing says otherwise (their default).
DEFAULT_UI_URL = "http://127.0.0.1:5000"
# The query that opens a page of the MLflow UI in its Model training view (see _ui_page).
_MODEL_TRAINING_VIEW = "workflowType=machine_learning"

# Words shown in green / red wherever they are a whole cell (statuses, verdicts, decisions).
_GOOD = frozenset({"passed", "promoted", "finished", "reused", "true", "yes", "already champion"})
_BAD = frozenset({"failed", "rejected", "killed", "false", "no", "missing", "not promoted"})

# Links get an href only with these schemes (run and artifact pages of the MLflow UI); any other
# (javascript:, data:, file:, ...) is shown as its text.
_LINK_SCHEMES = frozenset({"http", "https"})


@dataclass(frozen=True)
class _Cell:
    """What the template shows in one table cell: the text, its CSS classes, and where it links to (if it does)."""

    text: str
    css: str = ""
    href: str | None = None


def _cell(value: Any, digits: int) -> _Cell:
    """A value as a cell: formatted, right-aligned if a number, green / red if a good / bad word."""
    text = format_value(value, digits)
    css = []
    if isinstance(value, numbers.Number) and not isinstance(value, bool):
        css.append("num")
    if text.strip().lower() in _GOOD:
        css.append("good")
    elif text.strip().lower() in _BAD:
        css.append("bad")
    return _Cell(text, " ".join(css))


def _table_cell(value: Any, digits: int, link: bool) -> _Cell:
    """A cell of :meth:`Card.table`; in a ``links`` column, ``(text, href)`` is a link."""
    if link and isinstance(value, tuple):
        text, href = value
        return _Cell(str(text), href=_web_href(href))
    return _cell(value, digits)


def _web_href(href: str) -> str | None:
    """``href`` if it is an http(s) address, else ``None``: the template shows such a link as its text."""
    try:
        return href if urlsplit(href).scheme in _LINK_SCHEMES else None
    except ValueError:  # e.g. an unclosed [ in the host
        return None


def figure_png(fig: Figure, dpi: int = 90) -> bytes:
    """The figure as PNG bytes (drawn without pyplot, so no global state and no display needed)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


class Card:
    """A report built block by block; :meth:`render` gives the whole HTML document.

    Each method adds one block to :attr:`blocks`: its ``kind`` (which part of the template shows
    it) and its fields, values already formatted. Each returns the card, so calls chain.
    """

    def __init__(self, title: str, subtitle: str = ""):
        self.title = title
        self.subtitle = subtitle
        self.blocks: list[SimpleNamespace] = []

    def _add(self, kind: str, **fields: Any) -> Card:
        # A namespace, not a dict: in a template, block.items would be the dict's method, not a field.
        self.blocks.append(SimpleNamespace(kind=kind, **fields))
        return self

    def heading(self, text: str) -> Card:
        return self._add("heading", text=text)

    def text(self, text: str, *, note: bool = False) -> Card:
        return self._add("text", text=text, note=note)

    def code(self, text: str) -> Card:
        """A command or URI, shown verbatim."""
        return self._add("code", text=text)

    def facts(self, facts: Mapping[str, Any], digits: int = 4) -> Card:
        """A two-column table of ``name: value``; ``None`` values are left out."""
        rows = [(str(name), _cell(value, digits)) for name, value in facts.items() if value is not None]
        return self._add("facts", rows=rows)

    def table(
        self, rows: Iterable[Mapping[str, Any]], columns: Sequence[str] | None = None, *, digits: int = 4, links: Sequence[str] = ()
    ) -> Card:
        """A table with one row per mapping; ``columns`` chooses and orders them (default: the
        first row's keys). ``links`` names the columns whose cells may be ``(text, href)`` pairs."""
        rows = list(rows)
        links = (links,) if isinstance(links, str) else tuple(links)
        if columns is None:
            columns = list(rows[0]) if rows else []
        cells = [[_table_cell(row.get(column), digits, column in links) for column in columns] for row in rows]
        return self._add("table", columns=list(columns), rows=cells)

    def image(self, png: bytes, caption: str) -> Card:
        """A PNG embedded as a data URI, with ``caption`` as its alt text and caption."""
        return self._add("image", base64=base64.b64encode(png).decode("ascii"), caption=caption)

    def figure(self, fig: Figure, caption: str) -> Card:
        return self.image(figure_png(fig), caption)

    def link(self, text: str, href: str) -> Card:
        """A paragraph linking to ``href`` (only ``text`` for other than http(s) addresses)."""
        return self._add("link", text=text, href=_web_href(href))

    def render(self) -> str:
        """The whole HTML document."""
        return _template().render(title=self.title, subtitle=self.subtitle, blocks=self.blocks)


def _escape(value: Any) -> Markup:
    """How the template prints every ``{{ value }}``: escaped by ``html.escape``, which writes quotes as
    ``&quot;`` and ``&#x27;`` like the cards built before the template did (jinja2's own escaping,
    markupsafe, writes the equivalent ``&#34;`` and ``&#39;``). Markup, e.g. what a macro returns, is
    already escaped: kept as is."""
    if isinstance(value, Markup):
        return value
    return Markup(html.escape(str(value)))


@functools.cache
def _template() -> jinja2.Template:
    """The card template, loaded once per process, when the first card is rendered."""
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(_TEMPLATES),
        # Always on: select_autoescape() goes by the file's extension and would not escape "*.j2".
        autoescape=True,
        finalize=_escape,
        undefined=jinja2.StrictUndefined,  # a misspelt name fails the render instead of showing nothing
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    return environment.get_template(_TEMPLATE_FILE)


def log_card(build: Callable[[], Card], artifact_file: str = CARD_FILE) -> None:
    """Build a card with ``build`` and log it on the active run (the MLflow UI renders it in the
    run's Artifacts tab).

    A card reports on work already done: if building or logging it fails (a plot numpy cannot
    draw, an upload that times out), the run goes on and a warning says why it has no card. A
    store that is full, read-only or not ours to write is the exception: it fails the run (the
    caller says so in one line), as it would fail the next artifact.
    """
    try:
        mlflow.log_text(build().render(), artifact_file)
    except Exception as exc:
        if storage_error(exc, artifact_file) is not None:
            raise
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


def _ui_page(tracking_uri: str, route: str) -> str:
    """The MLflow UI page at ``route``, in its Model training view.

    MLflow 3's UI picks its view from the URL's ``workflowType`` (else the GenAI / Model training
    switch its browser last used, else GenAI), not from the experiment's ``mlflow.experimentKind``
    tag; in the GenAI view a pipeline run is listed under "Evaluation runs".
    """
    return f"{ui_url(tracking_uri)}/#/experiments/{route}?{_MODEL_TRAINING_VIEW}"


def experiment_url(tracking_uri: str, experiment_id: str) -> str:
    """The MLflow UI's runs table of an experiment (each pipeline run with its steps nested under it)."""
    return _ui_page(tracking_uri, f"{experiment_id}/runs")


def run_url(tracking_uri: str, experiment_id: str, run_id: str) -> str:
    """The MLflow UI page of a run."""
    return _ui_page(tracking_uri, f"{experiment_id}/runs/{run_id}")


def artifact_url(tracking_uri: str, experiment_id: str, run_id: str, artifact_path: str = CARD_FILE) -> str:
    """The MLflow UI page of one artifact of a run (e.g. its card)."""
    return _ui_page(tracking_uri, f"{experiment_id}/runs/{run_id}/artifacts/{artifact_path}")


def bar_figure(labels: Sequence[str], values: Sequence[float], title: str, xlabel: str) -> Figure:
    """Horizontal bars, one per label (e.g. coefficients); negative values drawn to the left."""
    from matplotlib.figure import Figure  # noqa: PLC0415 - see the import at the top

    fig = Figure(figsize=(6, 0.6 + 0.3 * max(1, len(labels))), layout="constrained")
    ax = fig.add_subplot()
    values = np.asarray(values, dtype="float64")
    unit = drawing_unit(values)
    values = values / unit
    colors = ["#cf222e" if v < 0 else "#0969da" for v in values]
    ax.barh(list(labels), list(values), color=colors)
    ax.axvline(0, color="grey", linewidth=0.8)
    ax.invert_yaxis()
    ax.set(title=title, xlabel=xlabel)
    label_ticks(ax.xaxis, unit)
    return fig


# matplotlib computes an axis's span, margins and transform in float64: values near the largest
# float (1.8e308) overflow them (a singular transform, an infinite span). Beyond this magnitude,
# values are drawn in a unit of their own (a power of ten), which the axis shows.
DRAWABLE_MAGNITUDE = 1e300


def drawing_unit(*arrays: np.ndarray) -> float:
    """What to divide ``arrays`` by for matplotlib to draw them: 1.0 for ordinary values.

    Beyond DRAWABLE_MAGNITUDE, the power of ten that brings the largest finite magnitude below
    10, so that differences between the values stay finite too (residuals of -1e308 and 1e308);
    :func:`label_ticks` then shows the unit at the axis's end, like matplotlib's own ``1e6``.
    """
    largest = max((float(np.abs(a[np.isfinite(a)]).max(initial=0.0)) for a in arrays), default=0.0)
    return 10.0 ** math.floor(math.log10(largest)) if largest > DRAWABLE_MAGNITUDE else 1.0


def label_ticks(axis: Any, unit: float) -> None:
    """Show on ``axis`` (e.g. ``ax.xaxis``) the unit its values were drawn in (``×1e308``), if not 1."""
    if unit != 1.0:
        from matplotlib.ticker import FuncFormatter  # noqa: PLC0415 - see the import at the top

        formatter = FuncFormatter(lambda tick, _: format_value(float(tick), 3))
        formatter.set_offset_string(f"×1e{round(math.log10(unit))}")
        axis.set_major_formatter(formatter)


def histogram(ax: Axes, values: np.ndarray, bins: int, *, unit: float | None = None, **style: Any) -> None:
    """A histogram of ``values`` as one filled outline (``ax.stairs``: one shape, not a patch per
    bar, several times faster to draw), for any finite values: also (nearly) equal ones, and ones
    near the largest float.

    ``unit``: the values were already divided by it (:func:`drawing_unit`); by default the
    histogram finds its own. Non-finite values are left out.
    """
    values = np.asarray(values, dtype="float64")
    values = values[np.isfinite(values)]
    if unit is None:
        unit = drawing_unit(values)
        values = values / unit
    counts, edges = np.histogram(values, bins=_bin_edges(values, bins))
    ax.stairs(counts, edges, fill=True, **style)
    label_ticks(ax.xaxis, unit)


def _bin_edges(values: np.ndarray, bins: int) -> np.ndarray:
    """``bins`` equal-width edges over ``values``; one bar around them when they are (nearly) equal.

    numpy's own equal-width bins of a range narrower than float precision at the values'
    magnitude (1e300 and its next float, 1e16 and 1e16 + 2) are not distinct, and it raises.
    """
    low, high = (float(values.min()), float(values.max())) if len(values) else (0.0, 0.0)
    magnitude = max(abs(low), abs(high))
    if high - low > 1e-9 * max(1.0, magnitude):
        return np.linspace(low, high, bins + 1)
    middle = low + (high - low) / 2
    half = max(0.5, 1e-9 * magnitude)  # wide enough to be drawn at this magnitude
    largest = np.finfo("float64").max
    return np.array([max(middle - half, -largest), min(middle + half, largest)])
