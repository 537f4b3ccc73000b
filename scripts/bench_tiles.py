"""Driver of scripts/bench-tiles.sh: starts `eocube serve` on a free port for each case, requests a
20-tile viewport (5 x 4 tiles at one zoom around the cube's centre, 4 at a time, as a browser
does) twice, and prints p50 / p95 latency per tile of the first and the repeated pass.

Standard library only; every request goes to 127.0.0.1 and the loops are bounded.
"""
import concurrent.futures as cf
import http.client
import json
import math
import os
import subprocess
import sys
import time

eocube, cube, pyramid, profile = sys.argv[1:5]


def tile(lon, lat, z):
    n = 2 ** z
    x = int((lon + 180) / 360 * n)
    r = math.radians(lat)
    y = int((1 - math.log(math.tan(r) + 1 / math.cos(r)) / math.pi) / 2 * n)
    return x, y


def start(path):
    p = subprocess.Popen([eocube, "serve", f"bench={path}", "--addr", "127.0.0.1:0"],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    first = p.stdout.readline()
    for _ in range(2):
        p.stdout.readline()
    host = first.split("http://")[1].split()[0]
    return p, host


def get(host, path):
    t0 = time.perf_counter()
    c = http.client.HTTPConnection(host, timeout=60)
    c.request("GET", path)
    r = c.getresponse()
    body = r.read()
    c.close()
    return time.perf_counter() - t0, r.status, len(body)


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def run(path, z):
    p, host = start(path)
    try:
        s = json.loads(urllib_get(host, "/cubes/bench"))
        w, so, e, n = s["bbox"]
        cx, cy = tile((w + e) / 2, (so + n) / 2, z)
        tiles = [(z, cx + dx, cy + dy) for dy in range(-2, 2) for dx in range(-2, 3)]
        rows = []
        for name in ("first", "repeated"):
            with cf.ThreadPoolExecutor(4) as pool:
                t0 = time.perf_counter()
                res = list(pool.map(lambda t: get(host, "/cubes/bench/tiles/WebMercatorQuad/%d/%d/%d.png" % t), tiles))
                wall = time.perf_counter() - t0
            bad = [r for r in res if r[1] != 200]
            lat = [r[0] * 1000 for r in res]
            rows.append((name, pct(lat, 0.5), pct(lat, 0.95), wall * 1000, len(bad), sum(r[2] for r in res)))
        return s, rows
    finally:
        p.terminate()
        p.wait()


def urllib_get(host, path):
    c = http.client.HTTPConnection(host, timeout=60)
    c.request("GET", path)
    return c.getresponse().read()


print(f"eocube serve tile latency ({profile} build), 20 tiles (5 x 4), 4 requests at a time, PNG RGB")
print(f"{'cube':<28} {'z':>3} {'level':>5} {'pass':<9} {'p50 ms':>8} {'p95 ms':>8} {'wall ms':>8} {'errors':>6} {'KB':>6}")
cases = [("no pyramid", cube)]
if pyramid:
    cases.append(("pyramid", pyramid))
for label, path in cases:
    # z 13 reads level 0 (0.62 cube px per tile px); z 11 reads level 1 of a pyramid (2.5 px)
    for z in [int(v) for v in os.environ.get("EOCUBE_BENCH_ZOOMS", "13,11").split(",")]:
        s, rows = run(path, z)
        lv = "0" if not s["pyramid"] or z >= 12 else "1"
        for name, p50, p95, wall, bad, size in rows:
            print(f"{label + ' ' + str(s['levels'][0]['shape']):<28} {z:>3} {lv:>5} {name:<9} {p50:>8.1f} {p95:>8.1f} {wall:>8.0f} {bad:>6} {size / 1024:>6.0f}")
if not pyramid:
    print("pyramid: not measured (`eocube overviews` is not in this build)")
