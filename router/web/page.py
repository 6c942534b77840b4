"""The status page: server-rendered HTML, one inline stylesheet and one tiny inline script.

Theory of operation: :func:`render_main` turns a snapshot and its series into the page's
``<main>`` (also served alone at ``/fragment/main``). Every live value is an element carrying
``data-b="path.in.snapshot"`` and ``data-f="formatter"``; elements whose look depends on a value
(state pills, the situation banner) carry ``data-s="path"`` and get ``data-v="value"``. The
script polls ``/api/status`` and re-formats those elements in place with the JavaScript twins of
:mod:`router.web.fmt`; when the page's *shape* changes (an uplink appears, a handover or a
DHCP client is added) or every few polls (to redraw the plots) it fetches ``/fragment/main``
and swaps the whole ``<main>``. The actions panel sits outside ``<main>`` so a swap never
clears a token being typed. No external resources; all text is escaped; the page works
without the script (it is then a snapshot).
"""

from __future__ import annotations

import math
from typing import Any

from router.web import fmt, svg
from router.web.fmt import DASH

STYLE = """
:root{--bg:#f3f5f8;--card:#fff;--fg:#17202b;--mute:#5d6978;--line:#e1e6ec;--ok:#15803d;
--okbg:#dcfce7;--warn:#b45309;--warnbg:#fef3c7;--bad:#b91c1c;--badbg:#fee2e2;--info:#1d4ed8;
--infobg:#dbeafe;--neutral:#475569;--neutralbg:#e2e8f0;--rtt:#2563eb;--sig:#7c3aed;--score:#059669}
@media (prefers-color-scheme:dark){:root{--bg:#0e1217;--card:#161c24;--fg:#e5e9ef;--mute:#98a3b3;
--line:#283039;--ok:#4ade80;--okbg:#14321f;--warn:#fbbf24;--warnbg:#3a2a0b;--bad:#f87171;
--badbg:#3b1515;--info:#60a5fa;--infobg:#13284a;--neutral:#cbd5e1;--neutralbg:#263241;
--rtt:#60a5fa;--sig:#a78bfa;--score:#34d399}}
*{box-sizing:border-box}
html{-webkit-text-size-adjust:100%}
body{margin:0;font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,Ubuntu,sans-serif;
background:var(--bg);color:var(--fg)}
.wrap{max-width:1120px;margin:0 auto;padding:10px 12px 28px}
.topbar{display:flex;flex-wrap:wrap;align-items:baseline;gap:4px 14px;padding:6px 2px 10px}
.topbar h1{font-size:18px;margin:0}
.meta{color:var(--mute);font-size:13px;font-variant-numeric:tabular-nums}
.live{display:inline-block;width:8px;height:8px;border-radius:50%;background:var(--mute);
margin-right:5px;vertical-align:1px}
.live[data-v=live]{background:var(--ok)}.live[data-v=stale]{background:var(--bad)}
.sit{border-radius:12px;padding:14px 16px;background:var(--neutralbg);color:var(--neutral);
border:1px solid var(--line)}
.sit[data-v=inside]{background:var(--okbg);color:var(--ok)}
.sit[data-v=outside]{background:var(--warnbg);color:var(--warn)}
.sit[data-v=outer_home]{background:var(--infobg);color:var(--info)}
.sit[data-v=single]{background:var(--okbg);color:var(--ok)}
.sit .k{font-size:12px;text-transform:uppercase;letter-spacing:.08em;opacity:.85}
.sit .name{font-size:30px;font-weight:700;line-height:1.15;text-transform:capitalize}
.sit .why{color:var(--fg);margin-top:4px;overflow-wrap:anywhere}
.sit .for{color:var(--fg);opacity:.75;font-size:13px}
h2{font-size:12.5px;text-transform:uppercase;letter-spacing:.08em;color:var(--mute);
margin:20px 4px 8px}
.grid{display:grid;gap:10px;grid-template-columns:repeat(auto-fill,minmax(min(100%,320px),1fr))}
.card{background:var(--card);border:1px solid var(--line);border-radius:12px;padding:12px 14px;
min-width:0}
.card h3{margin:0 0 8px;font-size:16px;display:flex;flex-wrap:wrap;align-items:center;gap:6px}
.card h3 small{color:var(--mute);font-weight:400;font-size:13px}
.pill{font-size:12px;font-weight:600;border-radius:999px;padding:1px 8px;background:var(--neutralbg);
color:var(--neutral)}
.pill[data-v=up],.pill[data-v=registered],.pill[data-v=at_home]{background:var(--okbg);color:var(--ok)}
.pill[data-v=down],.pill[data-v=failed],.pill[data-v=denied]{background:var(--badbg);color:var(--bad)}
.pill[data-v=connecting],.pill[data-v=registering],.pill[data-v=rekeying]{background:var(--warnbg);
color:var(--warn)}
.role{font-size:12px;font-weight:600;border-radius:6px;padding:1px 7px;border:1px solid var(--line);
color:var(--mute)}
.role[data-v=active]{border-color:var(--ok);color:var(--ok)}
.role[data-v=standby]{border-color:var(--info);color:var(--info)}
dl.kv{display:grid;grid-template-columns:max-content 1fr;gap:3px 12px;margin:0}
dl.kv dt{color:var(--mute);font-size:13.5px}
dl.kv dd{margin:0;font-variant-numeric:tabular-nums;overflow-wrap:anywhere}
meter{width:70px;height:10px;vertical-align:middle;margin-right:6px}
.plots{display:grid;grid-template-columns:repeat(3,minmax(0,1fr));gap:8px;margin-top:10px;
border-top:1px solid var(--line);padding-top:8px}
.plots figure{margin:0;min-width:0}
.plots figcaption{font-size:11.5px;color:var(--mute)}
svg.spark{display:block;width:100%;height:auto}
.rtt{color:var(--rtt)}.sig{color:var(--sig)}.score{color:var(--score)}
svg text.nodata{font-size:10px;fill:var(--mute)}
table{border-collapse:collapse;width:100%;font-size:14px}
th{text-align:left;color:var(--mute);font-weight:500;font-size:12.5px}
td,th{padding:4px 8px 4px 0;border-bottom:1px solid var(--line);vertical-align:top}
td{font-variant-numeric:tabular-nums;white-space:nowrap}
.sub{color:var(--mute);font-size:13px;margin:-4px 0 8px}
.wide{grid-column:1/-1}
.scroll{overflow-x:auto}
.ho{padding:10px 0;border-bottom:1px solid var(--line)}
.ho:last-child{border-bottom:0}
.ho .line1{display:flex;flex-wrap:wrap;gap:4px 10px;align-items:baseline}
.ho .when{font-variant-numeric:tabular-nums;color:var(--mute);font-size:13px}
.ho .gap{margin-left:auto;font-weight:600;font-variant-numeric:tabular-nums}
.ho .why{color:var(--mute);font-size:13.5px;overflow-wrap:anywhere}
svg.phases{display:block;width:100%;height:12px;margin:6px 0 4px;border-radius:3px;
color:var(--fg);background:var(--line)}
.legend{display:flex;flex-wrap:wrap;gap:2px 12px;font-size:12.5px;color:var(--mute);
font-variant-numeric:tabular-nums}
.dot{display:inline-block;width:9px;height:9px;border-radius:2px;margin-right:4px;vertical-align:0}
.ph0{background:#3b82f6}.ph1{background:#10b981}.ph2{background:#f59e0b}.ph3{background:#8b5cf6}
.ph4{background:#ef4444}.ph5{background:#14b8a6}.ph6{background:#ec4899}
.empty{color:var(--mute)}
details{margin-top:8px}
summary{cursor:pointer;color:var(--mute);font-size:13.5px}
.actions{display:flex;flex-wrap:wrap;gap:8px;align-items:center;margin-top:8px}
.actions input,.actions select,.actions button{font:inherit;padding:6px 10px;border-radius:8px;
border:1px solid var(--line);background:var(--card);color:var(--fg)}
.actions button{cursor:pointer;background:var(--infobg);color:var(--info);font-weight:600}
footer{margin-top:22px;color:var(--mute);font-size:13px}
footer a{color:var(--info)}
@media (max-width:520px){.sit .name{font-size:26px}.wrap{padding:8px}body{font-size:14.5px}}
"""


