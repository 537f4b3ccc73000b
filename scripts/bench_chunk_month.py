"""Helpers of scripts/bench-chunk-month.sh (run with .venv's Python: numpy, zarr, xarray).

    bench_chunk_month.py items ARCHIVE/items.json BASE_URL OUT.json
    bench_chunk_month.py record --variant V --round I --time TIMEFILE --log LOGSLICE \
        [--cube CUBE] [--floor FLOORFILE] [--floor-decoded FLOORFILE] [--odc RESULT.json]          # one JSON line on stdout
    bench_chunk_month.py agree CUBE RESULT.npy --tol DN                # one sanity line
    bench_chunk_month.py table RUNS.jsonl --md OUT.md [--whole] [--agree FILE] [--note TEXT]...

`record` turns one run's measurements into a JSON line: GNU time's "%e %U %S %M" (wall, user,
sys, peak RSS KiB), the nginx access-log lines of the run (requests, body bytes), and for eocube
the run report (OUT/_eocube/report.jsonl or report/*.jsonl), summed over jobs. `table` prints the
medians over the rounds per variant, the ratios, and writes the same as markdown.
"""

import argparse
import glob
import json
import os
import statistics
import sys


def cmd_items(a):
    items = json.load(open(a.src))
    base = a.base.rstrip("/")
    n = 0
    for f in items["features"]:
        for asset in f.get("assets", {}).values():
            href = asset["href"]
            if "://" not in href and not href.startswith("/"):
                asset["href"] = f"{base}/{href}"
                n += 1
    if n == 0:
        sys.exit(f"bench: {a.src} has no relative hrefs to rebase")
    json.dump(items, open(a.out, "w"))


def report_lines(cube):
    root = os.path.join(cube, "_eocube")
    paths = glob.glob(os.path.join(root, "report.jsonl")) + sorted(glob.glob(os.path.join(root, "report", "*.jsonl")))
    return [json.loads(line) for p in paths for line in open(p) if line.strip()]


def cmd_record(a):
    wall, user, sys_, rss = open(a.time).read().split()[-4:]
    lines = [ln for ln in open(a.log) if ln.strip()]
    nbytes = 0
    for ln in lines:
        try:
            nbytes += int(ln.rsplit(" ", 1)[1])
        except (IndexError, ValueError):
            pass
    r = {
        "variant": a.variant,
        "round": a.round,
        "wall": float(wall),
        "cpu": float(user) + float(sys_),
        "rss_mb": int(rss) / 1024,
        "requests": len(lines),
        "bytes": nbytes,
    }
    if a.cube:
        jobs = report_lines(a.cube)
        if not jobs:
            sys.exit(f"bench: no run report in {a.cube}/_eocube")
        r["jobs"] = len(jobs)
        r["jobs_done"] = sum(1 for j in jobs if j.get("outcome") == "done")
        r["scenes"] = sum(j.get("scenes", 0) for j in jobs)
        for k in ("requests", "bytes", "seconds", "search_seconds", "read_seconds", "reduce_seconds", "write_seconds"):
            r["report_" + k] = sum(j.get(k, 0) or 0 for j in jobs)
    for key, path in (("floor", a.floor), ("floor_decoded", a.floor_decoded)):
        last = [ln for ln in open(path) if ln.strip()] if path else []
        if last:
            try:
                r[key] = json.loads(last[-1])
            except json.JSONDecodeError:
                pass
    if a.odc:
        meta = json.load(open(a.odc))
        r["jobs"] = len(meta["jobs"])
        r["jobs_done"] = sum(1 for j in meta["jobs"] if j["scenes"] > 0)
        r["scenes"] = sum(j["scenes"] for j in meta["jobs"])
        r["morphology"] = meta.get("morphology")
        r["odc_stac"] = meta.get("odc_stac")
    print(json.dumps(r))
    print(f"bench: round {a.round} {a.variant}: {r['wall']:.2f} s wall, {r['cpu']:.2f} s CPU, {r['rss_mb']:.0f} MB peak, "
          f"{r['requests']} requests, {r['bytes'] / 1e6:.1f} MB"
          + (f", inflate floor {r['floor']['seconds']:.3f} s" if "floor" in r else ""), file=sys.stderr)


def read_cube(cube):
    import xarray as xr

    ds = xr.open_zarr(cube, mask_and_scale=False)
    name = next(v for v in ds.data_vars if "band" in ds[v].dims)
    da = ds[name]
    return da.values, da, ds


