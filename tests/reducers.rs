//! Every reducer of `eocube::reduce` against a numpy reference on synthetic stacks (issue 14):
//! random stacks with many ties, one observation, no valid observation (all fill) and up to 40
//! solar days; the geometric median against a numpy port of hdstats' Weiszfeld iteration.
//! Python (the test venv's numpy) is the reference only; eocube never runs it. Fails (never
//! skips) without the venv: `scripts/test.sh --test reducers`.

mod common;

use std::path::Path;

use eocube::reduce::{GEOMEDIAN_EPS_DN, GEOMEDIAN_MAX_ITERS, Reducer};

/// Days of the stacks: `k` solar days of `n` pixels, day-major, 0 meaning fill (no observation).
struct Stack {
    k: usize,
    n: usize,
    values: Vec<u16>,
}

/// A deterministic stack: pixel p has `p % 41` days with data at most (0 to 40), some days masked
/// (0); few distinct values in a third of the pixels, so ties are common.
fn stack(n: usize, k: usize, seed: u64) -> Stack {
    let mut state = seed;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut values = vec![0u16; k * n];
    for p in 0..n {
        let days = p % (k + 1);
        for d in 0..days {
            let r = next();
            if r.is_multiple_of(5) {
                continue; // masked on that day
            }
            let v = match p % 3 {
                0 => 1000 + (r >> 8) % 4 * 250, // four values: ties
                1 => 1 + (r >> 8) % 65535,      // the whole range
                _ => 900 + (r >> 8) % 3000,     // reflectance-like
            };
            values[d * n + p] = v as u16;
        }
    }
    Stack { k, n, values }
}

fn write_u16(path: &Path, v: &[u16]) {
    std::fs::write(path, v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>()).unwrap();
}

fn reduce(r: &Reducer, s: &Stack) -> Vec<u16> {
    let days: Vec<&[u16]> = s.values.chunks_exact(s.n).collect();
    let mut out = vec![7u16; s.n * r.values_per_band()];
    r.reduce_masked(&days, &mut out).unwrap();
    out
}

