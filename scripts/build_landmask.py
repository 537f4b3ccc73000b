#!/usr/bin/env python3
"""Convert world-atlas `land-10m.json` (Natural Earth 1:10m land, TopoJSON) into eocube's compact
land mask, `crates/eocube/assets/land-10m.bin`. Standard library only; run by `scripts/build-landmask.sh`.

Format (all integers little-endian; decoded by `crates/eocube/src/landmask/format.rs`):
    header:  b"EOLAND01" | u32 payload length (uncompressed) | zlib(payload)
    payload: f64 scale_x, scale_y, translate_x, translate_y   (TopoJSON transform: lon = q*scale+translate)
             varint polygon count P
             per polygon: varint ring count R                  (land = inside an odd number of rings)
             per ring:    varint vertex count N                (open ring: the closing vertex is implied)
                          N x (zigzag varint dx, zigzag varint dy)   quantized, delta from the previous
                                                                     vertex (carried across rings)
Quantized coordinates are kept exactly as TopoJSON has them, so the build is lossless.
"""
import json
import math
import struct
import sys
import zlib

MAGIC = b"EOLAND01"


def varint(out, v):
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out.append(b | 0x80)
        else:
            out.append(b)
            return


def zigzag(v):
    return (v << 1) if v >= 0 else ((-v) << 1) - 1


def main(src, dst):
    with open(src) as f:
        topo = json.load(f)
    t = topo["transform"]
    # Undo TopoJSON's delta encoding of arcs: absolute quantized integer positions.
    arcs = []
    for arc in topo["arcs"]:
        x = y = 0
        pts = []
        for dx, dy in arc:
            x += dx
            y += dy
            pts.append((x, y))
        arcs.append(pts)

    def ring_points(arc_ids):
        pts = []
        for a in arc_ids:
            seq = arcs[a] if a >= 0 else arcs[~a][::-1]
            # Consecutive arcs share their joining vertex.
            pts.extend(seq if not pts else seq[1:])
        # Drop repeats created by quantization; keep at least one vertex so a tiny islet survives
        # as a point (the runtime treats a degenerate ring as a point or a segment, never drops it).
        clean = []
        for p in pts:
            if not clean or clean[-1] != p:
                clean.append(p)
        if len(clean) > 1 and clean[0] == clean[-1]:
            clean.pop()
        return planar_rings(clean)

    def planar_rings(ring):
        # TopoJSON rings live on the sphere, the runtime tests containment in the lon/lat plane.
        # Two cases occur in land-10m.json: Antarctica circles the pole and closes with one edge
        # that jumps across the antimeridian (route the closure down the antimeridian, along the
        # pole latitude and back up), and one Chukotka ring crosses the antimeridian twice (cut it
        # into an east and a west ring, each closed along the antimeridian).
        n = len(ring)
        jumps = [i for i in range(n) if abs(ring[(i + 1) % n][0] - ring[i][0]) > quant_max_x // 2]
        if not jumps:
            return [ring]
        if len(jumps) == 1:
            i = jumps[0]
            ring = ring[i + 1:] + ring[:i + 1]  # now the jump is the closing edge, last -> first
            (x_last, _), (x_first, y_first) = ring[-1], ring[0]
            if not (x_last > x_first and x_first == 0):
                raise SystemExit("pole ring not closing eastward at -180: unsupported")
            if sum(y for _, y in ring) / n > quant_max_y / 2:
                raise SystemExit("north-pole ring: unsupported")
            return [ring + [(quant_max_x, y_first), (quant_max_x, pole_y), (0, pole_y)]]
        if len(jumps) != 2:
            raise SystemExit(f"ring with {len(jumps)} antimeridian jumps: unsupported")

        def crossing_y(i):
            # y where the jump edge i -> i+1 meets the antimeridian (the edges are a few quanta long).
            (xa, ya), (xb, yb) = ring[i], ring[(i + 1) % n]
            da = (quant_max_x - xa) if xa > xb else xa  # distance of a to the antimeridian
            db = xb if xa > xb else (quant_max_x - xb)
            return ya if da + db == 0 else round(ya + (yb - ya) * da / (da + db))

        j1, j2 = jumps
        y1, y2 = crossing_y(j1), crossing_y(j2)
        chain_a = ring[j1 + 1:j2 + 1]
        chain_b = ring[j2 + 1:] + ring[:j1 + 1]
        out = []
        for chain, y_start, y_end in ((chain_a, y1, y2), (chain_b, y2, y1)):
            east = chain[0][0] > quant_max_x // 2
            edge_x = quant_max_x if east else 0
            out.append([(edge_x, y_start)] + chain + [(edge_x, y_end)])
        return out

    # Quantized x of lon 180 and y of lat 90 / -90 (the pole rounded outward: one quantum past it
    # is harmless).
    quant_max_x = round((180.0 - t["translate"][0]) / t["scale"][0])
    quant_max_y = round((90.0 - t["translate"][1]) / t["scale"][1])
    pole_y = math.floor((-90.0 - t["translate"][1]) / t["scale"][1])
    polygons = []
    for geom in topo["objects"]["land"]["geometries"]:
        if geom["type"] == "Polygon":
            polys = [geom["arcs"]]
        elif geom["type"] == "MultiPolygon":
            polys = geom["arcs"]
        else:
            raise SystemExit(f"unexpected geometry type {geom['type']}")
        for poly in polys:
            polygons.append([pr for r in poly for pr in ring_points(r)])

    out = bytearray()
    out += struct.pack("<4d", t["scale"][0], t["scale"][1], t["translate"][0], t["translate"][1])
    varint(out, len(polygons))
    px = py = 0
    n_rings = n_vertices = 0
    for poly in polygons:
        varint(out, len(poly))
        for ring in poly:
            varint(out, len(ring))
            n_rings += 1
            n_vertices += len(ring)
            for x, y in ring:
                varint(out, zigzag(x - px))
                varint(out, zigzag(y - py))
                px, py = x, y
    blob = MAGIC + struct.pack("<I", len(out)) + zlib.compress(bytes(out), 9)
    with open(dst, "wb") as f:
        f.write(blob)
    print(f"polygons={len(polygons)} rings={n_rings} vertices={n_vertices} "
          f"payload={len(out)} B file={len(blob)} B", file=sys.stderr)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit("usage: build_landmask.py land-10m.json out.bin")
    main(sys.argv[1], sys.argv[2])
