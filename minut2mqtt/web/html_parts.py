"""Small pieces of the bridge's HTML pages: escaping, definition lists, moments in time."""

from __future__ import annotations

import html
from datetime import UTC, datetime, timedelta

STYLE = """
:root{color-scheme:light dark;--muted:#6b7280;--ok:#15803d;--bad:#b91c1c;--card:#8881}
body{font:16px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0 auto;
max-width:46rem;padding:.75rem}
h1{font-size:1.4rem;margin:.2rem 0 .8rem}h2{font-size:1.15rem;margin:1.2rem 0 .4rem}
h3,h4{font-size:1.05rem;margin:.2rem 0}
section,article{background:var(--card);border-radius:.6rem;padding:.6rem .8rem;margin:.6rem 0}
dl{display:grid;grid-template-columns:max-content 1fr;gap:.15rem .8rem;margin:.3rem 0}
dt{color:var(--muted)}dd{margin:0;overflow-wrap:anywhere}
.devices{list-style:none;padding:0;margin:.4rem 0 0;display:grid;
grid-template-columns:repeat(auto-fill,minmax(13rem,1fr));gap:.5rem}
.devices li{border:1px solid #8884;border-radius:.5rem;padding:.45rem .6rem}
.meta,.stale{color:var(--muted);font-size:.9rem}.ok{color:var(--ok)}.bad{color:var(--bad)}
.notice{border-left:.3rem solid var(--bad);padding:.4rem .7rem;background:var(--card)}
.badge{display:inline-block;border-radius:.8rem;padding:0 .5rem;margin:.1rem .2rem 0 0;
font-size:.85rem;background:#f59e0b33}
button{font:inherit;padding:.55rem 1rem;border-radius:.5rem;border:1px solid #8888;
cursor:pointer;min-height:2.75rem}
button.primary{background:#2563eb;color:#fff;border-color:#2563eb}
"""


def definition_list(rows: list[tuple[str, str]]) -> str:
    """A definition list of (label, already escaped HTML) pairs."""
    return "<dl>" + "".join(f"<dt>{label}</dt><dd>{value}</dd>" for label, value in rows) + "</dl>"


def moment(when: datetime, now: datetime) -> str:
    """`2026-11-23 16:20 UTC (3 min ago)`, in a <time> element."""
    utc = when.astimezone(UTC)
    shown = utc.strftime("%Y-%m-%d %H:%M:%S UTC")
    return f'<time datetime="{escape(utc.isoformat())}">{shown}</time> ({ago(now - utc)})'


def ago(elapsed: timedelta) -> str:
    seconds = int(elapsed.total_seconds())
    if seconds < 0:
        return "just now"
    if seconds < 60:
        return f"{seconds} s ago"
    if seconds < 3600:
        return f"{seconds // 60} min ago"
    if seconds < 2 * 86400:
        return f"{seconds // 3600} h ago"
    return f"{seconds // 86400} days ago"


def escape(text: str) -> str:
    return html.escape(text, quote=True)
