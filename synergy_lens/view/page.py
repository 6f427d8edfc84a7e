"""A self-contained HTML page of figures, tables and texts: works offline, escapes all text.

What and why
------------
The report must open from a file, on a machine with no network, years later. So:

- Plotly's JavaScript is inlined **once**, in ``<head>`` (``plotly.offline.get_plotlyjs()``),
  and each figure is ``fig.to_html(full_html=False, include_plotlyjs=False)``; figure data
  is JSON that Plotly itself escapes (``<`` as ``\\u003c``).
- CircuitsVis's bundle is inlined once, only if a CircuitsVis view is added, and each view
  is its :attr:`~synergy_lens.view.circuits.OfflineHTML.fragment`.
- Every text that came from a user or a model (prompts, completions, table cells, settings,
  captions) goes through :func:`escape`, so ``<script>alert(1)</script>`` in a prompt shows
  as those characters and never runs; control characters are shown as ``\\xNN``.
- No ``src``/``href`` points outside the file: no CDN, no web fonts, no logo link
  (``displaylogo=False``).

>>> page = Report("demo")
>>> page.text("<b>bold?</b>").to_html().count("&lt;b&gt;bold?&lt;/b&gt;")
1
"""

from __future__ import annotations

import datetime as _dt
import html
import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from synergy_lens.view import style as S

__all__ = ["Report", "escape"]

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")

_CSS = """
:root { --syn: %(syn)s; --red: %(red)s; }
* { box-sizing: border-box; }
body { font-family: %(font)s; color: #222; margin: 0; background: #fafafa; line-height: 1.45; }
header { background: white; border-bottom: 3px solid var(--syn); padding: 18px 32px; }
header h1 { margin: 0 0 4px 0; font-size: 1.6em; }
header .sub { color: #555; }
nav { background: white; padding: 8px 32px; border-bottom: 1px solid #ddd; font-size: 0.92em; }
nav a { margin-right: 14px; color: var(--red); text-decoration: none; }
main { padding: 8px 32px 40px 32px; max-width: 1400px; }
section { background: white; border: 1px solid #e3e3e3; border-radius: 6px; padding: 12px 20px; margin: 16px 0; }
h2 { border-left: 5px solid var(--syn); padding-left: 10px; font-size: 1.25em; }
p.caption { color: #444; font-size: 0.92em; margin-top: 2px; }
table.sl { border-collapse: collapse; font-size: 0.88em; margin: 8px 0; }
table.sl th, table.sl td { border-bottom: 1px solid #e5e5e5; padding: 3px 10px; text-align: right; }
table.sl th { background: #f3f3f3; }
table.sl td { vertical-align: top; }
table.sl.text th, table.sl.text td { text-align: left; }
table.sl td:first-child, table.sl th:first-child { text-align: left; }
table.settings th { text-align: left; }
table.settings td { text-align: left; font-family: ui-monospace, Menlo, Consolas, monospace; }
.note { background: #fff6ef; border-left: 4px solid var(--syn); padding: 6px 12px; }
details { margin: 6px 0; }
summary { cursor: pointer; }
pre.text { white-space: pre-wrap; word-break: break-word; background: #f6f6f6; padding: 8px; border-radius: 4px;
           font-size: 0.88em; }
footer { color: #777; font-size: 0.85em; padding: 0 32px 24px 32px; }
"""


def escape(text: Any) -> str:
    """HTML-escape any value shown as text (``&``, ``<``, ``>``, quotes); control characters
    (NUL, escape, ...) become visible ``\\xNN`` instead of silently corrupting the page."""
    s = text if isinstance(text, str) else str(text)
    s = _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", s)
    return html.escape(s, quote=True)


