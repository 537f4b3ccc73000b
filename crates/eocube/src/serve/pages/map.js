// The map page (`/cubes/{id}/map`, `{id}` possibly `id@version`): one cube on a MapLibre map
// (the global `maplibregl`, loaded by map.html from this server), with a time slider that keeps
// the neighbouring time steps loaded, band and stretch controls, a pixel inspector that plots the
// time series of a clicked pixel, a version selector and an optional online basemap (off until
// asked for). Everything it asks for is on this server, with the page's ?token= carried on,
// except the basemap's tiles (which never get the token).

const maplibregl = window.maplibregl;
const pageQuery = new URLSearchParams(location.search);
const token = pageQuery.get("token");
const SVG = "http://www.w3.org/2000/svg"; // the SVG namespace, not a URL that is fetched

const OSM_TILES = "https://tile.openstreetmap.org/{z}/{x}/{y}.png";
const OSM_ATTRIBUTION = '© <a href="https://www.openstreetmap.org/copyright">OpenStreetMap</a> contributors';
// Tiles of `eocube serve` are 256 px (the WebMercatorQuad tile matrix set).
const TILE_SIZE = 256;
// A time step's neighbours kept loaded on each side, so moving the slider by one shows at once.
const NEIGHBOURS = 1;
const PLAY_MS = 1500;
const BAND_COLOURS = { red: "#d62728", green: "#2ca02c", blue: "#1f77b4", nir: "#8c564b", nir08: "#8c564b" };
const PALETTE = ["#9467bd", "#e377c2", "#17becf", "#bcbd22", "#ff7f0e", "#7f7f7f", "#393b79", "#637939"];

const $ = (id) => document.getElementById(id);

function splitQuery(url) {
  const i = url.indexOf("?");
  return i < 0 ? [url, ""] : [url.slice(0, i), url.slice(i + 1)];
}

function sameOrigin(url) {
  // The tile template holds {z}/{x}/{y}, which URL() would percent-encode: only its origin is used.
  return new URL(url, location.href).origin === location.origin;
}

/** `url` with `set` merged into its query (null deletes) and the token when it is ours. */
function withQuery(url, set = {}) {
  const [path, query] = splitQuery(url);
  const p = new URLSearchParams(query);
  for (const [k, v] of Object.entries(set)) {
    if (v == null || v === "") p.delete(k);
    else p.set(k, v);
  }
  if (token && sameOrigin(path)) p.set("token", token);
  const q = p.toString();
  return q ? `${path}?${q}` : path;
}

/** GET `path` as JSON; the server's `{"error"}` message when it says no. */
async function getJSON(path) {
  const r = await fetch(withQuery(path));
  const body = await r.json().catch(() => null);
  if (!r.ok) throw new Error(body?.error ?? `${path}: HTTP ${r.status} ${r.statusText}`);
  return body;
}

function setStatus(text, error = false) {
  const s = $("status");
  s.textContent = text;
  s.classList.toggle("error", error);
}

function svg(tag, attrs = {}, text) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  if (text != null) el.textContent = text;
  return el;
}

function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) if (v != null) el.setAttribute(k, v);
  el.append(...children.flat().filter((c) => c != null));
  return el;
}

// ---- the cube in the URL ----------------------------------------------------------------------

const match = location.pathname.match(/\/cubes\/([^/]+)\/map\/?$/);
const cubeRef = match ? decodeURIComponent(match[1]) : "";
const at = cubeRef.indexOf("@");
const baseId = at < 0 ? cubeRef : cubeRef.slice(0, at);
const version = at < 0 ? "" : cubeRef.slice(at + 1);
const apiPath = `/cubes/${encodeURIComponent(baseId)}${version ? "@" + encodeURIComponent(version) : ""}`;

// ---- state ------------------------------------------------------------------------------------

