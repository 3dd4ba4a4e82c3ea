"""What the three dashboards share: the page layout, filters, partial updates, charts and
the static files (uPlot, vendored: no CDN, no build step, works offline).

A service describes its dashboard as a :class:`Dashboard`: named panels, each a coroutine
that reads the service's own data and returns the context of the template of that name in
the service's ``templates/`` folder. :func:`install` serves it at ``/`` (every panel), each
panel alone at ``/dashboard/{panel}`` (what the page's script fetches every
``refresh`` seconds, with the page's query string), and the static files under
``/static/dashboard/``. Every route is public: panels show only public figures (what the
service already serves unsigned at ``/v1/info``, ``/v1/audit/*``, ``/metrics`` or the
chain's reads), never a user's objects.

Numbers are written for people (``12.5 GiB``) with the exact value beside them in a
``data-value`` attribute, which is what tables sort by and what the tests compare with the
JSON APIs.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import aiohttp_jinja2
import jinja2
from aiohttp import web
from markupsafe import Markup

from protocol.http import NotFound, public_route

TEMPLATES: Final = Path(__file__).parent / "templates"
STATIC: Final = Path(__file__).parent / "static"
_TYPES: Final = {".js": "text/javascript", ".css": "text/css", ".LICENSE": "text/plain"}
# Read once at import (~60 KB): serving them never touches the disk from the event loop.
_FILES: Final = {
    path.name: (path.read_bytes(), _TYPES.get(path.suffix, "application/octet-stream"))
    for path in STATIC.iterdir()
    if path.is_file()
}

NONE: Final = "\u2013"  # an en dash: no value
Panel = Callable[[web.Request], Awaitable[Mapping[str, Any]]]


@dataclass(frozen=True, slots=True)
class Dashboard:
    """A service's dashboard: ``panels`` in page order; each name is also its template's."""

    title: str
    templates: Path  # the service's own templates folder
    panels: Mapping[str, Panel]
    refresh: Mapping[str, float] = field(default_factory=dict)  # seconds; 0 or absent: never
    wide: frozenset[str] = frozenset()  # panels that take the page's whole width
    fragments: Mapping[str, Panel] = field(default_factory=dict)  # fetched on demand only


DASHBOARD: Final = web.AppKey("dashboard", Dashboard)


def install(app: web.Application, dashboard: Dashboard) -> None:
    """Serve ``dashboard`` at ``/`` on ``app``, with its panels and static files."""
    loader = jinja2.ChoiceLoader(
        [jinja2.FileSystemLoader(dashboard.templates), jinja2.FileSystemLoader(TEMPLATES)]
    )
    env = aiohttp_jinja2.setup(app, loader=loader, autoescape=True)
    env.filters.update(FILTERS)
    env.globals["figure"] = figure
    app[DASHBOARD] = dashboard
    app.router.add_get("/", page)
    app.router.add_get("/dashboard/{panel}", panel)
    app.router.add_get("/static/dashboard/{name}", static)


@public_route
async def page(request: web.Request) -> web.Response:
    started = time.perf_counter()
    dashboard = request.app[DASHBOARD]
    names = list(dashboard.panels)
    contexts = await asyncio.gather(*(dashboard.panels[n](request) for n in names))
    response = aiohttp_jinja2.render_template(
        "page.html",
        request,
        {
            "title": dashboard.title,
            "panels": dict(zip(names, contexts, strict=True)),
            "refresh": dashboard.refresh,
            "wide": dashboard.wide,
            "query": request.query_string,
        },
    )
    response.headers["X-Render-Ms"] = f"{(time.perf_counter() - started) * 1000:.1f}"
    return response


@public_route
async def panel(request: web.Request) -> web.Response:
    started = time.perf_counter()
    dashboard = request.app[DASHBOARD]
    name = request.match_info["panel"]
    found = dashboard.panels.get(name) or dashboard.fragments.get(name)
    if found is None:
        raise NotFound("no_panel", f"this dashboard's panels are {', '.join(dashboard.panels)}")
    context = await found(request)
    response = aiohttp_jinja2.render_template(f"{name}.html", request, {"d": context})
    response.headers["X-Render-Ms"] = f"{(time.perf_counter() - started) * 1000:.1f}"
    return response


@public_route
async def static(request: web.Request) -> web.Response:
    found = _FILES.get(request.match_info["name"])
    if found is None:
        raise NotFound("not_found", "no such dashboard file")
    body, content_type = found
    return web.Response(
        body=body, content_type=content_type, headers={"Cache-Control": "max-age=3600"}
    )


# --- numbers for people -------------------------------------------------------------------


def size(value: float | None) -> str:
    """Bytes in binary units: ``12.5 GiB``."""
    if value is None:
        return NONE
    amount = float(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(amount) < 1024 or unit == "PiB":
            return f"{amount:.0f} {unit}" if unit == "B" else f"{amount:.1f} {unit}"
        amount /= 1024
    raise AssertionError("unreachable")


def tao(rao: float | None) -> str:
    """Rao as TAO, to the rao: ``1.250000000 τ``."""
    if rao is None:
        return NONE
    whole, part = divmod(int(rao), 10**9)
    return f"{whole:,}.{part:09d} τ"


def pct(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return NONE
    return f"{value * 100:.1f}%"


def ms(value: float | None) -> str:
    return NONE if value is None else f"{value:.1f} ms"


def ago(moment: float | None, now: float | None = None) -> str:
    """How long ago a unix time was: ``12 s ago``, ``3 min ago``."""
    if moment is None:
        return "never"
    seconds = max(0.0, (time.time() if now is None else now) - moment)
    return f"{duration(seconds)} ago"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return NONE
    for unit, length in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= length:
            return f"{seconds / length:.1f} {unit}"
    return f"{seconds:.0f} s"


def when(moment: float | None) -> str:
    """A unix time in UTC, to the second."""
    if moment is None:
        return NONE
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(moment))


def short(key: str | None) -> str:
    """A hotkey or hash, shortened: the start and end a person compares."""
    if not key:
        return NONE
    return key if len(key) <= 14 else f"{key[:6]}…{key[-5:]}"


def number(value: float | None) -> str:
    return NONE if value is None else f"{value:,}"


def figure(key: str, value: object, kind: str = "number") -> Markup:
    """``value`` for people, with the exact value in ``data-value`` and its name in
    ``data-k`` (what the tests read back and compare with the JSON APIs)."""
    text = FILTERS[kind](value) if value is not None else NONE
    raw = "" if value is None else value
    return Markup('<span class="fig" data-k="{}" data-value="{}">{}</span>').format(key, raw, text)


FILTERS: Final[dict[str, Callable[..., str]]] = {
    "size": size,
    "tao": tao,
    "pct": pct,
    "ms": ms,
    "ago": ago,
    "duration": duration,
    "when": when,
    "short": short,
    "number": number,
}


# --- charts -------------------------------------------------------------------------------


def chart(
    x: Sequence[float],
    series: Mapping[str, Sequence[float | None]],
    *,
    time_axis: bool = True,
    x_range: tuple[float, float] | None = None,
) -> str:
    """A chart's data for a ``data-chart`` attribute: ``dashboard.js`` draws it with uPlot
    (x in unix seconds when ``time_axis``; one line per series, gaps where a value is None)."""
    return json.dumps(
        {
            "time": time_axis,
            "range": x_range,
            "x": list(x),
            "series": [
                {"label": label, "values": list(values)} for label, values in series.items()
            ],
        },
        separators=(",", ":"),
    )


@dataclass(slots=True)
class Bucket:
    """What happened in one ``seconds``-long slot starting at ``start``."""

    start: float
    ok: int = 0
    failed: int = 0
    latency_ms_sum: float = 0.0
    batches: int = 0

    @property
    def rate(self) -> float | None:
        total = self.ok + self.failed
        return self.ok / total if total else None

    @property
    def mean_latency_ms(self) -> float | None:
        return self.latency_ms_sum / self.batches if self.batches else None


class Buckets:
    """A history for a chart in bounded memory: one :class:`Bucket` per ``seconds``, the
    last ``keep`` of them (a minute each for 7 days by default: ~10k small objects)."""

    def __init__(self, seconds: float = 60.0, keep: int = 7 * 24 * 60) -> None:
        self.seconds = seconds
        self._buckets: deque[Bucket] = deque(maxlen=keep)

    def add(self, now: float, *, ok: int, failed: int, latency_ms: float) -> None:
        start = now - now % self.seconds
        if not self._buckets or self._buckets[-1].start < start:
            self._buckets.append(Bucket(start))
        bucket = self._buckets[-1]  # a clock that stepped back adds to the latest slot
        bucket.ok += ok
        bucket.failed += failed
        bucket.latency_ms_sum += latency_ms
        bucket.batches += 1

    def since(self, moment: float) -> list[Bucket]:
        return [b for b in self._buckets if b.start + self.seconds > moment]

    def starting_from(self, start: float) -> list[Bucket]:
        """The buckets that start at ``start`` or later."""
        return [b for b in self._buckets if b.start >= start]

    def load(self, buckets: Iterable[Bucket]) -> None:
        """Start over from a saved history (oldest first; the newest ``keep`` are kept)."""
        self._buckets.clear()
        self._buckets.extend(buckets)

    def totals(self, moment: float) -> Bucket:
        """Everything since ``moment`` in one bucket."""
        total = Bucket(moment)
        for b in self.since(moment):
            total.ok += b.ok
            total.failed += b.failed
            total.latency_ms_sum += b.latency_ms_sum
            total.batches += b.batches
        return total


WINDOWS: Final = {"1h": 3600.0, "24h": 86400.0, "7d": 7 * 86400.0}


def window(request: web.Request, default: str = "1h") -> tuple[str, float]:
    """The chart window the page asks for (``?window=1h|24h|7d``): its name and seconds."""
    name = request.query.get("window", default)
    if name not in WINDOWS:
        name = default
    return name, WINDOWS[name]
