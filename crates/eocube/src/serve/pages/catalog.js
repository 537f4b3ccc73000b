// The catalog page (`/`): every cube this server serves, from `GET /cubes`, each with its extent
// thumbnail, bands, time range, levels and (for Icechunk, from `GET /cubes/{id}`) its versions,
// and a link to its map. Text from the server goes in as text nodes only, never as HTML.

const token = new URLSearchParams(location.search).get("token");

/** `url` with the page's ?token= added, when there is one and `url` is on this server. */
export function withToken(url) {
  if (!token || new URL(url, location.href).origin !== location.origin) return url;
  const [path, query = ""] = splitQuery(url);
  const p = new URLSearchParams(query);
  p.set("token", token);
  return `${path}?${p}`;
}

function splitQuery(url) {
  const i = url.indexOf("?");
  return i < 0 ? [url, ""] : [url.slice(0, i), url.slice(i + 1)];
}

/** GET `path` as JSON; the server's `{"error"}` message when it says no. */
export async function getJSON(path) {
  const r = await fetch(withToken(path));
  const body = await r.json().catch(() => null);
  if (!r.ok) throw new Error(body?.error ?? `${path}: HTTP ${r.status} ${r.statusText}`);
  return body;
}

/** An element with attributes and children (strings become text nodes). */
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) if (v != null) el.setAttribute(k, v);
  el.append(...children.flat().filter((c) => c != null));
  return el;
}

const deg = (v) => Number(v).toFixed(4);

function timeRange(times) {
  if (!times?.length) return "no time steps";
  const first = times[0].label;
  const last = times[times.length - 1].label;
  const n = `${times.length} time step${times.length === 1 ? "" : "s"}`;
  return first === last ? `${first} (${n})` : `${first} to ${last} (${n})`;
}

function levels(cube) {
  const ls = cube.levels ?? [];
  const full = ls[0]?.shape ? `${ls[0].shape[1]} × ${ls[0].shape[0]} px` : "";
  if (!cube.pyramid) return `${full}, no pyramid (tiles are coarsened on the fly)`;
  return `${full}, pyramid of ${ls.length} levels`;
}

function versionList(versions) {
  if (!versions) return "plain Zarr (no versions)";
  const items = [];
  for (const b of versions.branches ?? []) items.push(h("li", {}, "branch ", h("code", {}, b.name), ` at ${short(b.snapshot)}`));
  for (const t of versions.tags ?? []) items.push(h("li", {}, "tag ", h("code", {}, t.name), ` at ${short(t.snapshot)}`));
  const snaps = versions.snapshots ?? [];
  // The newest few: a long history would swamp the card (the map's selector lists them all).
  for (const s of snaps.slice(0, 5)) {
    items.push(h("li", {}, "snapshot ", h("code", {}, short(s.id)), ` ${s.time ?? ""} `, h("q", {}, s.message ?? "")));
  }
  if (snaps.length > 5) items.push(h("li", {}, `and ${snaps.length - 5} older snapshots`));
  return h("ul", { class: "versions" }, items);
}

const short = (id) => (id && id.length > 12 ? id.slice(0, 12) + "…" : id ?? "?");

function card(cube, detail, detailError) {
  const title = cube.title && cube.title !== cube.id ? `${cube.title} (${cube.id})` : cube.id;
  const bbox = cube.bbox ?? [];
  const bboxText = bbox.length === 4 ? `W ${deg(bbox[0])}, S ${deg(bbox[1])}, E ${deg(bbox[2])}, N ${deg(bbox[3])}` : "unknown";
  const mapHref = withToken(cube.links?.map ?? `/cubes/${encodeURIComponent(cube.id)}/map`);
  const thumb = cube.links?.thumbnail
    ? h(
        "figure",
        {},
        h("img", { src: withToken(cube.links.thumbnail), alt: `The extent of ${cube.id}, latest time step`, loading: "lazy" }),
        h("figcaption", {}, `latest time step; extent ${bboxText} (lon/lat)`),
      )
    : null;
  let versions;
  if (detailError) versions = h("span", { class: "error" }, detailError);
  else if (detail) versions = versionList(detail.versions);
  else versions = cube.icechunk ? "…" : "plain Zarr (no versions)";
  return h(
    "li",
    { class: "card", "data-cube": cube.id },
    h("article", { "aria-labelledby": `cube-${cube.id}` },
      h("h2", { id: `cube-${cube.id}` }, title),
      thumb,
      h(
        "dl",
        {},
        h("dt", {}, "variable"), h("dd", {}, cube.variable ?? "?"),
        h("dt", {}, "bands"), h("dd", {}, (cube.bands ?? []).join(", ")),
        h("dt", {}, "time"), h("dd", { class: "times" }, timeRange(cube.times)),
        h("dt", {}, "extent"), h("dd", {}, `${bboxText}, ${cube.crs ?? ""}`),
        h("dt", {}, "levels"), h("dd", {}, levels(cube)),
        h("dt", {}, "location"), h("dd", {}, h("code", {}, cube.location ?? "")),
        h("dt", {}, "versions"), h("dd", { class: "versions" }, versions),
      ),
      h("a", { class: "open", href: mapHref }, `Open ${cube.id} on the map`),
    ),
  );
}

async function main() {
  const status = document.getElementById("status");
  const list = document.getElementById("cubes");
  let cubes;
  try {
    cubes = (await getJSON("/cubes")).cubes ?? [];
  } catch (e) {
    status.textContent = `Could not list the cubes: ${e.message}`;
    status.classList.add("error");
    return;
  }
  status.textContent = `${cubes.length} cube${cubes.length === 1 ? "" : "s"}`;
  for (const cube of cubes) list.append(card(cube));
  // Versions come from each cube's own document; fetched together, filled in as they come.
  await Promise.all(
    cubes.map(async (cube, i) => {
      let detail = null;
      let err = null;
      try {
        detail = await getJSON(`/cubes/${encodeURIComponent(cube.id)}`);
      } catch (e) {
        err = `versions unavailable: ${e.message}`;
      }
      list.children[i].replaceWith(card(cube, detail, err));
    }),
  );
  document.body.dataset.ready = "true";
}

main();