def cmd_agree(a):
    import numpy as np

    ours, da, ds = read_cube(a.cube)
    ref = np.load(a.result)
    meta = json.load(open(os.path.splitext(a.result)[0] + ".json"))
    if ours.shape != ref.shape:
        print(f"{a.label}: shapes differ: eocube {ours.shape}, odc-stac {ref.shape}")
        return
    # the grids must be the same: pixel centres of odc's affine against the cube's coordinates
    c, f, r = meta["affine"][2], meta["affine"][5], meta["affine"][0]
    lon = c + (np.arange(ref.shape[2]) + 0.5) * r
    lat = f - (np.arange(ref.shape[1]) + 0.5) * r
    grid = max(np.abs(lon - ds.longitude.values).max(), np.abs(lat - ds.latitude.values).max()) / r
    o, e = ours.astype(np.int32), ref.astype(np.int32)
    both = (o > 0) & (e > 0)
    n = o.size
    d = np.abs(o - e)[both]
    eq = np.count_nonzero((o == e))
    print(
        f"{a.label}: {100 * eq / n:.2f}% of values equal; where both have a value "
        f"({100 * both.sum() / n:.1f}% of values): {100 * np.count_nonzero(d == 0) / max(d.size, 1):.2f}% equal, "
        f"{100 * np.count_nonzero(d <= a.tol) / max(d.size, 1):.2f}% within {a.tol} DN, median |diff| "
        f"{float(np.median(d)) if d.size else 0:.0f} DN; fill only in eocube {100 * np.count_nonzero((o == 0) & (e > 0)) / n:.2f}%, "
        f"only in odc-stac {100 * np.count_nonzero((o > 0) & (e == 0)) / n:.2f}%; grids {grid:.1e} px apart"
    )


ROWS = [
    ("eocube-nearest", "eocube nearest"),
    ("odc-nearest", "odc-stac nearest"),
    ("eocube-seed", "eocube seed-bilinear"),
    ("odc-demo", "odc-stac demo"),
]


def med(rs, key):
    vals = [r[key] for r in rs if r.get(key) is not None]
    return statistics.median(vals) if vals else None


def fmt(v, nd=1):
    return "-" if v is None else f"{v:,.{nd}f}"