let cube; // the `GET /cubes/{id}` document
let map;
const state = { t: 0, mode: "rgb", rgb: [], band: "", colormap: "viridis", expression: "", lo: 0, hi: 0.3, opacity: 1 };
// The render parameters' generation: a change of bands or stretch makes new sources, while a time
// step change only switches which of the loaded ones is shown.
let generation = 0;
const shown = new Map(); // time index -> layer id of the current generation
let inspected = null; // [lon, lat] of the pixel in the inspector
let playing = null;

function renderQuery(t) {
  const q = { time: cube.times[t].label, rescale: `${state.lo},${state.hi}`, bands: null, colormap: null, expression: null };
  if (state.mode === "rgb") q.bands = state.rgb.join(",");
  else if (state.mode === "band") Object.assign(q, { bands: state.band, colormap: state.colormap });
  else Object.assign(q, { expression: state.expression, colormap: state.colormap });
  return q;
}

function tileURL(t) {
  let template = cube.links?.tiles ?? `${apiPath}/tiles/WebMercatorQuad/{z}/{x}/{y}.png`;
  // The tiles must be those of the version this page is pinned to, whatever id the links carry.
  template = template.replace(/\/cubes\/[^/]+\/tiles\//, `${apiPath}/tiles/`);
  if (template.startsWith("/")) template = location.origin + template;
  return withQuery(template, renderQuery(t));
}

// ---- layers -----------------------------------------------------------------------------------

const layerId = (g, t) => `cube-g${g}-t${t}`;

function addTimeLayer(t) {
  const id = layerId(generation, t);
  map.addSource(id, {
    type: "raster",
    tiles: [tileURL(t)],
    tileSize: TILE_SIZE,
    bounds: cube.bbox,
    minzoom: cube.minzoom ?? 0,
    maxzoom: cube.maxzoom ?? 22,
    attribution: "eocube",
  });
  // A hidden neighbour is drawn at opacity 0, not `visibility: none`, so MapLibre loads its tiles.
  map.addLayer(
    { id, type: "raster", source: id, paint: { "raster-opacity": 0, "raster-fade-duration": 0, "raster-resampling": "nearest" } },
    "cube-outline",
  );
  shown.set(t, id);
}

function removeLayer(id) {
  if (map.getLayer(id)) map.removeLayer(id);
  if (map.getSource(id)) map.removeSource(id);
}

/** Show time step `t`, keep its neighbours loaded, drop the rest. */
function showTime(t) {
  state.t = t;
  const keep = new Set();
  for (let d = -NEIGHBOURS; d <= NEIGHBOURS; d++) if (t + d >= 0 && t + d < cube.times.length) keep.add(t + d);
  for (const [i, id] of shown) {
    if (!keep.has(i)) {
      removeLayer(id);
      shown.delete(i);
    }
  }
  // The shown step's tiles are asked for first, its neighbours' after.
  const order = [...keep].sort((a, b) => Math.abs(a - t) - Math.abs(b - t));
  for (const i of order) if (!shown.has(i)) addTimeLayer(i);
  for (const [i, id] of shown) map.setPaintProperty(id, "raster-opacity", i === t ? state.opacity : 0);
  const label = cube.times[t];
  $("time-label").textContent = `${label.label} (${label.date})`;
  $("time").setAttribute("aria-valuetext", label.label);
  // The time step in the page's own URL: a reload, a link or a version switch keeps it.
  history.replaceState(history.state, "", withQuery(location.pathname + location.search, { time: label.label }) + location.hash);
  if (inspected) markTime();
}

/** Bands, stretch or colour map changed: new sources for the shown time steps. The old picture
 * stays under the new one until the new one's tiles are in, so the map never flashes empty. */
function rerender() {
  const stale = shown.get(state.t);
  for (const [i, id] of shown) if (i !== state.t) removeLayer(id);
  shown.clear();
  generation += 1;
  showTime(state.t);
  if (!stale) return;
  const fresh = shown.get(state.t);
  const done = () => {
    if (map.getSource(fresh) && !map.isSourceLoaded(fresh)) return;
    map.off("sourcedata", done);
    removeLayer(stale);
  };
  map.on("sourcedata", done);
}

function setBasemap(on) {
  if (on && !map.getSource("osm")) {
    map.addSource("osm", { type: "raster", tiles: [OSM_TILES], tileSize: 256, maxzoom: 19, attribution: OSM_ATTRIBUTION });
    map.addLayer({ id: "osm", type: "raster", source: "osm" }, map.getStyle().layers[1]?.id);
  } else if (!on) {
    removeLayer("osm");
  }
}

// ---- controls ---------------------------------------------------------------------------------

function options(select, values, selected) {
  select.replaceChildren(...values.map((v) => h("option", { value: v }, v)));
  select.value = selected;
}

function readControls() {
  state.mode = document.querySelector('input[name="mode"]:checked').value;
  state.rgb = [$("band-r").value, $("band-g").value, $("band-b").value];
  state.band = $("band-one").value;
  state.expression = $("expression").value.trim();
  state.colormap = $("colormap").value;
  const lo = Number($("lo").value);
  const hi = Number($("hi").value);
  if (!(Number.isFinite(lo) && Number.isFinite(hi) && lo < hi)) {
    setStatus("The stretch needs a low value below the high one.", true);
    return false;
  }
  [state.lo, state.hi] = [lo, hi];
  for (const m of ["rgb", "band", "expression"]) $(`mode-${m}`).hidden = state.mode !== m;
  $("colormap-label").hidden = state.mode === "rgb";
  return true;
}

function setupControls() {
  const bands = cube.bands ?? [];
  const pick = (name, i) => (bands.includes(name) ? name : bands[Math.min(i, bands.length - 1)]);
  options($("band-r"), bands, pick("red", 0));
  options($("band-g"), bands, pick("green", 1));
  options($("band-b"), bands, pick("blue", 2));
  options($("band-one"), bands, bands.includes("nir") ? "nir" : bands[0]);
  if (bands.length < 3) document.querySelector('input[name="mode"][value="band"]').checked = true;
  if (!(bands.includes("nir") && bands.includes("red"))) $("expression").value = bands[0] ?? "";
  // The server's figures are f32s (0.30000001192092896): shown as people write them.
  const [lo, hi] = (cube.default_rescale ?? [0, 0.3]).map((v) => Number(Number(v).toPrecision(6)));
  $("lo").value = lo;
  $("hi").value = hi;
  readControls();

  const slider = $("time");
  slider.max = String(cube.times.length - 1);
  slider.value = String(state.t);
  slider.disabled = cube.times.length < 2;
  $("play").disabled = cube.times.length < 2;
  slider.addEventListener("input", () => showTime(Number(slider.value)));
  $("play").addEventListener("click", togglePlay);

  let lastMode = state.mode;
  const changed = () => {
    // An expression such as NDVI spans -1..1, reflectance 0..0.3: switch the stretch with the mode.
    const mode = document.querySelector('input[name="mode"]:checked').value;
    if (mode !== lastMode && (mode === "expression" || lastMode === "expression")) {
      const [l, u] = mode === "expression" ? [-1, 1] : (cube.default_rescale ?? [0, 0.3]).map((v) => Number(Number(v).toPrecision(6)));
      $("lo").value = l;
      $("hi").value = u;
    }
    lastMode = mode;
    if (readControls()) {
      setStatus(statusLine());
      rerender();
    }
  };
  for (const el of document.querySelectorAll('input[name="mode"], #band-r, #band-g, #band-b, #band-one, #colormap')) {
    el.addEventListener("change", changed);
  }
  for (const el of [$("lo"), $("hi"), $("expression")]) el.addEventListener("change", changed);
  $("opacity").addEventListener("input", () => {
    state.opacity = Number($("opacity").value);
    const id = shown.get(state.t);
    if (id) map.setPaintProperty(id, "raster-opacity", state.opacity);
  });
  $("basemap").addEventListener("change", () => setBasemap($("basemap").checked));
  $("inspect-centre").addEventListener("click", () => {
    const c = map.getCenter();
    inspect(c.lng, c.lat);
  });
}

function togglePlay() {
  const button = $("play");
  if (playing) {
    clearInterval(playing);
    playing = null;
  } else {
    playing = setInterval(() => {
      const t = (state.t + 1) % cube.times.length;
      $("time").value = String(t);
      showTime(t);
    }, PLAY_MS);
  }
  button.textContent = playing ? "Pause" : "Play";
  button.setAttribute("aria-pressed", String(!!playing));
}

function setupVersions() {
  const select = $("version");
  const v = cube.versions;
  if (!v) {
    $("version-note").textContent = "A plain Zarr cube: it has no versions.";
    return;
  }
  const groups = [];
  const group = (label, items) => items.length && groups.push(h("optgroup", { label }, items));
  group("Branches", (v.branches ?? []).map((b) => h("option", { value: b.name }, `branch ${b.name}`)));
  group("Tags", (v.tags ?? []).map((t) => h("option", { value: t.name }, `tag ${t.name}`)));
  group(
    "Snapshots",
    (v.snapshots ?? []).map((s) => h("option", { value: s.id }, `${s.time ?? ""} ${s.id.slice(0, 10)}… ${s.message ?? ""}`.trim())),
  );
  select.replaceChildren(h("option", { value: "" }, "as served (default)"), ...groups);
  if (version && ![...select.options].some((o) => o.value === version)) {
    select.append(h("option", { value: version }, version));
  }
  select.value = version;
  select.disabled = false;
  // `version` of the document: what the server resolved the URL's version to.
  const r = cube.version;
  const snap = r?.snapshot ? `snapshot ${r.snapshot.slice(0, 12)}…` : "";
  const resolved = r?.kind === "branch" || r?.kind === "tag" ? `${r.kind} ${r.name} = ${snap}` : snap;
  $("version-note").textContent = version
    ? `Pinned to ${resolved || version}.`
    : `Showing ${resolved || "the default version"}. Pick a branch, tag or snapshot to pin the map to it.`;
  select.addEventListener("change", () => {
    const ref = select.value ? `${encodeURIComponent(baseId)}@${encodeURIComponent(select.value)}` : encodeURIComponent(baseId);
    location.assign(withQuery(`/cubes/${ref}/map`, { time: cube.times[state.t].label }) + location.hash);
  });
}

function statusLine() {
  const what =
    state.mode === "rgb" ? state.rgb.join(", ") : state.mode === "band" ? `${state.band} (${state.colormap})` : state.expression;
  return `${cubeRef}: ${what}, stretch ${state.lo} to ${state.hi}`;
}

// ---- the pixel inspector ----------------------------------------------------------------------

async function inspect(lon, lat) {
  inspected = [lon, lat];
  map.getSource("inspected")?.setData({ type: "Point", coordinates: [lon, lat] });
  const box = $("inspector");
  box.replaceChildren(h("p", {}, `Reading ${lon.toFixed(5)}, ${lat.toFixed(5)}…`));
  try {
    const point = await getJSON(`${apiPath}/point/${lon.toFixed(6)},${lat.toFixed(6)}`);
    if (inspected[0] !== lon || inspected[1] !== lat) return; // a newer click won
    box.replaceChildren(...series(point));
  } catch (e) {
    box.replaceChildren(h("p", { class: "error" }, e.message));
  }
}

function bandColour(band, i) {
  return BAND_COLOURS[band] ?? PALETTE[i % PALETTE.length];
}

const CHART = { w: 310, h: 190, l: 48, r: 26 };

/** The x of time step `i` of `n` in the chart. */
function chartX(i, n) {
  const span = CHART.w - CHART.l - CHART.r;
  return CHART.l + (n === 1 ? span / 2 : (i * span) / (n - 1));
}

function niceStep(range, target) {
  const raw = range / target;
  const mag = 10 ** Math.floor(Math.log10(raw));
  return [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw);
}

/** The time series of one pixel: an SVG line per band (gaps at fill), a legend and a table. */
function series(point) {
  const bands = point.bands ?? [];
  const rows = point.series ?? [];
  const values = rows.flatMap((r) => bands.map((b) => r.values?.[b])).filter((v) => v != null);
  const head = h("p", {}, `Pixel row ${point.row}, column ${point.col} at ${point.lon.toFixed(5)}, ${point.lat.toFixed(5)}`);
  if (!values.length) return [head, h("p", {}, "No valid value at any time step here (fill: no clear observation).")];

  const [W, H, L, R, T, B] = [CHART.w, CHART.h, CHART.l, CHART.r, 10, 26];
  let lo = Math.min(0, ...values);
  let hi = Math.max(...values);
  if (hi <= lo) hi = lo + 0.1;
  const step = niceStep(hi - lo, 4);
  lo = Math.floor(lo / step) * step;
  hi = Math.ceil(hi / step) * step;
  const x = (i) => chartX(i, rows.length);
  const y = (v) => T + ((hi - v) * (H - T - B)) / (hi - lo);

  const chart = svg("svg", { width: W, height: H, viewBox: `0 0 ${W} ${H}`, role: "img", id: "series" });
  chart.append(svg("title", {}, `Reflectance per band over ${rows.length} time steps`));
  for (let v = lo; v <= hi + step / 2; v += step) {
    chart.append(svg("line", { x1: L, x2: W - R, y1: y(v), y2: y(v), stroke: "#e3e6ea" }));
    chart.append(svg("text", { x: L - 4, y: y(v) + 3, "text-anchor": "end" }, Number(v.toFixed(6)).toString()));
  }
  const every = Math.max(1, Math.ceil(rows.length / 5));
  rows.forEach((r, i) => {
    if (i % every === 0 || i === rows.length - 1) {
      chart.append(svg("text", { x: x(i), y: H - B + 14, "text-anchor": "middle" }, r.label));
    }
  });
  chart.append(svg("text", { x: 10, y: T + (H - T - B) / 2, transform: `rotate(-90 10 ${T + (H - T - B) / 2})`, "text-anchor": "middle" }, "reflectance"));
  chart.append(svg("line", { id: "series-now", x1: x(state.t), x2: x(state.t), y1: T, y2: H - B, stroke: "#999", "stroke-dasharray": "3 3" }));
  bands.forEach((b, k) => {
    const colour = bandColour(b, k);
    const g = svg("g", { class: "band", "data-band": b });
    // Fill (null) breaks the line rather than pretending the value was there.
    let run = [];
    const flush = () => {
      if (run.length > 1) g.append(svg("polyline", { points: run.join(" "), fill: "none", stroke: colour, "stroke-width": 2 }));
      run = [];
    };
    rows.forEach((r, i) => {
      const v = r.values?.[b];
      if (v == null) return flush();
      run.push(`${x(i).toFixed(1)},${y(v).toFixed(1)}`);
      const dot = svg("circle", { cx: x(i), cy: y(v), r: 3, fill: colour });
      dot.append(svg("title", {}, `${b} ${r.label}: ${v.toFixed(4)}`));
      g.append(dot);
    });
    flush();
    chart.append(g);
  });
  const legend = h("ul", { class: "legend" }, bands.map((b, k) => h("li", {}, h("span", { style: `background:${bandColour(b, k)}` }), b)));
  const table = h(
    "table",
    {},
    h("tr", {}, h("th", {}, "time"), bands.map((b) => h("th", {}, b))),
    rows.map((r) => h("tr", {}, h("td", {}, r.label), bands.map((b) => h("td", {}, r.values?.[b] == null ? "fill" : r.values[b].toFixed(4))))),
  );
  return [head, chart, legend, h("details", {}, h("summary", {}, "values"), table)];
}

/** Move the inspector's "now" line with the slider. */
function markTime() {
  const line = document.getElementById("series-now");
  if (line) {
    line.setAttribute("x1", chartX(state.t, cube.times.length));
    line.setAttribute("x2", chartX(state.t, cube.times.length));
  }
}

// ---- start ------------------------------------------------------------------------------------

async function main() {
  if (!match) return setStatus("This page is /cubes/{id}/map.", true);
  if (!maplibregl) return setStatus("MapLibre GL did not load.", true);
  try {
    cube = await getJSON(apiPath);
  } catch (e) {
    return setStatus(`Could not open ${cubeRef}: ${e.message}`, true);
  }
  const name = cube.title && cube.title !== cube.id && cube.title !== baseId ? `${cube.title} (${baseId})` : baseId;
  document.title = `eocube: ${name}${version ? " @ " + version : ""}`;
  $("title").textContent = `${name}${version ? " @ " + version : ""}`;
  $("home").href = withQuery("/");
  if (!cube.times?.length) return setStatus(`${cubeRef} has no time steps to show.`, true);
  // The time step the URL names (label or date), else the latest, as the catalog's thumbnail.
  const asked = pageQuery.get("time");
  const found = cube.times.findIndex((t) => t.label === asked || t.date === asked);
  state.t = found >= 0 ? found : cube.times.length - 1;

  const [w, s, e, n] = cube.bbox;
  map = new maplibregl.Map({
    container: "map",
    style: {
      version: 8,
      sources: {
        "cube-outline": { type: "geojson", data: { type: "Polygon", coordinates: [[[w, s], [e, s], [e, n], [w, n], [w, s]]] } },
        inspected: { type: "geojson", data: { type: "FeatureCollection", features: [] } },
      },
      layers: [
        { id: "background", type: "background", paint: { "background-color": "#e9edf1" } },
        { id: "cube-outline", type: "line", source: "cube-outline", paint: { "line-color": "#333", "line-width": 1, "line-dasharray": [2, 2] } },
        { id: "inspected", type: "circle", source: "inspected", paint: { "circle-radius": 5, "circle-color": "#fff", "circle-stroke-color": "#d00", "circle-stroke-width": 2 } },
      ],
    },
    bounds: [[w, s], [e, n]],
    fitBoundsOptions: { padding: 30 },
    hash: "view",
    attributionControl: { compact: false },
    // Keeps the drawn picture for screenshots and for the test's canvas reads.
    canvasContextAttributes: { preserveDrawingBuffer: true },
  });
  map.addControl(new maplibregl.NavigationControl({ showCompass: false }), "top-right");
  map.addControl(new maplibregl.ScaleControl(), "bottom-left");
  map.getCanvas().setAttribute("aria-label", `Map of ${cubeRef}; click a pixel to see its time series`);
  // Exposed for scripting and the browser test (tests/view/pages.rs).
  window.eocube = { map, cube, state, showTime, inspect };

  map.on("error", async (ev) => {
    if (ev.sourceId === "osm") return setStatus("The OpenStreetMap basemap cannot be reached (offline?); the cube is drawn without it.", true);
    // A tile the server refused: show its message (e.g. "run eocube overviews" for a 413).
    let text = ev.error?.message ?? String(ev.error);
    const body = ev.error?.body;
    if (body && typeof body.text === "function") {
      const parsed = await body.text().then((t) => JSON.parse(t)).catch(() => null);
      if (parsed?.error) text = parsed.error;
    }
    setStatus(text, true);
  });
  map.on("click", (ev) => inspect(ev.lngLat.lng, ev.lngLat.lat));
  map.once("load", () => {
    setupControls();
    setupVersions();
    showTime(state.t);
    setStatus(statusLine());
  });
}

main();
