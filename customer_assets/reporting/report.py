"""Assemble the customer report: one self-contained HTML file (inline CSS and base64 images, no
external request) and a markdown summary for the asset's metadata.

Strategic recommendations are written from the numbers the sections found, never canned: each
rule names the figure it rests on, and a rule whose input is missing is left out.
"""

from __future__ import annotations

import datetime as dt
import html
from pathlib import Path

import duckdb

from customer_assets.reporting import sections as S

GROWTH_SEGMENTS = ("Loyal Customers", "Potential Loyalist", "Promising", "Recent Users", "Need Attention",
                   "Needs Attention")
WIN_BACK_SEGMENTS = ("At Risk", "Can't Lose Them", "About To Sleep")

CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:0;color:#1c2833;background:#f4f6f7}
header{background:#1b4f72;color:#fff;padding:18px 32px}header h1{margin:0;font-size:24px}
header p{margin:4px 0 0;opacity:.85}main{padding:12px 32px 40px;max-width:1150px}
section{background:#fff;border-radius:6px;padding:14px 20px;margin:16px 0;box-shadow:0 1px 2px #0002}
h2{margin:4px 0 10px;font-size:19px;color:#1b4f72}h3{font-size:15px;margin:14px 0 6px}
table{border-collapse:collapse;font-size:12.5px;margin:8px 0}th,td{border-bottom:1px solid #e5e8e8;padding:3px 9px;text-align:left}
th{background:#eaf2f8}td.num{text-align:right;font-variant-numeric:tabular-nums}
.tiles{display:flex;flex-wrap:wrap;gap:10px}.tile{background:#eaf2f8;border-radius:6px;padding:10px 14px;min-width:150px}
.tile .k{font-size:12px;color:#566573}.tile .v{font-size:20px;font-weight:600}
.note{color:#7e5109;background:#fef5e7;padding:6px 10px;border-radius:4px}img{max-width:100%}
ol.recs li{margin:6px 0}nav a{margin-right:10px;font-size:13px}
"""


def recommendations(found: dict) -> list[str]:
    """Strategic recommendations from the sections' facts (each cites its numbers)."""
    recs = []
    seg = {r["segment"]: r for r in found.get("segments", {}).get("segments", [])}
    champions = seg.get("Champions")
    growth = [seg[s] for s in GROWTH_SEGMENTS if s in seg and seg[s].get("avg_revenue") is not None]
    if growth:
        target = max(growth, key=lambda r: r["customers"] * r["avg_revenue"])
        text = (f"Upsell **{target['segment']}**: {target['customers']:,} customers averaging "
                f"£{target['avg_revenue']:,.0f}")
        if champions and champions.get("avg_revenue"):
            text += (f" against £{champions['avg_revenue']:,.0f} for Champions; moving even a tenth of them "
                     f"halfway is worth about £{0.1 * target['customers'] * (champions['avg_revenue'] - target['avg_revenue']) / 2:,.0f}")
        bundles = found.get("bundles", {})
        bundle = bundles.get("top_bundle")
        if bundle:
            text += f". Put the strongest bundle in front of them ({bundle})"
            text += ": it also moves dead stock." if bundles.get("top_bundle_moves_dead_stock") else "."
        recs.append(text if bundle else text + ".")
    lapsing = [seg[s] for s in WIN_BACK_SEGMENTS if s in seg]
    band_rows = {r["risk_band"]: r for r in found.get("actions", {}).get("by_band", [])}
    if lapsing or "High" in band_rows:
        parts = []
        if lapsing:
            n = sum(r["customers"] for r in lapsing)
            money = sum((r.get("revenue") or 0) for r in lapsing)
            parts.append(f"{n:,} customers in {', '.join(r['segment'] for r in lapsing)} spent £{money:,.0f} so far")
        if "High" in band_rows:
            h = band_rows["High"]
            parts.append(f"{int(h['contacted']):,} High-risk customers hold £{(h['value_at_risk'] or 0):,.0f} of value at risk "
                         f"(churn probability x 12-month CLV) and get the SMS retention offer first, by value at risk")
            m = band_rows.get("Medium")
            if m and (m["value_at_risk"] or 0) > (h["value_at_risk"] or 0):
                parts.append(f"the {int(m['contacted']):,} Medium-risk customers hold more (£{m['value_at_risk']:,.0f}): "
                             f"the targeted campaign there is worth as much attention")
        top = found.get("actions", {}).get("top", [])
        if top:
            parts.append("top of the list: " + ", ".join(f"customer {t['customer_id']}" for t in top))
        odd = found.get("actions", {}).get("cancelled_most", [])
        if odd:
            parts.append(f"check {', '.join(odd)} by hand first: they cancelled most of what they bought")
        recs.append("Win back: " + "; ".join(parts) + ".")
    coh = found.get("cohorts", {})
    if "m1" in coh:
        scale = coh.get("scale", 1.0)
        m1 = coh["m1"] / scale
        text = f"Cohorts: on average only {m1:.0%} of new customers buy again in their second month"
        if "m6" in coh:
            text += f", and {coh['m6'] / scale:.0%} are active in month 6"
        if "m12" in coh:
            text += f" ({coh['m12'] / scale:.0%} in month 12)"
        if m1 < 0.3:
            text += (". The biggest loss is right after the first order: a second-purchase offer within "
                     "30 days of acquisition beats any later campaign")
        else:
            text += ". Early retention is healthy: protect it with the loyalty tiers"
        if "m3" in coh and "m6" in coh and coh["m6"] >= 0.8 * coh["m3"]:
            text += "; the curve flattens after month 3, so customers who stay that long are worth the loyalty spend"
        recs.append(text + ".")
    reg = found.get("revenue_by_region", {})
    if reg.get("top_region_share", 0) > 0.5:
        recs.append(f"Regions: {reg['top_region']} brings {reg['top_region_share']:.0%} of revenue; the other "
                    f"{reg['regions'] - 1} countries are the growth market. Hand each regional manager their own extract.")
    clv = found.get("clv", {})
    if clv.get("top_decile_share"):
        recs.append(f"Value: the top value decile holds {clv['top_decile_share']:.0%} of predicted 12-month CLV; "
                    f"service it personally (Platinum concierge) before anything else.")
    d = found.get("drift", {})
    if d.get("breaches"):
        recs.append(f"Models: {d['status']} (max PSI {d.get('max_psi', float('nan')):.2f}); the drift sensor "
                    f"requests retraining, check the new champion before the next campaign.")
    ch = found.get("churn", {})
    if "roc_auc" in ch:
        recs.append(f"Trust the churn ranking more than the exact probabilities: out-of-time ROC AUC "
                    f"{ch['roc_auc']:.2f}" + (f", calibration error {ch['ece']:.3f}" if "ece" in ch else "")
                    + ". The 10% holdout tells, after the campaign, how much the actions actually saved.")
    return recs


def md_inline(text: str) -> str:
    """**bold** -> <b>bold</b> after escaping."""
    parts = html.escape(text).split("**")
    return "".join(f"<b>{p}</b>" if i % 2 else p for i, p in enumerate(parts))


def build_report(con: duckdb.DuckDBPyConnection, horizon_days: int = 90,
                 title: str = "Customer intelligence report") -> dict:
    """Every section, the recommendations, the HTML text and the markdown summary."""
    built = []
    with S.catalog_cache(con):
        for fn in S.ALL_SECTIONS:
            try:
                built.append(fn(con, horizon_days=horizon_days) if fn is S.churn else fn(con))
            except Exception as e:  # a broken input degrades one section, never the report
                name = fn.__name__
                built.append(S.Section(name, name.replace("_", " ").title(),
                                       S.note(f"Could not draw this section: {type(e).__name__}: {e}"),
                                       missing=f"error: {type(e).__name__}: {e}"))
    found = {s.key: s.facts for s in built if s.missing is None}
    recs = recommendations(found)
    generated = dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    period = found.get("kpis", {})
    subtitle = f"Data {period.get('first_date', '?')} to {period.get('last_date', '?')}; generated {generated}"
    nav = "".join(f"<a href='#{s.key}'>{html.escape(s.title)}</a>" for s in built)
    rec_html = ("<ol class='recs'>" + "".join(f"<li>{md_inline(r)}</li>" for r in recs) + "</ol>") if recs else \
        S.note("Not enough inputs to write recommendations.")
    body = [f"<section id='recommendations'><h2>Strategic recommendations</h2>{rec_html}</section>"]
    body += [f"<section id='{s.key}'><h2>{html.escape(s.title)}</h2>{s.body}</section>" for s in built]
    doc = (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>"
        f"<header><h1>{html.escape(title)}</h1><p>{html.escape(subtitle)}</p></header>"
        f"<main><nav>{nav}</nav>{''.join(body)}</main></body></html>"
    )
    md = [f"## {title}", subtitle, "", "### Headline"]
    for s in built:
        md += s.md
    md += ["", "### Recommendations"] + [f"{i}. {r}" for i, r in enumerate(recs, 1)]
    missing = [f"- {s.title}: {s.missing}" for s in built if s.missing]
    if missing:
        md += ["", "### Sections not available"] + missing
    return {"html": doc, "markdown": "\n".join(md), "sections": built, "recommendations": recs}


def write_report(report: dict, reports_dir: Path, name: str = "customer_report.html") -> Path:
    """Write atomically (temp file, then rename) so a reader never sees half a report."""
    reports_dir.mkdir(parents=True, exist_ok=True)
    path = reports_dir / name
    tmp = path.with_suffix(".html.tmp")
    tmp.write_text(report["html"], encoding="utf-8")
    tmp.replace(path)
    return path


EXTERNAL_REF = r"""(?:src|href)\s*=\s*['"]?\s*(?:https?:)?//|<link\b|<script\b[^>]*\bsrc|@import|url\(\s*['"]?https?:"""