def cmd_table(a):
    runs = [json.loads(ln) for ln in open(a.runs) if ln.strip()]
    by = {k: [r for r in runs if r["variant"] == k] for k, _ in ROWS}
    rounds = max((len(v) for v in by.values()), default=0)
    out = []
    head = ["", "wall s", "CPU s", "CPU %", "peak RSS MB", "requests", "MB read"]
    if a.whole:
        head += ["jobs", "jobs/min", "MB/s"]
    out.append("| " + " | ".join(head) + " |")
    out.append("|" + "|".join([" --- "] + [" ---: "] * (len(head) - 1)) + "|")
    m = {}
    for key, label in ROWS:
        rs = by[key]
        if not rs:
            continue
        wall, cpu = med(rs, "wall"), med(rs, "cpu")
        row = {
            "wall": wall,
            "cpu": cpu,
            "cpu_pct": med([dict(x=100 * r["cpu"] / r["wall"]) for r in rs], "x"),
            "rss": med(rs, "rss_mb"),
            "requests": med(rs, "requests"),
            "mb": med([dict(x=r["bytes"] / 1e6) for r in rs], "x"),
            "jobs": med(rs, "jobs_done"),
            "floor": med([dict(x=r["floor"]["seconds"]) for r in rs if "floor" in r], "x"),
            "floor_decoded": med([dict(x=r["floor_decoded"]["seconds"]) for r in rs if "floor_decoded" in r], "x"),
        }
        row["jpm"] = 60 * row["jobs"] / wall if row["jobs"] and wall else None
        row["mbs"] = row["mb"] / wall if wall else None
        m[key] = row
        cells = [label, fmt(wall, 2), fmt(cpu, 2), fmt(row["cpu_pct"], 0), fmt(row["rss"], 0),
                 fmt(row["requests"], 0), fmt(row["mb"], 1)]
        if a.whole:
            cells += [fmt(row["jobs"], 0), fmt(row["jpm"], 1), fmt(row["mbs"], 1)]
        out.append("| " + " | ".join(cells) + " |")
    out.append("")

    def ratio(num, den, key, what):
        if num in m and den in m and m[num][key] and m[den][key]:
            return f"{m[num][key] / m[den][key]:.2f}x {what}"
        return None

    lines = []
    for num, den, name in [("odc-nearest", "eocube-nearest", "odc-stac nearest / eocube nearest"),
                           ("odc-demo", "eocube-seed", "odc-stac demo / eocube seed-bilinear")]:
        parts = [ratio(num, den, "wall", "wall"), ratio(num, den, "cpu", "CPU"), ratio(num, den, "rss", "peak RSS"),
                 ratio(num, den, "mb", "bytes read")]
        if a.whole:
            parts.append(ratio(den, num, "jpm", "jobs/min for eocube"))
        parts = [p for p in parts if p]
        if parts:
            lines.append(f"- {name}: " + ", ".join(parts))
    for key in ("eocube-nearest", "eocube-seed"):
        found = False
        for fkey, what in (("floor_decoded", "the tiles the job decodes"),
                           ("floor", "every tile inside the ranges received")):
            if key in m and m[key][fkey]:
                found = True
                f = [r[fkey] for r in by[key] if fkey in r][-1]
                lines.append(
                    f"- {dict(ROWS)[key]} wall / inflate floor of {what}: {m[key]['wall']:.2f} s / "
                    f"{m[key][fkey]:.3f} s = {m[key]['wall'] / m[key][fkey]:.1f}x ({f['tiles']} tiles, "
                    f"{f['compressed_bytes'] / 1e6:.1f} MB -> {f['inflated_bytes'] / 1e6:.1f} MB inflated on "
                    f"{f['threads']} threads)"
                )
        if key in m and not found:
            lines.append(f"- {dict(ROWS)[key]} wall / inflate floor: not measured "
                         "(cargo bench -p eocube --bench inflate_floor unavailable)")
    for key in ("eocube-nearest", "eocube-seed"):
        rs = by.get(key)
        if rs and "report_read_seconds" in rs[0]:
            lines.append(
                f"- {dict(ROWS)[key]}, run report (medians, summed over {fmt(med(rs, 'jobs'), 0)} jobs): "
                f"{fmt(med(rs, 'report_requests'), 0)} requests, {med(rs, 'report_bytes') / 1e6:.1f} MB, "
                f"job {med(rs, 'report_seconds'):.2f} s = search {med(rs, 'report_search_seconds'):.2f} "
                f"+ read/decode/warp/fuse {med(rs, 'report_read_seconds'):.2f} + median "
                f"{med(rs, 'report_reduce_seconds'):.2f} + write {med(rs, 'report_write_seconds'):.2f}"
            )
    morph = next((r.get("morphology") for r in by.get("odc-demo", []) if r.get("morphology")), None)
    if morph:
        lines.append(f"- odc-stac demo morphology: {morph}")
    if a.agree and os.path.exists(a.agree):
        lines += [f"- {ln.strip()}" for ln in open(a.agree) if ln.strip()]
    lines += [f"- {n}" for n in a.note]
    lines.append(f"- medians over {rounds} round(s), variants alternated within each round")
    title = [f"**{a.title}**", ""] if a.title else []
    text = "\n".join(title + out + lines) + "\n"
    print(text)
    with open(a.md, "w") as fh:
        fh.write(text)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("items")
    s.add_argument("src")
    s.add_argument("base")
    s.add_argument("out")
    s = sub.add_parser("record")
    s.add_argument("--variant", required=True)
    s.add_argument("--round", type=int, required=True)
    s.add_argument("--time", required=True)
    s.add_argument("--log", required=True)
    s.add_argument("--cube")
    s.add_argument("--floor")
    s.add_argument("--floor-decoded")
    s.add_argument("--odc")
    s = sub.add_parser("agree")
    s.add_argument("cube")
    s.add_argument("result")
    s.add_argument("--tol", type=int, default=3)
    s.add_argument("--label", default="agreement")
    s = sub.add_parser("table")
    s.add_argument("runs")
    s.add_argument("--md", required=True)
    s.add_argument("--whole", action="store_true")
    s.add_argument("--agree")
    s.add_argument("--note", action="append", default=[])
    s.add_argument("--title")
    a = p.parse_args()
    {"items": cmd_items, "record": cmd_record, "agree": cmd_agree, "table": cmd_table}[a.cmd](a)


if __name__ == "__main__":
    main()