def _anchor(title: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")
    return slug or "section"


class Report:
    """An HTML report built part by part; :meth:`to_html` gives one self-contained page.

    Every ``add``-style method returns the report, so calls chain::

        page = Report("SmolLM2 synergy", subtitle="60 prompts x 100 tokens")
        page.section("Layer profile").figure(plot_layer_profile(profile), "Inverted U ...")
        page.save("report.html")
    """

    def __init__(self, title: str, *, subtitle: str | None = None) -> None:
        self.title = title
        self.subtitle = subtitle
        self._sections: list[tuple[str, str, list[str]]] = []  # (anchor, title, parts)
        self._n_figures = 0
        self._uses_circuitsvis = False

    # -- structure ---------------------------------------------------------------
    def section(self, title: str, intro: str | None = None) -> Report:
        """Start a section (listed in the page's navigation bar); ``intro`` is a paragraph."""
        anchor = _anchor(title)
        taken = {a for a, _, _ in self._sections}
        base, n = anchor, 2
        while anchor in taken:
            anchor, n = f"{base}-{n}", n + 1
        self._sections.append((anchor, title, []))
        if intro:
            self.text(intro)
        return self

    def _add(self, part: str) -> Report:
        if not self._sections:
            self.section("Results")
        self._sections[-1][2].append(part)
        return self

    # -- content -----------------------------------------------------------------
    def text(self, text: str, *, note: bool = False) -> Report:
        """A paragraph of plain text (escaped). ``note=True`` highlights it."""
        cls = ' class="note"' if note else ""
        return self._add(f"<p{cls}>{escape(text)}</p>")

    def figure(self, fig: Any, caption: str | None = None) -> Report:
        """A Plotly figure (its JavaScript comes from the one copy in the page head)."""
        self._n_figures += 1
        div = fig.to_html(full_html=False, include_plotlyjs=False, config=S.PLOTLY_CONFIG,
                          div_id=f"sl-figure-{self._n_figures}", default_width="100%")
        cap = f'<p class="caption">{escape(caption)}</p>' if caption else ""
        return self._add(f'<div class="figure">{div}{cap}</div>')

    def table(self, frame: Any, caption: str | None = None, *, index: bool = True, max_rows: int = 400,
              digits: int = 4, text: bool = False) -> Report:
        """A pandas DataFrame as an HTML table; every cell and header is escaped.

        Numbers are right-aligned with ``digits`` significant digits; ``text=True`` left-aligns
        every column (for tables of words).
        """
        shown = frame.head(max_rows)
        body = shown.to_html(escape=True, index=index, border=0, classes="sl text" if text else "sl", na_rep="–",
                             float_format=lambda v: f"{v:.{digits}g}")
        more = f" (first {max_rows} of {len(frame)} rows)" if len(frame) > max_rows else ""
        cap = f'<p class="caption">{escape((caption or "") + more)}</p>' if caption or more else ""
        return self._add(f'<div class="table">{body}{cap}</div>')

    def settings(self, settings: Mapping[str, Any], caption: str | None = None) -> Report:
        """A two-column table of settings (nested values shown as JSON), escaped."""
        rows = "".join(
            f"<tr><td>{escape(k)}</td><td>{escape(v if isinstance(v, str) else json.dumps(v, default=str))}</td></tr>"
            for k, v in settings.items()
        )
        cap = f'<p class="caption">{escape(caption)}</p>' if caption else ""
        return self._add(f'<table class="sl settings"><tr><th>setting</th><th>value</th></tr>{rows}</table>{cap}')

    def circuitsvis(self, view: Any, caption: str | None = None) -> Report:
        """A :class:`~synergy_lens.view.circuits.OfflineHTML` view (bundle inlined once per page)."""
        fragment = getattr(view, "fragment", None)
        if fragment is None:
            raise TypeError("pass a view from synergy_lens.view.circuits (OfflineHTML); a plain "
                            "circuitsvis RenderedHTML would load its script from the web")
        self._uses_circuitsvis = True
        cap = f'<p class="caption">{escape(caption)}</p>' if caption else ""
        return self._add(f'<div class="circuitsvis-view">{fragment}{cap}</div>')

    def texts(
        self,
        prompts: Sequence[str],
        completions: Sequence[str] | None = None,
        *,
        categories: Sequence[str] | None = None,
        open_first: int = 0,
    ) -> Report:
        """Prompts and their completions, each in a collapsible block; all text escaped."""
        parts = []
        for i, prompt in enumerate(prompts):
            cat = f" [{escape(categories[i])}]" if categories and categories[i] else ""
            short = prompt if len(prompt) <= 90 else prompt[:87] + "..."
            comp = ""
            if completions is not None and i < len(completions):
                comp = f'<div>completion:</div><pre class="text completion">{escape(completions[i])}</pre>'
            opened = " open" if i < open_first else ""
            parts.append(
                f'<details{opened} class="prompt"><summary>#{i}{cat} {escape(short)}</summary>'
                f'<div>prompt:</div><pre class="text prompt-text">{escape(prompt)}</pre>{comp}</details>'
            )
        return self._add("".join(parts))

    def raw_html(self, fragment: str) -> Report:
        """Trusted HTML written by the caller (never pass model or user text here)."""
        return self._add(fragment)

    # -- output ------------------------------------------------------------------
    def to_html(self) -> str:
        """The whole page as one string (UTF-8, no external resource)."""
        from plotly.offline import get_plotlyjs

        from synergy_lens import __version__

        css = _CSS % {"syn": S.SYNERGY, "red": S.REDUNDANCY, "font": S.FONT}
        scripts = [f'<script type="text/javascript">{get_plotlyjs()}</script>'] if self._n_figures else []
        if self._uses_circuitsvis:
            from synergy_lens.view.circuits import circuitsvis_js

            scripts.append(f"<script>{circuitsvis_js()}</script>")
        nav = "".join(f'<a href="#{a}">{escape(t)}</a>' for a, t, _ in self._sections)
        body = "".join(
            f'<section id="{a}"><h2>{escape(t)}</h2>{"".join(parts)}</section>' for a, t, parts in self._sections
        )
        sub = f'<div class="sub">{escape(self.subtitle)}</div>' if self.subtitle else ""
        stamp = _dt.datetime.now().isoformat(timespec="seconds")
        return (
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{escape(self.title)}</title><style>{css}</style>{''.join(scripts)}</head><body>"
            f"<header><h1>{escape(self.title)}</h1>{sub}</header><nav>{nav}</nav><main>{body}</main>"
            f"<footer>Made with synergy-lens {escape(__version__)} on {escape(stamp)}. "
            "Self-contained: works offline.</footer></body></html>\n"
        )

    def save(self, path: str | Path) -> Path:
        """Write :meth:`to_html` to ``path`` (parent folders created); returns the path."""
        from synergy_lens._io import atomic_write_text

        return atomic_write_text(path, self.to_html(), errors="replace")

    def __repr__(self) -> str:
        return f"Report({self.title!r}, sections={[t for _, t, _ in self._sections]})"