/// numpy's answers, stored as eocube stores them: medians by DESIGN section 7 (floor of the two
/// middle values' mean), mean and quantiles (`np.quantile`, default method linear) rounded half
/// up, std (`np.std`, ddof=0) rounded half up plus 1, count; 0 where no observation.
const NUMPY: &str = r#"
import sys, numpy as np
k, n, src, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
qs = [float(q) for q in sys.argv[5].split(",")]
x = np.fromfile(src, dtype="<u2").reshape(k, n)
res = {name: np.zeros(n, dtype=np.uint16) for name in ["median", "mean", "min", "max", "std", "count"]}
quant = np.zeros((n, len(qs)), dtype=np.uint16)
for p in range(n):
    v = x[:, p][x[:, p] != 0].astype(np.float64)
    if v.size == 0:
        continue
    s = np.sort(v)
    m = s.size
    res["median"][p] = s[m // 2] if m % 2 else np.floor((s[m // 2 - 1] + s[m // 2]) / 2)
    res["mean"][p] = np.floor(v.mean() + 0.5)
    res["min"][p] = v.min()
    res["max"][p] = v.max()
    res["std"][p] = np.floor(np.std(v) + 0.5) + 1
    res["count"][p] = m
    quant[p] = np.floor(np.quantile(v, qs) + 0.5)
for name, a in res.items():
    a.astype("<u2").tofile(f"{out}/{name}.u16")
quant.astype("<u2").tofile(f"{out}/quantiles.u16")
print("ok", n)
"#;

#[test]
fn every_reducer_matches_numpy_on_synthetic_stacks() {
    let dir = common::scratch_dir("reducers-numpy");
    let s = stack(20_000, 40, 0x9e37_79b9_7f4a_7c15);
    let src = dir.join("stack.u16");
    write_u16(&src, &s.values);
    let qs = "0,0.1,0.25,0.5,0.9,1";
    let said = common::run_python(
        NUMPY,
        &[&s.k.to_string(), &s.n.to_string(), src.to_str().unwrap(), dir.to_str().unwrap(), qs],
        "numpy reference of the reducers",
    );
    assert!(said.contains("ok"), "{said}");
    let mut names = vec!["median", "mean", "min", "max", "std", "count"];
    names.push("quantiles");
    for name in names {
        let r: Reducer =
            if name == "quantiles" { format!("quantiles:{qs}").parse().unwrap() } else { name.parse().unwrap() };
        let got = reduce(&r, &s);
        let want = common::read_le_u16(dir.join(format!("{name}.u16")));
        assert_eq!(got.len(), want.len(), "{name}");
        let bad: Vec<usize> = (0..got.len()).filter(|&i| got[i] != want[i]).collect();
        assert!(
            bad.is_empty(),
            "{name}: {} of {} values differ from numpy, first at {}: got {} want {}",
            bad.len(),
            got.len(),
            bad[0],
            got[bad[0]],
            want[bad[0]]
        );
        // The cases the issue names are in the stack: no observation, one, and ties.
        let nv = r.values_per_band();
        assert!((0..s.n).any(|p| p % 41 == 0 && got[p * nv] == 0), "{name}: all-fill pixels");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// hdstats' `nangeomedian_pcm` Weiszfeld iteration (pcm.pyx `__gm`), per pixel, in numpy float64:
/// start at the mean, Vardi-Zhang step when the estimate sits on data points, stop after a step
/// shorter than eps or maxiters steps; where every point sits on the estimate, that point (where
/// hdstats returns zeros). Rounded half up.
const WEISZFELD: &str = r#"
import sys, numpy as np
k, n, p, src, out, eps, maxiters = (int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4],
                                    sys.argv[5], float(sys.argv[6]), int(sys.argv[7]))
x = np.fromfile(src, dtype="<u2").reshape(k, p, n).astype(np.float64)
res = np.zeros((n, p), dtype=np.uint16)
iters = []
for px in range(n):
    pts = x[:, :, px]
    pts = pts[(pts != 0).all(axis=1)]
    if len(pts) == 0:
        continue
    y = pts.mean(axis=0)
    it = 0
    while it < maxiters:
        d = np.sqrt(((pts - y) ** 2).sum(axis=1))
        nz = d > 0
        zeros = int((~nz).sum())
        if zeros == len(pts):
            break
        w = 1.0 / d[nz]
        t = (w[:, None] * pts[nz]).sum(axis=0) / w.sum()
        if zeros == 0:
            y1 = t
        else:
            r = np.sqrt((((t - y) * w.sum()) ** 2).sum())
            rinv = zeros / r if r > 0 else 0.0
            y1 = max(0.0, 1 - rinv) * t + min(1.0, rinv) * y
        step = np.sqrt(((y - y1) ** 2).sum())
        y = y1
        it += 1
        if step < eps:
            break
    iters.append(it)
    res[px] = np.floor(y + 0.5)
res.astype("<u2").tofile(out)
print("ok", n, "max iterations", max(iters))
"#;

#[test]
fn geomedian_matches_a_numpy_weiszfeld() {
    let dir = common::scratch_dir("reducers-geomedian");
    let (n, k, p) = (3000usize, 12usize, 4usize);
    // Four bands per day; a pixel's day is valid in every band or in none (as after fusion).
    let mut days: Vec<Vec<Vec<u16>>> = vec![vec![vec![0u16; n]; p]; k];
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    for px in 0..n {
        let count = px % (k + 1);
        for day in days.iter_mut().take(count) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            if state.is_multiple_of(7) {
                continue;
            }
            for (b, band) in day.iter_mut().enumerate() {
                // Ties and repeated points in every third pixel (the Vardi-Zhang branch).
                let v = if px % 3 == 0 {
                    1000 + (state >> 20) % 2 * 500 + b as u64 * 100
                } else {
                    800 + (state >> (8 * b)) % 2500
                };
                band[px] = v as u16;
            }
        }
    }
    let flat: Vec<u16> = days.iter().flat_map(|d| d.iter().flatten().copied()).collect();
    let src = dir.join("stack.u16");
    write_u16(&src, &flat);
    let out = dir.join("geomedian.u16");
    let said = common::run_python(
        WEISZFELD,
        &[
            &k.to_string(),
            &n.to_string(),
            &p.to_string(),
            src.to_str().unwrap(),
            out.to_str().unwrap(),
            &GEOMEDIAN_EPS_DN.to_string(),
            &GEOMEDIAN_MAX_ITERS.to_string(),
        ],
        "numpy Weiszfeld reference",
    );
    assert!(said.contains("ok"), "{said}");
    let want = common::read_le_u16(&out);
    let obs: Vec<Vec<&[u16]>> = days.iter().map(|d| d.iter().map(Vec::as_slice).collect()).collect();
    let mut got = vec![9u16; n * p];
    Reducer::Geomedian.reduce_bands(&obs, p, &mut got).unwrap();
    // Same iteration, same float64 arithmetic up to summation order: equal after rounding but
    // for a value sitting at a half.
    let off: Vec<usize> = (0..got.len()).filter(|&i| got[i].abs_diff(want[i]) > 1).collect();
    assert!(
        off.is_empty(),
        "{} values more than 1 DN from numpy, first at {}: {} vs {}",
        off.len(),
        off[0],
        got[off[0]],
        want[off[0]]
    );
    let exact = (0..got.len()).filter(|&i| got[i] == want[i]).count();
    assert!(exact * 1000 >= got.len() * 999, "only {exact} of {} equal ({said})", got.len());
    assert!((0..n).filter(|px| px % (k + 1) == 0).all(|px| got[px * p..(px + 1) * p].iter().all(|&v| v == 0)));
    eprintln!("geomedian: {exact} of {} values equal to numpy; {said}", got.len());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn old_median_specs_read_as_median_and_keep_their_identity() {
    // A spec as stored by a median-only eocube: `"reducer": "median"` and no `with_count`.
    let input = eocube::spec::SpecInput {
        bbox: Some(vec![-73.0, 44.0, -72.0, 45.0]),
        start: Some("2020-01-01".into()),
        end: Some("2020-03-31".into()),
        ..Default::default()
    };
    let spec = input.clone().validate().unwrap();
    let stored = spec.identity_json();
    assert_eq!(stored["reducer"], "median");
    assert!(stored.get("with_count").is_none(), "{stored}");
    let back: eocube::spec::CubeSpec = serde_json::from_value(stored.clone()).unwrap();
    assert_eq!(back.identity_json(), stored);
    // Parameters are part of the identity.
    let q = |r: &str| {
        eocube::spec::SpecInput { reducer: Some(r.into()), ..input.clone() }.validate().unwrap().identity_json()
    };
    assert_eq!(q("quantiles:0.1,0.9")["reducer"], "quantiles:0.1,0.9");
    assert_ne!(q("quantiles:0.1,0.9"), q("quantiles:0.1,0.8"));
    let counted = eocube::spec::SpecInput { with_count: Some(true), ..input }.validate().unwrap().identity_json();
    assert_eq!(counted["with_count"], true);
}

// ---------------------------------------------------------------------------------------------
// End to end: `eocube build` of the e2e archive (its local item file: no server needed, only
// `EOCUBE_FIXTURES`) with several reducers, read back by xarray and checked against each other.
// ---------------------------------------------------------------------------------------------

/// Builds the e2e archive into `dir/name.zarr` with `extra` flags (nearest, 128-px chunks).
fn build(dir: &Path, name: &str, extra: &[&str]) -> std::path::PathBuf {
    let out = dir.join(format!("{name}.zarr"));
    let items = common::e2e_dir().join("items-local.json");
    let mut flags = vec!["--resampling", "nearest", "--chunk-size", "128", "--quiet"];
    flags.extend(extra);
    common::eocube_build_ok(&common::e2e_items_build_args(&out, &items, &flags));
    out
}

/// Opens every cube with xarray (consolidated, CF decoding on) and checks the reducers' values
/// against each other, pixel for pixel: argv = median quantiles max std geomedian mean cubes.
const CROSS_CHECK: &str = r#"
import sys
import numpy as np
import xarray as xr
med_p, q_p, max_p, std_p, gm_p, mean_p, v2_p = sys.argv[1:8]
def check(ok, what):
    print(("ok   " if ok else "FAIL ") + what, flush=True)
    if not ok:
        sys.exit(1)
med = xr.open_zarr(med_p, consolidated=True)
q = xr.open_zarr(q_p, consolidated=True)
mx = xr.open_zarr(max_p, consolidated=True)
sd = xr.open_zarr(std_p, consolidated=True)
gm = xr.open_zarr(gm_p, consolidated=True)
mean = xr.open_zarr(mean_p, consolidated=True)
v2 = xr.open_zarr(v2_p, consolidated=True)

check(set(med.data_vars) == {"rgb_median", "valid_count"}, f"median cube variables {sorted(med.data_vars)}")
m = med["rgb_median"]
check(m.attrs.get("eocube:reducer") == "median", "eocube:reducer = median")
cnt = med["valid_count"]
check(cnt.dims == ("time", "latitude", "longitude"), f"valid_count dims {cnt.dims}")
check(cnt.dtype == np.uint16, f"valid_count is not masked in v3 ({cnt.dtype})")
c = cnt.values.astype(int)
check(c.max() >= 2, f"some pixels have several observations (max {c.max()})")
nan = np.isnan(m.values).all(axis=-1)
check(((c == 0) == nan).all(), "valid_count is 0 exactly where the median is fill")
check(c.sum() > 0 and (c > 0).sum() > c.size // 4, f"{(c > 0).sum()} of {c.size} pixels observed")

qa = q["rgb_quantiles"]
check(qa.dims == ("time", "latitude", "longitude", "band", "quantile"), f"quantile cube dims {qa.dims}")
check(list(q["quantile"].values) == [0.0, 0.5, 1.0], f"quantile coordinate {q['quantile'].values}")
check(qa.attrs.get("eocube:reducer") == "quantiles:0,0.5,1", f"eocube:reducer {qa.attrs.get('eocube:reducer')}")
check(qa.encoding.get("scale_factor") == 0.0001 and qa.encoding.get("add_offset") == -0.1, "quantiles scaled as reflectance")
check((q["valid_count"].values == cnt.values).all(), "valid_count the same whatever the reducer")
raw = lambda da: np.round((da.values + 0.1) / 0.0001)
mr, q0, q5, q1 = raw(m), raw(qa.sel(quantile=0.0)), raw(qa.sel(quantile=0.5)), raw(qa.sel(quantile=1.0))
obs = ~np.isnan(mr)
ones = np.broadcast_to((c == 1)[..., None], mr.shape)
odd = np.broadcast_to((c % 2 == 1)[..., None], mr.shape)
check(((q0 <= mr) & (mr <= q1))[obs].all(), "min <= median <= max")
check((q5 == mr)[odd & obs].all(), "quantile 0.5 equals the median where the count is odd")
check((np.abs(q5 - mr) <= 1)[obs].all(), "quantile 0.5 within 1 DN of the median (its even-count rule floors)")
check(((q0 == q1) & (q1 == mr))[ones].all(), "one observation: every quantile is it")
check((np.isnan(q0) == np.isnan(mr)).all(), "fill in the same places")
check((raw(mx["rgb_max"]) == q1)[obs].all(), "max equals quantile 1")

s = sd["rgb_std"]
check(s.encoding.get("add_offset") == -0.0001 and s.encoding.get("scale_factor") == 0.0001, "std: offset -0.0001")
sv = s.values
check((np.isnan(sv) == np.isnan(m.values)).all(), "std is fill where the median is")
check((np.abs(sv[ones]) < 1e-9).all(), "std of one observation is 0 after CF decoding")
spread = (q1 - q0) * 0.0001
check((sv[obs] <= spread[obs] / 2 + 0.0001 + 1e-9).all() and (sv[obs] >= -1e-9).all(), "0 <= std <= (max - min) / 2")

g = raw(gm["rgb_geomedian"])
check(gm["rgb_geomedian"].attrs.get("eocube:geomedian_max_iters") == 10000, "geomedian attributes")
check(((q0 <= g) & (g <= q1))[obs].all(), "geomedian inside [min, max] in every band")
check((g[ones] == mr[ones]).all(), "geomedian of one observation is it")
mn = raw(mean["rgb_mean"])
check(((q0 <= mn) & (mn <= q1))[obs].all(), "mean inside [min, max]")

vq = v2["rgb_quantiles"]
check(vq.dims == qa.dims and np.array_equal(vq.values, qa.values, equal_nan=True), "Zarr v2 quantile cube equals v3")
print("all checks passed")
"#;

#[test]
fn e2e_reducers_read_back_in_xarray_and_agree_with_each_other() {
    let dir = common::scratch_dir("reducers-e2e");
    let median = build(&dir, "median", &["--with-count"]);
    let quantiles = build(&dir, "quantiles", &["--reducer", "quantiles:0,0.5,1", "--with-count"]);
    let max = build(&dir, "max", &["--reducer", "max"]);
    let std = build(&dir, "std", &["--reducer", "std"]);
    let geomedian = build(&dir, "geomedian", &["--reducer", "geomedian"]);
    let mean = build(&dir, "mean", &["--reducer", "mean"]);
    let v2 = build(&dir, "quantiles-v2", &["--reducer", "quantiles:0,0.5,1", "--zarr-format", "2"]);
    let paths: Vec<&str> =
        [&median, &quantiles, &max, &std, &geomedian, &mean, &v2].iter().map(|p| p.to_str().unwrap()).collect();
    let said = common::run_python(CROSS_CHECK, &paths, "xarray cross-check of the reducers");
    println!("{said}");
    assert!(said.contains("all checks passed"), "{said}");

    // Resume compares the reducer with its parameters: the same flags resume, others are refused.
    let items = common::e2e_dir().join("items-local.json");
    let again = |r: &str| {
        let flags = ["--resampling", "nearest", "--chunk-size", "128", "--quiet", "--reducer", r, "--with-count"];
        common::run_eocube(&common::e2e_items_build_args(&quantiles, &items, &flags))
    };
    let same = again("quantiles:0,0.5,1");
    assert!(same.status.success(), "{}", String::from_utf8_lossy(&same.stderr));
    let other = again("quantiles:0,0.5,0.9");
    assert!(!other.status.success(), "a cube of other quantiles was resumed");
    let stderr = String::from_utf8_lossy(&other.stderr);
    assert!(stderr.contains("quantiles:0,0.5,1") && stderr.contains("quantiles:0,0.5,0.9"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}