def _script(poll_ms: int) -> str:
    return fmt.JS_FORMATTERS + f"const POLL={poll_ms};" + """
const get=(o,p)=>p.split('.').reduce((a,k)=>a===null||a===undefined?undefined:a[k],o);
const role=u=>!u?'':u.active?'active':u.standby?'standby':'idle';
const shapeOf=s=>{const h=(s.handovers||[]).filter(x=>x&&typeof x==='object');const c=((s.mobile_network||{}).clients)||[];
 const t=h.map(x=>x.at).filter(isNum);
 return (s.uplinks||[]).map(u=>u.name).join(',')+'|'+h.length+'|'+(t.length?Math.floor(Math.max(...t)):'')+'|'+c.length;};
function bind(s){
 document.querySelectorAll('[data-b]').forEach(e=>{const v=get(s,e.dataset.b);
  if(e.tagName==='METER'){if(isNum(v))e.value=v;return;}
  const t=(F[e.dataset.f]||F.text)(v,s.now);if(e.textContent!==t)e.textContent=t;});
 document.querySelectorAll('[data-s]').forEach(e=>{const v=get(s,e.dataset.s);e.dataset.v=v===null||v===undefined?'':String(v);});
 document.querySelectorAll('[data-role]').forEach(e=>{const r=role(get(s,e.dataset.role));e.dataset.v=r;e.textContent=r;});
}
const live=ok=>{const e=document.getElementById('live');if(e){e.dataset.v=ok?'live':'stale';}
 const t=document.getElementById('live-text');if(t)t.textContent=ok?'live':'no answer from router';};
let shape=document.body.dataset.shape,n=0;
async function tick(){
 try{
  const r=await fetch('/api/status',{cache:'no-store',headers:{'Accept':'application/json'}});
  if(!r.ok)throw new Error(String(r.status));
  const s=await r.json();const sh=shapeOf(s);n++;
  if(sh!==shape||n%6===0){const m=await fetch('/fragment/main',{cache:'no-store'});
   if(m.ok){document.getElementById('main').innerHTML=await m.text();shape=sh;}}
  bind(s);
  live(true);
 }catch(e){live(false);}
 setTimeout(tick,POLL);
}
setTimeout(tick,POLL);
document.querySelectorAll('button[data-action]').forEach(b=>b.addEventListener('click',async()=>{
 const out=document.getElementById('act-out');const name=b.dataset.action;
 const token=document.getElementById('act-token').value;
 const args=name==='uplink_prefer'?{name:document.getElementById('act-uplink').value}:{};
 out.textContent='\\u2026';
 try{const r=await fetch('/api/action/'+name,{method:'POST',cache:'no-store',
   headers:{'Content-Type':'application/json','Authorization':'Bearer '+token},body:JSON.stringify(args)});
  const j=await r.json().catch(()=>({}));
  out.textContent=(r.ok?'\\u2713 ':'\\u2717 ')+(j.message||j.error||('HTTP '+r.status));
 }catch(e){out.textContent='\\u2717 could not send (check the token)';}
}));
"""


