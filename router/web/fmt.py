"""Value formatting for the page, its live-update script and the CLI — one set of rules.

The page's script re-formats values from ``/api/status`` in the browser, so every formatter
here has a JavaScript twin in ``JS_FORMATTERS`` that must give the same text. Rounding is
spelled out (``floor(x + 0.5)``) on both sides because Python's ``format`` rounds half to even
and JavaScript's ``toFixed`` rounds half up; the browser test compares the two renderings.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

DASH = "\u2013"  # shown for a missing value


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _round(value: float) -> int:
    return math.floor(value + 0.5)


def _one_or_none_decimals(value: float) -> str:
    """One decimal below 10, none from 10 up."""
    if abs(value) < 10:
        return f"{_round(value * 10) / 10:.1f}"
    return str(_round(value))


def text(value: Any, now: float = 0.0) -> str:
    if value is None or value == "":
        return DASH
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if not math.isfinite(value):
            return DASH
        # JSON turns 3.0 into the browser's 3: show integral floats as integers on both sides.
        return str(int(value)) if value.is_integer() else _one_or_none_decimals(value)
    return str(value)


def ms(value: Any, now: float = 0.0) -> str:
    v = _num(value)
    return DASH if v is None else f"{_one_or_none_decimals(v)} ms"


def dbm(value: Any, now: float = 0.0) -> str:
    v = _num(value)
    return DASH if v is None else f"{_round(v)} dBm"


def pct(value: Any, now: float = 0.0) -> str:
    v = _num(value)
    return DASH if v is None else f"{_one_or_none_decimals(v)} %"


def num(value: Any, now: float = 0.0) -> str:
    v = _num(value)
    return DASH if v is None else str(_round(v))


def size(value: Any, now: float = 0.0) -> str:
    v = _num(value)
    if v is None:
        return DASH
    units = ("B", "kB", "MB", "GB", "TB")
    index = 0
    while abs(v) >= 1000 and index < len(units) - 1:
        v /= 1000
        index += 1
    if index == 0:
        return f"{_round(v)} B"
    return f"{_one_or_none_decimals(v)} {units[index]}"


def dur(value: Any, now: float = 0.0) -> str:
    v = _num(value)
    if v is None:
        return DASH
    s = max(0, math.floor(v))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h {(s % 3600) // 60:02d}m"
    return f"{s // 86400}d {(s % 86400) // 3600}h"


def age(value: Any, now: float = 0.0) -> str:
    """How long ago the Unix time ``value`` was, seen from ``now``."""
    v = _num(value)
    return DASH if v is None else dur(now - v)


def yesno(value: Any, now: float = 0.0) -> str:
    return DASH if not isinstance(value, bool) else ("yes" if value else "no")


def clock(value: Any, now: float = 0.0) -> str:
    """HH:MM:SS in UTC (the router's clock may be off; the page says UTC)."""
    v = _num(value)
    if v is None:
        return DASH
    s = math.floor(v) % 86400
    return f"{s // 3600:02d}:{(s % 3600) // 60:02d}:{s % 60:02d}"


def label(value: Any, now: float = 0.0) -> str:
    """An identifier for people: ``outer_home`` -> ``outer home``."""
    return text(value).replace("_", " ")


FORMATTERS: dict[str, Callable[[Any, float], str]] = {
    "text": text, "ms": ms, "dbm": dbm, "pct": pct, "num": num, "size": size, "dur": dur,
    "age": age, "yesno": yesno, "clock": clock, "label": label,
}


def fmt(kind: str, value: Any, now: float = 0.0) -> str:
    return FORMATTERS[kind](value, now)


#: The browser's twins of FORMATTERS (same names, same text). ``D`` is the dash.
JS_FORMATTERS = r"""
const D='\u2013';
const isNum=v=>typeof v==='number'&&isFinite(v);
const rnd=v=>Math.floor(v+0.5);
const od=v=>Math.abs(v)<10?(rnd(v*10)/10).toFixed(1):String(rnd(v));
const dur=v=>{if(!isNum(v))return D;const s=Math.max(0,Math.floor(v));const p=n=>String(n).padStart(2,'0');
 if(s<60)return s+'s';if(s<3600)return Math.floor(s/60)+'m '+p(s%60)+'s';
 if(s<86400)return Math.floor(s/3600)+'h '+p(Math.floor((s%3600)/60))+'m';
 return Math.floor(s/86400)+'d '+Math.floor((s%86400)/3600)+'h';};
const F={
 text:v=>v===null||v===undefined||v===''?D:typeof v==='boolean'?(v?'yes':'no'):typeof v==='number'?(isFinite(v)?(Number.isInteger(v)?String(v):od(v)):D):String(v),
 ms:v=>isNum(v)?od(v)+' ms':D,
 dbm:v=>isNum(v)?rnd(v)+' dBm':D,
 pct:v=>isNum(v)?od(v)+' %':D,
 num:v=>isNum(v)?String(rnd(v)):D,
 size:v=>{if(!isNum(v))return D;const u=['B','kB','MB','GB','TB'];let i=0;
  while(Math.abs(v)>=1000&&i<u.length-1){v/=1000;i++;}return i===0?rnd(v)+' B':od(v)+' '+u[i];},
 dur:dur,
 age:(v,now)=>isNum(v)?dur(now-v):D,
 yesno:v=>typeof v==='boolean'?(v?'yes':'no'):D,
 label:v=>F.text(v).split('_').join(' '),
 clock:v=>{if(!isNum(v))return D;const s=((Math.floor(v)%86400)+86400)%86400;const p=n=>String(n).padStart(2,'0');
  return p(Math.floor(s/3600))+':'+p(Math.floor((s%3600)/60))+':'+p(s%60);},
};
"""
