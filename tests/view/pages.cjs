// Drives the pages of a running `eocube serve` in headless Chromium (playwright-core, installed
// into .tools/ by scripts/setup.sh) and prints what it saw as one JSON line; tests/view/pages.rs
// runs it and judges the result (this script decides nothing, so a failure reads in Rust).
//   node tests/view/pages.cjs BASE_URL CUBE_ID TOKEN OUT_DIR [VERSION]
// Environment: PLAYWRIGHT_CORE (the package's directory), CHROMIUM (the browser).
"use strict";
const path = require("path");
const { chromium } = require(process.env.PLAYWRIGHT_CORE);

const [base, id, token, out, version] = process.argv.slice(2);
const withToken = (p) => `${base}${p}${p.includes("?") ? "&" : "?"}token=${encodeURIComponent(token)}`;
const timeOf = (url) => new URL(url).searchParams.get("time");
const isTile = (url) => /\/tiles\/WebMercatorQuad\/\d+\/\d+\/\d+\.\w+/.test(new URL(url).pathname);

async function idle(page) {
  // Tiles of every layer in and drawn: MapLibre's `idle` after the last change.
  await page.waitForFunction(() => window.eocube && window.eocube.map.loaded() && window.eocube.map.areTilesLoaded(), null, { timeout: 60000 });
  await page.evaluate(() => new Promise((r) => (window.eocube.map.loaded() ? r() : window.eocube.map.once("idle", r))));
  await page.waitForTimeout(300);
}

async function main() {
  const seen = { requests: [], failed: [], console: [], pageErrors: [] };
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM,
    headless: true,
    args: ["--no-sandbox", "--use-angle=swiftshader", "--enable-unsafe-swiftshader", "--hide-scrollbars"],
  });
  const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  page.on("request", (r) => seen.requests.push(r.url()));
  page.on("requestfailed", (r) => seen.failed.push(`${r.url()}: ${r.failure()?.errorText}`));
  page.on("response", (r) => r.status() >= 400 && seen.failed.push(`${r.url()}: HTTP ${r.status()}`));
  page.on("console", (m) => seen.console.push(`${m.type()}: ${m.text()}`));
  page.on("pageerror", (e) => seen.pageErrors.push(String(e)));
  const result = { seen };

  // The catalog.
  await page.goto(withToken("/"));
  await page.waitForSelector("body[data-ready=true]", { timeout: 30000 });
  await page.waitForFunction(() => [...document.images].every((i) => i.complete), null, { timeout: 30000 });
  result.catalog = await page.evaluate((id) => {
    const card = document.querySelector(`li[data-cube="${id}"]`);
    const img = card?.querySelector("img");
    return {
      cards: document.querySelectorAll("li.card").length,
      text: card?.innerText ?? "",
      thumbnail: img ? { width: img.naturalWidth, height: img.naturalHeight } : null,
      mapLink: card?.querySelector("a.open")?.getAttribute("href") ?? null,
    };
  }, id);
  result.catalog.screenshot = path.join(out, "catalog.png");
  await page.screenshot({ path: result.catalog.screenshot, fullPage: true });

  // The map, opened from the catalog's link: the latest time step first.
  await page.click("li.card a.open");
  await page.waitForURL(/\/map/);
  await idle(page);
  const shots = [];
  const shoot = async (name) => {
    const file = path.join(out, name);
    await page.locator("#map").screenshot({ path: file });
    shots.push(file);
    return file;
  };
  const view = () =>
    page.evaluate(() => ({
      t: window.eocube.state.t,
      label: document.getElementById("time-label").textContent,
      times: window.eocube.cube.times.map((t) => t.label),
      status: document.getElementById("status").textContent,
      zoom: window.eocube.map.getZoom(),
    }));
  const mark = () => seen.requests.length;
  const tileTimes = (from, to = seen.requests.length) =>
    [...new Set(seen.requests.slice(from, to).filter(isTile).map(timeOf))].sort();
  result.first = await view();
  result.first.screenshot = await shoot(`map-t${result.first.t}.png`);
  result.first.tileTimes = tileTimes(0);

  // One step back with the keyboard, as a user would move the slider.
  const before = mark();
  await page.focus("#time");
  await page.keyboard.press("ArrowLeft");
  await idle(page);
  result.second = await view();
  result.second.screenshot = await shoot(`map-t${result.second.t}.png`);
  result.second.tileTimes = tileTimes(before);

  // The pixel inspector: a click on the middle of the cube.
  const xy = await page.evaluate(() => {
    const [w, s, e, n] = window.eocube.cube.bbox;
    const p = window.eocube.map.project([(w + e) / 2, (s + n) / 2]);
    const r = document.getElementById("map").getBoundingClientRect();
    return { x: r.left + p.x, y: r.top + p.y };
  });
  await page.mouse.click(xy.x, xy.y);
  await page.waitForSelector("#inspector svg#series, #inspector .error, #inspector p:nth-child(2)", { timeout: 30000 });
  result.inspector = await page.evaluate(() => {
    const box = document.getElementById("inspector");
    return {
      text: box.innerText,
      bands: [...box.querySelectorAll("svg#series g.band")].map((g) => g.dataset.band),
      lines: box.querySelectorAll("svg#series polyline").length,
      dots: box.querySelectorAll("svg#series circle").length,
      error: box.querySelector(".error")?.textContent ?? null,
    };
  });
  result.inspector.pointRequests = seen.requests.filter((u) => new URL(u).pathname.includes("/point/"));
  result.page = path.join(out, "map-page.png");
  await page.screenshot({ path: result.page });
  result.inspector.screenshot = path.join(out, "inspector.png");
  await page.locator("#inspector").screenshot({ path: result.inspector.screenshot });

  // The version selector: pin the map to VERSION (argv[6], when given); same time step shown.
  if (version) {
    const options = await page.$$eval("#version option", (os) => os.map((o) => o.value));
    const before = mark();
    await page.selectOption("#version", version);
    await page.waitForURL((u) => u.pathname.endsWith(`@${version}/map`), { timeout: 30000 });
    await idle(page);
    result.pinned = await view();
    result.pinned.options = options;
    result.pinned.url = page.url();
    result.pinned.title = await page.title();
    result.pinned.tilePaths = [...new Set(seen.requests.slice(before).filter(isTile).map((u) => new URL(u).pathname.split("/tiles/")[0]))];
    result.pinned.screenshot = await shoot(`map-${version}-t${result.pinned.t}.png`);
  }
  result.screenshots = [result.catalog.screenshot, ...shots, result.page, result.inspector.screenshot];
  await browser.close();
  process.stdout.write(JSON.stringify(result) + "\n");
}

main().catch((e) => {
  process.stdout.write(JSON.stringify({ fatal: String(e && e.stack ? e.stack : e) }) + "\n");
  process.exit(1);
});