def _e(value: Any) -> str:
    return svg.escape(str(value))


def _bound(path: str, kind: str, value: Any, now: float, tag: str = "span") -> str:
    return f'<{tag} data-b="{_e(path)}" data-f="{kind}">{_e(fmt.fmt(kind, value, now))}</{tag}>'


def _state_attr(value: Any) -> str:
    return "" if value is None else _e(value)


def shape_of(status: dict[str, Any]) -> str:
    """Must equal the script's ``shapeOf`` for the same snapshot."""
    handovers = [h for h in status.get("handovers") or [] if isinstance(h, dict)]
    clients = (status.get("mobile_network") or {}).get("clients") or []
    names = ",".join(str(u.get("name")) for u in status.get("uplinks") or [])
    times = [h["at"] for h in handovers
             if isinstance(h.get("at"), int | float) and not isinstance(h.get("at"), bool) and math.isfinite(h["at"])]
    newest = str(math.floor(max(times))) if times else ""
    return f"{names}|{len(handovers)}|{newest}|{len(clients)}"


def _kv(rows: list[tuple[str, str]]) -> str:
    return '<dl class="kv">' + "".join(f"<dt>{_e(k)}</dt><dd>{v}</dd>" for k, v in rows) + "</dl>"


def _situation(status: dict[str, Any], now: float) -> str:
    situation = status.get("situation") or {}
    return (
        f'<section class="sit" data-s="situation.name" data-v="{_state_attr(situation.get("name"))}">'
        '<div class="k">situation</div>'
        f'<div class="name">{_bound("situation.name", "label", situation.get("name"), now)}</div>'
        f'<div class="why">{_bound("situation.reason", "text", situation.get("reason"), now)}</div>'
        f'<div class="for">for {_bound("situation.since", "age", situation.get("since"), now)}</div>'
        "</section>"
    )


