"""The HTML of the `/manage` screen: plain f-strings, every dynamic value escaped.

No script and no external asset: the page's Content-Security-Policy allows only inline
styles and forms posting back to this origin.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

from resolvers.cache_admin import CacheStats

__all__ = [
    "PurgeTarget",
    "confirm_page",
    "dashboard_page",
    "human_bytes",
    "refused_page",
    "sign_in_page",
]

_UNITS = ("KiB", "MiB", "GiB", "TiB", "PiB")

_STYLE = """
:root {
  color-scheme: light dark;
  --bg: #f6f7f9; --panel: #fff; --text: #1d2330; --muted: #5d6676; --line: #dde1e7;
  --accent: #2456c8; --on-accent: #fff; --danger: #b42318; --ok-bg: #e7f6ec; --ok: #1a7f37;
  --warn-bg: #fdecea; --warn: #b42318;
}
@media (prefers-color-scheme: dark) {
  :root {
    --bg: #14171c; --panel: #1c2027; --text: #e6e9ef; --muted: #9aa3b2; --line: #2e343e;
    --accent: #7aa2ff; --on-accent: #0b1020; --ok-bg: #12301d; --ok: #5fd082;
    --warn-bg: #3a1714; --warn: #ff8a80;
  }
}
* { box-sizing: border-box; }
body {
  margin: 0; background: var(--bg); color: var(--text);
  font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial,
    "Noto Sans", sans-serif;
}
.wrap { max-width: 980px; margin: 0 auto; padding: 0 20px; }
header.bar { background: var(--panel); border-bottom: 1px solid var(--line); }
header.bar .wrap { display: flex; align-items: center; gap: 14px; min-height: 56px; }
.brand { font-weight: 650; }
.tenant { color: var(--muted); }
.who { margin-left: auto; color: var(--muted); display: flex; align-items: center; gap: 10px; }
.who form { margin: 0; }
main.wrap { padding: 28px 20px 56px; }
h1 { font-size: 1.55rem; margin: 0 0 16px; }
h2 { font-size: 1.15rem; margin: 32px 0 12px; }
h3 { font-size: 1rem; margin: 0 0 6px; }
p { margin: 0 0 12px; }
code { font: 0.92em ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
.muted, .note { color: var(--muted); }
.note { font-size: 0.9rem; }
.panel {
  background: var(--panel); border: 1px solid var(--line); border-radius: 10px;
  padding: 16px 18px;
}
.notice { border-radius: 8px; padding: 10px 14px; margin: 0 0 18px; }
.notice.ok { background: var(--ok-bg); color: var(--ok); }
.notice.error { background: var(--warn-bg); color: var(--warn); }
.badge { display: inline-block; border-radius: 999px; padding: 1px 10px; font-size: 0.85rem;
  font-weight: 600; }
.badge.ok { background: var(--ok-bg); color: var(--ok); }
.badge.down { background: var(--warn-bg); color: var(--warn); }
.cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(270px, 1fr)); gap: 12px; }
.card .label { color: var(--muted); font-size: 0.85rem; }
.card .value { font-size: 1.35rem; font-weight: 600; font-variant-numeric: tabular-nums; }
.card .detail { color: var(--muted); font-size: 0.85rem; }
table { width: 100%; border-collapse: collapse; background: var(--panel);
  border: 1px solid var(--line); border-radius: 10px; overflow: hidden; }
