"""Turn per-run records into medians and a markdown table with kit's ratios.

A record is one workload process's outcome (see ``run.py``): engine,
workload, status ("ok", "error", "timeout", "n/a", "skipped"), value, ...
"""

import statistics

from workloads import SPECS


def summarize(records, engine_names, workload_names):
    """{workload: {engine: cell}}, where a cell holds the median of the ok
    values, the values themselves, and a status for the table."""
    table = {}
    rows = (["import"] if "startup" in workload_names else []) + list(workload_names)
    for workload in rows:
        table[workload] = {}
        for engine in engine_names:
            table[workload][engine] = _cell(records, engine, workload)
    return table


def _cell(records, engine, workload):
    if workload == "import":
        mine = [r for r in records if r["engine"] == engine and r["workload"] == "startup"]
        values = [r["import_s"] for r in mine if r.get("import_s") is not None]
    else:
        mine = [r for r in records if r["engine"] == engine and r["workload"] == workload]
        values = [r["value"] for r in mine if r["status"] == "ok"]
    cell = {"values": values, "runs": len(mine)}
    if values:
        cell["median"] = statistics.median(values)
        cell["status"] = "ok"
    elif mine:
        cell["status"] = mine[-1]["status"]
        cell["reason"] = mine[-1].get("error", "")
    else:
        cell["status"] = "not run"
    failed = [r for r in mine if r["status"] not in ("ok", "n/a")]
    if values and failed and workload != "import":
        cell["failed_runs"] = len(failed)
    return cell


def fmt_number(value):
    if value >= 1000:
        return f"{value:,.0f}"
    if value >= 100:
        return f"{value:.0f}"
    if value >= 10:
        return f"{value:.1f}"
    if value >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def fmt_cell(cell, unit):
    if cell["status"] != "ok":
        return cell["status"]
    text = f"{fmt_number(cell['median'])} {unit}"
    if cell.get("failed_runs"):
        text += f" ({cell['failed_runs']} failed)"
    return text


def fmt_ratio(ratio):
    if ratio >= 10:
        return f"{ratio:.0f}"
    if ratio >= 0.995:
        return f"{ratio:.1f}"
    return f"{ratio:.2g}"


def ratio_text(workload, kit_cell, peer_cell):
    """kit's value over the peer's, labelled so the better direction is clear:
    "0.06x time" (kit takes 6% of the peer's time), "5.1x throughput"."""
    if kit_cell["status"] != "ok" or peer_cell["status"] != "ok":
        return "—"
    spec = SPECS[workload]
    kit, peer = kit_cell["median"], peer_cell["median"]
    if peer == 0 or kit == 0:
        return "—"
    return f"{fmt_ratio(kit / peer)}x {spec.kind}"


def table_head(columns):
    """A markdown table's first two lines: the names, then left/right alignment."""
    return [
        "| " + " | ".join(columns) + " |",
        "|" + "|".join(["---"] + ["---:"] * (len(columns) - 1)) + "|",
    ]


def median_row(label, records, names, peers, fmt, suffix, notes):
    """One row of a side-by-side table: each engine's median time, then kit over each peer.

    ``records`` maps an engine's name to its record for this row (``status``,
    ``times``, ``error``); a failed or missing one shows as such, and a failure
    is added to ``notes``. Returns the row's cells and the medians.
    """
    medians, row = {}, [label]
    for n in names:
        r = records.get(n)
        if r is None or r["status"] != "ok":
            row.append("error" if r else "not run")
            if r:
                notes.append(f"{n} {label}: {r['error']}")
            continue
        medians[n] = statistics.median(r["times"])
        row.append(fmt(medians[n]))
    for p in peers:
        ok = "kit" in medians and medians.get(p, 0) > 0
        row.append(f"{fmt_ratio(medians['kit'] / medians[p])}x{suffix}" if ok else "—")
    return row, medians


def markdown(table, engine_names, header_lines, notes):
    """The report: header lines, the table, a legend and notes."""
    peers = [e for e in engine_names if e != "kit"] if "kit" in engine_names else []
    columns = ["workload", *engine_names, *[f"kit vs {p}" for p in peers]]
    lines = list(header_lines) + [""] + table_head(columns)
    for workload, cells in table.items():
        unit = SPECS[workload].unit
        row = [workload]
        row += [fmt_cell(cells[e], unit) for e in engine_names]
        row += [ratio_text(workload, cells["kit"], cells[p]) for p in peers]
        lines.append("| " + " | ".join(row) + " |")
    lines.append("")
    if peers:
        lines.append(
            "Ratios are kit's median divided by the peer's: for `x time` and "
            "`x memory` below 1 means kit is better (0.5x time = kit takes half "
            "the time); for `x throughput` above 1 means kit is better."
        )
        lines.append("")
    lines.append("Workloads:")
    for workload in table:
        lines.append(f"- `{workload}`: {SPECS[workload].what}")
    if notes:
        lines.append("")
        lines.append("Notes:")
        lines.extend(f"- {note}" for note in notes)
    return "\n".join(lines) + "\n"