def _uplink(index: int, uplink: dict[str, Any], series: dict[str, list[tuple[float, float]]],
            now: float) -> str:
    p = f"uplinks.{index}"
    name = str(uplink.get("name", "?"))
    active = uplink.get("active")
    role = "active" if active else "standby" if uplink.get("standby") else "idle"
    score_max = uplink.get("score_max")
    score = uplink.get("score")
    meter = ""
    if isinstance(score_max, int | float) and score_max > 0:
        value = score if isinstance(score, int | float) and not isinstance(score, bool) else 0
        meter = (f'<meter data-b="{p}.score" min="0" max="{_e(score_max)}" '
                 f'value="{_e(value)}"></meter>')
    rows = [
        ("signal", _bound(f"{p}.signal_dbm", "dbm", uplink.get("signal_dbm"), now)),
        ("RTT", _bound(f"{p}.rtt_ms", "ms", uplink.get("rtt_ms"), now)),
        ("loss", _bound(f"{p}.loss_pct", "pct", uplink.get("loss_pct"), now)),
        ("score", meter + _bound(f"{p}.score", "num", score, now) + " / "
         + _bound(f"{p}.score_max", "num", score_max, now)),
        ("metered", _bound(f"{p}.metered", "yesno", uplink.get("metered"), now)),
        ("address", _bound(f"{p}.address", "text", uplink.get("address"), now)),
        ("sent / received", _bound(f"{p}.tx_bytes", "size", uplink.get("tx_bytes"), now) + " / "
         + _bound(f"{p}.rx_bytes", "size", uplink.get("rx_bytes"), now)),
    ]
    plots = []
    for key, caption, kind, css in (("rtt_ms", "RTT", "ms", "rtt"), ("signal_dbm", "signal", "dbm", "sig"),
                                    ("score", "score", "num", "score")):
        points = series.get(f"{key}.{name}", [])
        plot = svg.sparkline(points, label=f"{caption} {name}", kind=kind, now=now, css_class=f"spark {css}")
        plots.append(f"<figure>{plot}<figcaption>{_e(caption)}, 10 min</figcaption></figure>")
    return (
        f'<article class="card uplink" id="uplink-{_e(name)}">'
        f'<h3>{_e(name)} <small>{_e(uplink.get("kind", ""))} · {_e(uplink.get("interface", ""))}</small>'
        f'<span class="pill" data-s="{p}.state" data-v="{_state_attr(uplink.get("state"))}">'
        f'{_bound(f"{p}.state", "label", uplink.get("state"), now)}</span>'
        f'<span class="role" data-role="{p}" data-v="{role}">{role}</span></h3>'
        + _kv(rows) + '<div class="plots">' + "".join(plots) + "</div></article>"
    )


def _registration(system: str, reg: dict[str, Any], now: float, single: bool = False) -> str:
    p = f"registrations.{system}"
    title = {"inner": "inner system", "outer": "outer system"}.get(system, system)
    hint = {"inner": "home agent in the secure domain", "outer": "home agent outside (DMZ)"}.get(system, "")
    if single:  # no [outer]/[vpn]: one system, whose home agent may sit anywhere
        title, hint = "Mobile IP", "the router's one home agent (single-system mode)"
    rows = [
        ("home agent", _bound(f"{p}.home_agent", "text", reg.get("home_agent"), now)),
        ("home address", _bound(f"{p}.home_address", "text", reg.get("home_address"), now)),
        ("care-of address", _bound(f"{p}.care_of_address", "text", reg.get("care_of_address"), now)),
        ("lifetime left", _bound(f"{p}.lifetime_left_s", "dur", reg.get("lifetime_left_s"), now)),
        ("last reply", _bound(f"{p}.last_code", "text", reg.get("last_code"), now) + " "
         + _bound(f"{p}.last_message", "text", reg.get("last_message"), now)),
        ("round trip", _bound(f"{p}.round_trip_ms", "ms", reg.get("round_trip_ms"), now)),
    ]
    return (
        f'<article class="card reg" id="reg-{_e(system)}"><h3>{_e(title)} '
        f'<span class="pill" data-s="{p}.state" data-v="{_state_attr(reg.get("state"))}">'
        f'{_bound(f"{p}.state", "label", reg.get("state"), now)}</span></h3>'
        f'<div class="sub">{_e(hint)}</div>' + _kv(rows) + "</article>"
    )