th, td { text-align: left; padding: 9px 14px; border-bottom: 1px solid var(--line); }
th { font-size: 0.85rem; color: var(--muted); font-weight: 600; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
tfoot td { font-weight: 600; border-bottom: 0; }
tr.empty td { color: var(--muted); }
.purge { display: grid; grid-template-columns: repeat(auto-fit, minmax(260px, 1fr)); gap: 12px; }
.purge form { display: flex; flex-direction: column; gap: 10px; margin: 0; }
.purge form p { color: var(--muted); font-size: 0.9rem; margin: 0; }
.purge form button { margin-top: auto; }
label { display: block; font-size: 0.9rem; font-weight: 600; }
input, select {
  width: 100%; height: 40px; margin-top: 4px; padding: 0 10px; font: inherit; color: var(--text);
  background: var(--bg); border: 1px solid var(--line); border-radius: 8px;
}
button, a.button {
  font: inherit; font-weight: 600; border-radius: 8px; padding: 8px 16px; cursor: pointer;
  border: 1px solid var(--line); background: var(--panel); color: var(--text);
  text-decoration: none; display: inline-block; text-align: center;
}
button.primary { background: var(--accent); border-color: var(--accent); color: var(--on-accent); }
button.danger { background: var(--danger); border-color: var(--danger); color: #fff; }
button.link { padding: 4px 10px; font-weight: 500; }
.signin { max-width: 440px; margin: 48px auto 0; }
.signin form { display: flex; flex-direction: column; gap: 12px; margin: 16px 0; }
.confirm { max-width: 560px; }
.confirm .question { font-size: 1.15rem; font-weight: 600; }
.actions { display: flex; gap: 10px; margin-top: 14px; }
.purge + .note { margin-top: 12px; }
"""


@dataclass(frozen=True, slots=True)
class PurgeTarget:
    """What a purge deletes: everything, one type's entries, or one user's."""

    type_name: str | None = None
    user_id: int | None = None

    @property
    def scope(self) -> str:
        if self.type_name is not None:
            return "type"
        return "all" if self.user_id is None else "user"

    def question(self) -> str:
        if self.type_name is not None:
            return f"Purge all cached entries of type <strong>{escape(self.type_name)}</strong>?"
        if self.user_id is not None:
            return f"Purge all cached entries of user <strong>{self.user_id}</strong>?"
        return "Purge all cached entries?"


def human_bytes(size: int) -> str:
    """1536 → "1.5 KiB"; below 1 KiB, plain bytes."""
    if size < 1024:
        return f"{size} B"
    value = float(size)
    for unit in _UNITS:
        value /= 1024
        if value < 1024 or unit == _UNITS[-1]:
            return f"{value:.1f} {unit}"
    raise AssertionError("unreachable")  # pragma: no cover


def _human_seconds(seconds: int) -> str:
    if seconds % 3600 == 0 and seconds >= 3600:
        return f"{seconds // 3600} h"
    if seconds % 60 == 0 and seconds >= 60:
        return f"{seconds // 60} min"
    return f"{seconds} s"


def _human_since(since: str | None) -> str:
    if since is None:
        return "—"
    try:
        moment = dt.datetime.fromisoformat(since)
    except ValueError:
        return escape(since)
    if moment.tzinfo is not None:
        moment = moment.astimezone(dt.UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def _page(title: str, content: str, *, tenant: str, header_right: str = "") -> str:
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>{escape(title)} · Jetstack Gateway</title>
<style>{_STYLE}</style>
</head>
<body>
<header class="bar"><div class="wrap">
<span class="brand">Jetstack Gateway</span><span class="tenant">{escape(tenant)}</span>
{header_right}
</div></header>
<main class="wrap">
{content}
</main>
</body>
</html>
"""


def _csrf_field(csrf: str) -> str:
    return f'<input type="hidden" name="csrf" value="{escape(csrf)}">'


def _who(login: str, csrf: str) -> str:
    return f"""<div class="who"><span>Signed in as <strong>{escape(login)}</strong></span>
<form method="post" action="/manage/sign-out">{_csrf_field(csrf)}
<button class="link" type="submit">Sign out</button></form></div>"""


def _notice(text: str | None, kind: str) -> str:
    return "" if not text else f'<p class="notice {kind}" role="status">{escape(text)}</p>'


def sign_in_page(*, tenant: str, error: str | None = None) -> str:
    content = f"""<div class="signin panel">
<h1>Application Management</h1>
<p>Sign in with an API key of a user holding the <code>manageCache</code> permission.</p>
{_notice(error, "error")}
<form method="post" action="/manage/sign-in">
<label for="key">API key
<input id="key" name="key" type="password" autocomplete="off" spellcheck="false"
 maxlength="200" required autofocus></label>
<button class="primary" type="submit">Sign in</button>
</form>
<p class="note">The key is kept in a session cookie for this screen only, until you sign
out or close the browser. It is checked again on every page.</p>
</div>"""
    return _page("Sign in", content, tenant=tenant)


def _card(label: str, value: str, detail: str = "", *, name: str) -> str:
    extra = f'<div class="detail">{detail}</div>' if detail else ""
    return (
        f'<div class="card panel" data-figure="{name}"><div class="label">{label}</div>'
        f'<div class="value">{value}</div>{extra}</div>'
    )


def _type_rows(stats: CacheStats, type_names: Sequence[str]) -> str:
    names = list(type_names) + sorted(set(stats.types) - set(type_names))
    rows = []
    for name in names:
        figures = stats.types.get(name)
        entries = figures.entries if figures else 0
        memory = figures.memory_bytes if figures else 0
        empty = ' class="empty"' if entries == 0 else ""
        rows.append(
            f'<tr data-type="{escape(name)}"{empty}><td>{escape(name)}</td>'
            f'<td class="num entries">{entries:,}</td>'
            f'<td class="num memory" title="{memory:,} bytes">{human_bytes(memory)}</td></tr>'
        )
    return "\n".join(rows)


def _purge_forms(csrf: str, type_names: Sequence[str]) -> str:
    """All, one type, one user: each posts to a confirmation page first."""
    token = _csrf_field(csrf)
    options = "\n".join(
        f'<option value="{escape(name)}">{escape(name)}</option>' for name in type_names
    )
    return f"""<div class="purge">
<form class="panel" method="post" action="/manage/purge" id="purge-all">{token}
<input type="hidden" name="scope" value="all">
<h3>Everything</h3>
<p>Every cached entry of every type and user.</p>
<button class="danger" type="submit">Purge all…</button>
</form>
<form class="panel" method="post" action="/manage/purge" id="purge-type">{token}
<input type="hidden" name="scope" value="type">
<h3>One type</h3>
<label for="purge-type-name">Type
<select id="purge-type-name" name="type" required>{options}</select></label>
<button class="danger" type="submit">Purge type…</button>
</form>
<form class="panel" method="post" action="/manage/purge" id="purge-user">{token}
<input type="hidden" name="scope" value="user">
<h3>One user</h3>
<label for="purge-user-id">User id
<input id="purge-user-id" name="user" inputmode="numeric" pattern="[0-9]{{1,19}}"
 maxlength="19" required></label>
<button class="danger" type="submit">Purge user…</button>
</form>
</div>"""


def dashboard_page(
    *,
    tenant: str,
    login: str,
    csrf: str,
    stats: CacheStats,
    type_names: Sequence[str],
    notice: str | None = None,
    error: str | None = None,
) -> str:
    """The signed-in screen: the figures, the entries by type and the three purge forms."""
    ratio = "—" if stats.hit_ratio is None else f"{stats.hit_ratio * 100:.1f} %"
    served = stats.hits + stats.misses + stats.bypasses
    if stats.available:
        availability = '<span class="badge ok" id="valkey">Valkey available</span>'
    else:
        availability = (
            '<span class="badge down" id="valkey">Valkey unreachable</span> '
            '<span class="muted">reads are served from the database, uncached; '
            "the figures come back with it</span>"
        )
    cards = "\n".join(
        [
            _card("Entries", f"{stats.entries:,}", name="entries"),
            _card(
                "Memory",
                human_bytes(stats.memory_bytes),
                f"{stats.memory_bytes:,} bytes",
                name="memory",
            ),
            _card("Hit ratio", ratio, f"of {served:,} reads", name="hit-ratio"),
            _card(
                "Hits / misses / bypasses",
                f"{stats.hits:,} / {stats.misses:,} / {stats.bypasses:,}",
                name="counters",
            ),
            _card(
                "List TTL",
                _human_seconds(stats.list_ttl),
                f"{stats.list_ttl:,} seconds",
                name="list-ttl",
            ),
            _card("Counting since", _human_since(stats.since), "UTC, every worker", name="since"),
        ]
    )
    truncated = (
        '<p class="note">Only the first 200,000 keys were counted: the figures are partial.</p>'
        if stats.truncated
        else ""
    )
    content = f"""<h1>Response cache</h1>
{_notice(notice, "ok")}{_notice(error, "error")}
<p>{availability}</p>
<div class="cards">
{cards}
</div>
<h2>Entries by type</h2>
<table id="types">
<thead><tr><th>Type</th><th class="num">Entries</th><th class="num">Memory</th></tr></thead>
<tbody>
{_type_rows(stats, type_names)}
</tbody>
<tfoot><tr><td>Total</td><td class="num entries">{stats.entries:,}</td>
<td class="num memory">{human_bytes(stats.memory_bytes)}</td></tr></tfoot>
</table>
{truncated}
<h2>Purge</h2>
{_purge_forms(csrf, type_names)}
<p class="note">Purging never serves stale data: the next read recomputes from the database.
Each purge asks for confirmation first.</p>"""
    return _page("Application Management", content, tenant=tenant, header_right=_who(login, csrf))


def confirm_page(*, tenant: str, login: str, csrf: str, target: PurgeTarget) -> str:
    hidden = [
        _csrf_field(csrf),
        f'<input type="hidden" name="scope" value="{target.scope}">',
        '<input type="hidden" name="confirm" value="1">',
    ]
    if target.type_name is not None:
        hidden.append(f'<input type="hidden" name="type" value="{escape(target.type_name)}">')
    if target.user_id is not None:
        hidden.append(f'<input type="hidden" name="user" value="{target.user_id}">')
    content = f"""<h1>Confirm the purge</h1>
<div class="panel confirm">
<p class="question">{target.question()}</p>
<p class="muted">The entries are recomputed from the database on their next read.</p>
<form method="post" action="/manage/purge" class="actions">
{"".join(hidden)}
<button class="danger" type="submit">Confirm</button>
<a class="button" href="/manage">Cancel</a>
</form>
</div>"""
    return _page("Confirm the purge", content, tenant=tenant, header_right=_who(login, csrf))


def refused_page(*, tenant: str, reason: str) -> str:
    content = f"""<div class="signin panel">
<h1>Request refused</h1>
{_notice(reason, "error")}
<p><a class="button" href="/manage">Back to Application Management</a></p>
</div>"""
    return _page("Request refused", content, tenant=tenant)