def _vpn(vpn: dict[str, Any], now: float) -> str:
    rows = [
        ("virtual IP (V)", _bound("vpn.virtual_ip", "text", vpn.get("virtual_ip"), now)),
        ("gateway", _bound("vpn.gateway", "text", vpn.get("gateway"), now)),
        ("SA age", _bound("vpn.sa_age_s", "dur", vpn.get("sa_age_s"), now)),
        ("sent / received", _bound("vpn.tx_bytes", "size", vpn.get("tx_bytes"), now) + " / "
         + _bound("vpn.rx_bytes", "size", vpn.get("rx_bytes"), now)),
    ]
    return (
        '<article class="card" id="vpn"><h3>VPN '
        f'<span class="pill" data-s="vpn.state" data-v="{_state_attr(vpn.get("state"))}">'
        f'{_bound("vpn.state", "label", vpn.get("state"), now)}</span></h3>'
        '<div class="sub">IPsec to the enterprise gateway</div>' + _kv(rows) + "</article>"
    )


def _network(network: dict[str, Any], now: float) -> str:
    prefixes = ", ".join(str(p) for p in network.get("prefixes") or []) or DASH
    clients = [c for c in network.get("clients") or [] if isinstance(c, dict)]
    rows = [("prefixes", _e(prefixes)),
            ("router on the LAN", _bound("mobile_network.lan_address", "text", network.get("lan_address"), now)),
            ("DHCP clients", str(len(clients)))]
    if clients:
        body = "".join(
            f"<tr><td>{_e(fmt.text(c.get('hostname')))}</td><td>{_e(fmt.text(c.get('address')))}</td>"
            f"<td>{_e(fmt.text(c.get('mac')))}</td>"
            f"<td>{_e(fmt.dur(c['expires'] - now) if isinstance(c.get('expires'), int | float) else DASH)}</td></tr>"
            for c in clients)
        table = ('<div class="scroll"><table><thead><tr><th>host</th><th>address</th><th>MAC</th>'
                 f"<th>lease left</th></tr></thead><tbody>{body}</tbody></table></div>")
    else:
        table = '<p class="empty">no DHCP clients</p>'
    return ('<article class="card wide" id="lan"><h3>mobile network</h3>'
            '<div class="sub">the LAN that moves with the router (RFC 5177)</div>'
            + _kv(rows) + table + "</article>")


def _handovers(handovers: list[dict[str, Any]]) -> str:
    if not handovers:
        return '<article class="card" id="handovers"><p class="empty">no handovers yet</p></article>'
    items = []
    for h in handovers:
        if not isinstance(h, dict):
            continue
        phases = [p for p in h.get("phases") or [] if isinstance(p, dict)]
        ordered = sorted(
            (p for p in phases if isinstance(p.get("at_ms"), int | float) and not isinstance(p.get("at_ms"), bool)),
            key=lambda p: p["at_ms"])
        legend = "".join(
            f'<span><span class="dot ph{i % 7}"></span>{_e(p.get("name", "?"))} {_e(fmt.ms(p.get("at_ms")))}</span>'
            for i, p in enumerate(ordered))
        items.append(
            '<div class="ho">'
            f'<div class="line1"><span class="when">{_e(fmt.clock(h.get("at")))} UTC</span>'
            f'<strong>{_e(fmt.label(h.get("kind")))}</strong>'
            f'<span>{_e(fmt.text(h.get("from")))} \u2192 {_e(fmt.text(h.get("to")))}</span>'
            f'<span class="gap" title="LAN traffic gap">gap {_e(fmt.ms(h.get("gap_ms")))}</span></div>'
            f'<div class="why">{_e(fmt.text(h.get("reason")))}</div>'
            + svg.phase_bar(ordered, h.get("gap_ms"))
            + f'<div class="legend">{legend}</div></div>')
    return '<article class="card" id="handovers">' + "".join(items) + "</article>"


def _counters(counters: dict[str, Any]) -> str:
    if not counters:
        return ""
    rows = "".join(f"<tr><td>{_e(k)}</td><td>{_e(fmt.text(v))}</td></tr>" for k, v in sorted(counters.items()))
    return (f'<details><summary>counters ({len(counters)})</summary><div class="scroll"><table>'
            f"<tbody>{rows}</tbody></table></div></details>")


def render_main(status: dict[str, Any], series: dict[str, list[tuple[float, float]]]) -> str:
    """The inside of ``<main id="main">`` for one snapshot."""
    now = status.get("now")
    now_f = float(now) if isinstance(now, int | float) and math.isfinite(now) else 0.0
    uplinks = [u for u in status.get("uplinks") or [] if isinstance(u, dict)]
    registrations = status.get("registrations") or {}
    parts = [
        _situation(status, now_f),
        "<h2>uplinks</h2>",
        '<div class="grid">' + ("".join(_uplink(i, u, series, now_f) for i, u in enumerate(uplinks))
                                or '<article class="card"><p class="empty">no uplinks configured</p></article>')
        + "</div>",
        "<h2>mobility and VPN</h2>",
        '<div class="grid">'
        + "".join(_registration(system, registrations[system], now_f, single="outer" not in registrations)
                  for system in ("inner", "outer") if isinstance(registrations.get(system), dict))
        + _vpn(status.get("vpn") or {}, now_f) + "</div>",
        "<h2>mobile network</h2>",
        '<div class="grid">' + _network(status.get("mobile_network") or {}, now_f) + "</div>",
        "<h2>handovers</h2>",
        _handovers(list(status.get("handovers") or [])),
        _counters(status.get("counters") or {}),
    ]
    return "".join(parts)


def _actions(status: dict[str, Any], enabled: bool) -> str:
    if not enabled:
        return ('<h2>actions</h2><p class="empty">Actions are off: no token is configured '
                "(<code>[web] token_file</code>).</p>")
    options = "".join(f'<option value="{_e(u.get("name"))}">{_e(u.get("name"))}</option>'
                      for u in status.get("uplinks") or [] if isinstance(u, dict))
    return (
        '<h2>actions</h2><div class="card"><details><summary>operator actions (need the token)</summary>'
        '<div class="actions"><input id="act-token" type="password" autocomplete="off" '
        'placeholder="token" aria-label="token">'
        f'<select id="act-uplink" aria-label="uplink">{options}</select>'
        '<button type="button" data-action="uplink_prefer">prefer uplink</button>'
        '<button type="button" data-action="reconnect">reconnect</button>'
        '<output id="act-out" aria-live="polite"></output></div></details></div>'
    )


def render_page(status: dict[str, Any], series: dict[str, list[tuple[float, float]]], *, nonce: str,
                poll_interval_s: float = 2.0, actions_enabled: bool = False) -> str:
    """The whole page. ``nonce`` must match the response's Content-Security-Policy."""
    now = status.get("now")
    now_f = float(now) if isinstance(now, int | float) and math.isfinite(now) else 0.0
    poll_ms = max(250, int(poll_interval_s * 1000))
    version = status.get("version")
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        '<meta name="color-scheme" content="light dark">'
        "<title>Router status</title>"
        f'<style nonce="{_e(nonce)}">{STYLE}</style></head>'
        f'<body data-shape="{_e(shape_of(status))}"><div class="wrap">'
        '<div class="topbar"><h1>Mobile router</h1>'
        f'<span class="meta"><span class="live" id="live" data-v="snapshot"></span>'
        '<span id="live-text">snapshot</span> · updated '
        f'{_bound("now", "clock", now_f, now_f)} UTC · up '
        f'{_bound("uptime_s", "dur", status.get("uptime_s"), now_f)}'
        f'{" · v" + _e(version) if isinstance(version, str) and version else ""}</span></div>'
        f'<main id="main">{render_main(status, series)}</main>'
        + _actions(status, actions_enabled)
        + '<footer>JSON: <a href="/api/status">/api/status</a> · Prometheus: '
        '<a href="/metrics">/metrics</a></footer>'
        f'</div><script nonce="{_e(nonce)}">(()=>{{{_script(poll_ms)}}})();</script></body></html>'
    )
