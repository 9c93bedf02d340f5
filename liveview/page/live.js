// The live page's script: polls /api/live every 250 ms and plots it with BokehJS (served by
// the live view from the bokeh wheel: liveview/web.py). Each plot is made once and then only
// its data change, so a zoom or pan the user made stays across updates (a range the user
// moved is not auto-ranged again; "reset" in its toolbar gives the whole data back). Every
// plot is in window.livePlots for the browser tests to read its axes and values.
"use strict";

const COUNTERS = ["EVENTS", "COUNTRATE", "GOODFRAMES", "RAWFRAMES", "PROCESSINGLAG",
                  "NUMSPECTRA", "NUMPERIODS", "NUMTIMECHANNELS", "START_TIME", "STOP_TIME",
                  "SKIPPEDEVENTS", "CONSUMERLAG"];
const RATE_HISTORY_S = 600;  // the count-rate plot's span: the last ten minutes
const WIDE = 560, NARROW = 420, TALL = 280;
const PALETTE = window.Bokeh ? Bokeh.Palettes.viridis(256) : [];
const LINE_COLOURS = ["#1f5fbf", "#d95f02", "#1b9e77", "#7570b3", "#e7298a", "#66a61e",
                      "#e6ab02", "#a6761d", "#666666"];
const livePlots = { images: {}, logs: {} };
window.livePlots = livePlots;
let updates = 0;
const $ = (id) => document.getElementById(id);
const sum = (a) => a.reduce((s, v) => s + v, 0);
// lowest and highest, without spreading a large array into arguments (which overflows)
function extent(a) {
  let lo = Infinity, hi = -Infinity;
  for (const v of a) { if (v < lo) lo = v; if (v > hi) hi = v; }
  return [lo, hi];
}
function centres(edges, scale = 1) {
  const out = new Array(Math.max(0, edges.length - 1));
  for (let i = 0; i < out.length; i++) out[i] = (edges[i] + edges[i + 1]) / 2 * scale;
  return out;
}
// the index of the value in sorted xs nearest to x (a read-out's bin under the mouse)
function nearest(xs, x) {
  let lo = 0, hi = xs.length - 1;
  if (hi < 0) return -1;
  while (hi - lo > 1) {
    const mid = (lo + hi) >> 1;
    if (xs[mid] < x) lo = mid; else hi = mid;
  }
  return Math.abs(xs[lo] - x) <= Math.abs(xs[hi] - x) ? lo : hi;
}
const fmt = (v, digits = 4) => (v === null || v === undefined || Number.isNaN(v)) ? "-" :
  Number.isInteger(v) ? String(v) : Number(v).toPrecision(digits);
// a log axis shows no zero or negative value: those are left out of the curve (a gap)
const positive = (ys) => ys.map((y) => (y > 0 ? y : NaN));

// Curves against one x axis: a TOF spectrum, I(d), I(λ), a log's values against time.
class Curves {
  // opts: x and y axis labels; xUnit and yName for the read-out; datetime x; width
  constructor(id, opts) {
    this.id = id;
    this.opts = opts;
    this.log = false;
    this.data = {};  // name -> {x, y}: what is plotted, also kept for the read-out
    this.figure = null;  // made with the first data: an empty plot has no ranges to show
  }

  make() {
    const o = this.opts, old = this.figure;
    const figure = Bokeh.Plotting.figure({
      width: o.width || NARROW, height: o.height || TALL,
      x_axis_label: o.x, y_axis_label: o.y,
      x_axis_type: o.datetime ? "datetime" : "linear",
      y_axis_type: this.log ? "log" : "linear",
      tools: "box_zoom,pan,wheel_zoom,reset,save",
    });
    figure.toolbar.logo = null;
    // a drag zooms into a box (a pan is a click away in the toolbar)
    figure.toolbar.active_drag = figure.toolbar.tools.find((t) => t instanceof Bokeh.BoxZoomTool);
    if (old && old.x_range.have_updated_interactively) {  // a log toggle keeps the x zoom
      figure.x_range.start = old.x_range.start;
      figure.x_range.end = old.x_range.end;
      figure.x_range.have_updated_interactively = true;
    }
    this.figure = figure;
    this.sources = {};
    this.renderers = {};
    const hover = new Bokeh.HoverTool({
      tooltips: [[o.xName || "x", o.datetime ? "@x{%F %T}" : `@x{0,0.[000]} ${o.xUnit || ""}`],
                 [o.yName || "y", "@y{0,0.[000]}"], ["", "$name"]],
      formatters: o.datetime ? { "@x": "datetime" } : {},
      mode: "vline",
    });
    figure.add_tools(hover);
    figure.on_event("mousemove", (e) => this.readout(e.x));
    this.data = {};
    this.view = place($(this.id), figure, this.view);
  }

  // each named curve's x and y (ys of the same length as xs)
  set(curves) {
    if (!this.figure) this.make();
    curves.forEach(({ name, x, y }, i) => {
      let source = this.sources[name];
      if (!source) {
        source = this.sources[name] = new Bokeh.ColumnDataSource({ data: { x: [], y: [] } });
        const line = { x: { field: "x" }, y: { field: "y" }, source, name,
                       line_color: LINE_COLOURS[i % LINE_COLOURS.length], line_width: 1.5 };
        if (curves.length > 1 || this.opts.legend) line.legend_label = name;
        this.renderers[name] = this.figure.line(line);
      }
      source.data = { x, y: this.log ? positive(y) : y };
      this.data[name] = { x, y };
    });
  }

  setLog(log) {
    if (log === this.log) return;
    this.log = log;
    if (!this.figure) return;
    const kept = Object.values(this.data).length ? this.data : null;
    this.make();
    if (kept) this.set(Object.entries(kept).map(([name, c]) => ({ name, ...c })));
  }

  readout(x) {
    const out = $(this.id).parentElement.querySelector(".readout");
    const parts = [];
    for (const [name, { x: xs, y: ys }] of Object.entries(this.data)) {
      const i = nearest(xs, x);
      if (i < 0) continue;
      const at = this.opts.datetime ? new Date(xs[i]).toLocaleString() :
        `${this.opts.xName || "x"} ${fmt(xs[i])} ${this.opts.xUnit || ""}`;
      if (!parts.length) parts.push(at);
      parts.push(`${name === "" ? "" : name + ": "}${this.opts.yName || "y"} ${fmt(ys[i])}`);
    }
    if (out) out.textContent = parts.join(", ");
  }
}

// An image of counts with its colour bar: a detector bank (rows and columns of pixels) or
// I(2θ, d). Cells are laid out on axes of their own units.
class HeatMap {
  // opts: x, y axis labels; flipY (row 0 at the top, as a bank's image is drawn); width;
  // xLog (a log x axis: the cells of logarithmic bins are then equal on the screen)
  constructor(id, opts) {
    this.id = id;
    this.opts = opts;
    this.log = false;
    this.figure = null;  // made with the first data
    this.xLog = null;
  }

  make(xLog) {
    const o = this.opts;
    this.xLog = xLog;
    const mapper = this.mapper();
    const figure = Bokeh.Plotting.figure({
      width: o.width || NARROW, height: o.height || NARROW,
      x_axis_label: o.x, y_axis_label: o.y, x_axis_type: xLog ? "log" : "linear",
      x_range: new Bokeh.Range1d({ start: 0, end: 1 }),
      y_range: new Bokeh.Range1d({ start: 0, end: 1 }),
      tools: (o.select ? "box_select," : "") + "box_zoom,pan,wheel_zoom,reset,save",
    });
    figure.toolbar.logo = null;
    this.source = new Bokeh.ColumnDataSource({
      data: { image: [], x: [], y: [], dw: [], dh: [] } });
    this.glyph = figure.image({ image: { field: "image" }, x: { field: "x" },
                                y: { field: "y" }, dw: { field: "dw" }, dh: { field: "dh" },
                                source: this.source, color_mapper: mapper });
    this.bar = new Bokeh.ColorBar({ color_mapper: mapper, title: "counts", width: 12 });
    figure.add_layout(this.bar, "right");
    figure.on_event("mousemove", (e) => this.readout(e.x, e.y));
    this.figure = figure;
    this.bounds = null;
    this.view = place($(this.id), figure, this.view);
    if (this.made) this.made();
  }

  mapper() {
    return this.log ?
      new Bokeh.LogColorMapper({ palette: PALETTE, low: 1, high: 10 }) :
      new Bokeh.LinearColorMapper({ palette: PALETTE, low: 0, high: 1 });
  }

  // cells: rows of `width` values, row 0 first, laid from x0 to x1 and y0 to y1
  set(cells, width, height, [x0, x1], [y0, y1], xLog = false) {
    if (!this.figure || xLog !== this.xLog) this.make(xLog);
    this.cells = { cells, width, height, x0, x1, y0, y1 };
    const image = Bokeh.require("core/util/ndarray").ndarray(
      new Float64Array(cells), { shape: [height, width] });
    this.source.data = { image: [image], x: [x0], y: [y0], dw: [x1 - x0], dh: [y1 - y0] };
    // the axes span the image; set again only when it changed, so that a zoom stays
    const bounds = [x0, x1, y0, y1].join();
    if (bounds !== this.bounds) {
      this.bounds = bounds;
      const f = this.figure;
      f.x_range.setv({ start: x0, end: x1, reset_start: x0, reset_end: x1 });
      const [ys, ye] = this.opts.flipY ? [y1, y0] : [y0, y1];
      f.y_range.setv({ start: ys, end: ye, reset_start: ys, reset_end: ye });
    }
    // the colour scale of this image's own counts
    let [lo, hi] = extent(cells);
    if (!Number.isFinite(lo)) [lo, hi] = [0, 1];
    if (this.log) {
      let least = Infinity;
      for (const v of cells) if (v > 0 && v < least) least = v;
      lo = Number.isFinite(least) ? least : 1;
      hi = Math.max(hi, lo * 10);
    } else if (hi <= lo) {
      hi = lo + 1;
    }
    this.glyph.glyph.color_mapper.setv({ low: lo, high: hi });
  }

  setLog(log) {
    if (log === this.log) return;
    this.log = log;
    if (!this.figure) return;
    const mapper = this.mapper();
    this.glyph.glyph.color_mapper = mapper;
    this.bar.color_mapper = mapper;
    this.bar.title = log ? "counts (log)" : "counts";
    if (this.cells) {
      const c = this.cells;
      this.set(c.cells, c.width, c.height, [c.x0, c.x1], [c.y0, c.y1], this.xLog);
    }
  }

  // [column, row] of the cell under (x, y), or null outside the image
  cellAt(x, y) {
    const c = this.cells;
    if (!c) return null;
    const fx = this.xLog ? Math.log(x / c.x0) / Math.log(c.x1 / c.x0) : (x - c.x0) / (c.x1 - c.x0);
    const fy = (y - c.y0) / (c.y1 - c.y0);
    if (!(fx >= 0 && fx < 1 && fy >= 0 && fy < 1)) return null;
    return [Math.floor(fx * c.width), Math.floor(fy * c.height)];
  }

  readout(x, y) {
    const out = $(this.id).parentElement.querySelector(".readout");
    const at = this.cellAt(x, y);
    if (out) out.textContent = at ? this.describe(x, y, at) : "";
  }

  describe(x, y, [col, row]) {
    const c = this.cells;
    return `${this.opts.xName} ${fmt(x)}, ${this.opts.yName} ${fmt(y)}: counts ` +
      fmt(c.cells[row * c.width + col]);
  }
}

// A detector bank's image: a cell is `block` x `block` pixels, in the bank's own rows and
// columns (as the region of interest names them); the read-out says the pixel's id.
class BankImage extends HeatMap {
  constructor(name, id) {
    super(id, { x: "column", y: "row", flipY: true, select: true, width: 380, height: 340 });
    this.name = name;
  }

  made() {
    const name = this.name;
    // a box dragged out (the box select tool, the image's first drag tool) chooses the
    // region of interest; one ending past the image's edge takes the bank to that edge
    this.figure.toolbar.active_drag = this.figure.toolbar.tools.find(
      (t) => t instanceof Bokeh.BoxSelectTool);
    this.figure.on_event("selectiongeometry", (e) => {
      if (!e.final || !this.entry) return;
      const g = e.geometry, r = this.entry;
      const clamp = (v, n) => Math.min(n - 1, Math.max(0, Math.floor(v)));
      const from = [clamp(Math.min(g.y0, g.y1), r.rows), clamp(Math.min(g.x0, g.x1), r.cols)];
      const to = [clamp(Math.max(g.y0, g.y1), r.rows), clamp(Math.max(g.x0, g.x1), r.cols)];
      chooseRegion(`${name}:${from[0]}:${from[1]}:${to[0]}:${to[1]}`);
    });
    this.outline = new Bokeh.BoxAnnotation({ fill_alpha: 0, line_color: "#e0218a",
                                             line_width: 2, visible: false });
    this.figure.add_layout(this.outline);
  }

  show(entry, layout, roi, log) {
    this.entry = entry;
    this.layout = layout;
    this.setLog(log);
    // cells of `block` pixels: the last ones partial, past the bank's own last row/column
    const w = entry.width * entry.block, h = entry.height * entry.block;
    this.set(entry.counts, entry.width, entry.height, [0, w], [0, h]);
    if (roi && roi.image === this.name) {
      this.outline.setv({ left: roi.cols[0], right: roi.cols[1] + 1, top: roi.rows[0],
                          bottom: roi.rows[1] + 1, visible: true });
    } else {
      this.outline.visible = false;
    }
  }

  describe(x, y, [col, row]) {
    const e = this.entry, c = this.cells;
    const r = Math.min(e.rows - 1, Math.floor(y)), k = Math.min(e.cols - 1, Math.floor(x));
    const l = this.layout;
    const id = l ? l.first + r * l.row_step + k * l.col_step : null;
    const what = id === null || id > l.last ? "" : `pixel ${id}` +
      (e.block > 1 ? ` (a cell of ${e.block} x ${e.block} from it)` : "") + ", ";
    return `${this.name} row ${r}, column ${k}: ${what}counts ${fmt(c.cells[row * c.width + col])}`;
  }
}

// A figure shown in a fresh element of `box` in place of the one before (whose view is
// removed, also one still being made). Returns a promise of its view.
function place(box, figure, before) {
  if (before) before.then((view) => view.remove());
  const element = document.createElement("div");
  box.replaceChildren(element);
  return Bokeh.Plotting.show(figure, element);
}

function panel(parent, prefix, name) {  // a titled box for a plot, made once a name
  const id = prefix + name.replace(/[^A-Za-z0-9_-]/g, "_");
  let box = document.getElementById(id);
  if (!box) {
    box = document.createElement("div");
    box.id = id;
    box.dataset.name = name;
    box.innerHTML = `<div class="name"></div><div class="plot" id="${id}-plot"></div>` +
      `<div class="readout"></div><div class="scale"></div>`;
    box.querySelector(".name").textContent = name;
    parent.appendChild(box);
  }
  return box;
}

// For tests (and a person at the console): a plot's tick labels as drawn on an axis
// ("below" x, "left" y), and its data frame's box on the page (CSS pixels, as
// getBoundingClientRect). Both read BokehJS's views of the plot.
async function tickLabels(plot, side = "below") {
  const view = await plot.view;
  const axis = view.views.find_one(plot.figure[side][0]);
  const major = axis.tick_coords.major;
  return axis.compute_labels(side === "below" ? major[0] : major[1]).items.map((l) => l.text);
}
async function frameBox(plot) {
  const view = await plot.view;
  const at = view.el.getBoundingClientRect(), f = view.frame.bbox;
  return { left: at.left + f.left, top: at.top + f.top, width: f.width, height: f.height };
}
window.tickLabels = tickLabels;
window.frameBox = frameBox;

// -- the plots --
const TOF_OPTS = { x: "time of flight (µs)", xName: "TOF", xUnit: "µs", yName: "counts" };
let tofPlots = null, reductionPlots = null;
function makeTofPlots() {
  livePlots.tof = new Curves("tof", { ...TOF_OPTS, y: "counts", width: WIDE });
  livePlots.pixel = new Curves("pixel-tof", { ...TOF_OPTS, y: "counts in the pixel" });
  livePlots.roi = new Curves("roi-tof", { ...TOF_OPTS, y: "counts in the region" });
  livePlots.rate = new Curves("rate", { x: "time", y: "count rate (events/s)",
                                        datetime: true, yName: "events/s", width: NARROW,
                                        height: 220 });
  return true;
}
function makeReductionPlots() {
  livePlots.dspacing = new Curves("dspacing", { x: "d-spacing (Å)", xName: "d", xUnit: "Å",
                                                y: "counts", yName: "I", width: WIDE,
                                                legend: true });
  livePlots.dTwoTheta = new HeatMap("d-two-theta", { x: "d-spacing (Å)", xName: "d (Å)",
                                                   y: "2θ (degrees)", yName: "2θ (°)",
                                                   width: 480, height: 360 });
  livePlots.lambda = new Curves("lambda", { x: "wavelength λ (Å)", xName: "λ", xUnit: "Å",
                                            y: "counts", yName: "counts", legend: true });
  return true;
}

const rateHistory = { x: [], y: [] };
function showRate(counters) {
  if (typeof counters.COUNTRATE !== "number") return;
  const now = Date.now();
  rateHistory.x.push(now);
  rateHistory.y.push(counters.COUNTRATE);
  while (rateHistory.x.length && rateHistory.x[0] < now - RATE_HISTORY_S * 1000) {
    rateHistory.x.shift();
    rateHistory.y.shift();
  }
  livePlots.rate.setLog($("rate-log").checked);
  livePlots.rate.set([{ name: "COUNTRATE", x: rateHistory.x.slice(), y: rateHistory.y.slice() }]);
}

function showLogs(logs, units) {
  for (const [name, points] of Object.entries(logs)) {
    const box = panel($("logs"), "log-", name);
    let plot = livePlots.logs[name];
    const unit = (units && units[name]) || "";
    if (!plot) {
      plot = livePlots.logs[name] = new Curves(box.id + "-plot", {
        x: "time", y: unit ? `${name} (${unit})` : name, datetime: true, yName: name,
        width: 360, height: 200 });
    }
    plot.setLog($("logs-log").checked);
    plot.set([{ name, x: points.map((p) => p[0] * 1000), y: points.map((p) => p[1]) }]);
    if (points.length) {
      const vs = points.map((p) => p[1]), [v0, v1] = extent(vs);
      box.querySelector(".name").textContent =
        `${name}: ${vs[vs.length - 1]}${unit ? " " + unit : ""} (${v0} .. ${v1})`;
    }
  }
}

function showImages(s) {
  let imageSum = 0;
  for (const entry of s.images) {
    const box = panel($("images"), "bank-", entry.name);
    let plot = livePlots.images[entry.name];
    if (!plot) plot = livePlots.images[entry.name] = new BankImage(entry.name, box.id + "-plot");
    plot.show(entry, (s.pixel_layouts || {})[entry.name], s.roi, $("image-log").checked);
    // each bank its own colour scale
    const [least, most] = extent(entry.counts);
    box.querySelector(".scale").textContent = `${least} .. ${most} counts` +
      (entry.block > 1 ? ` a cell of ${entry.block} x ${entry.block} pixels` : "");
    imageSum += sum(entry.counts);
  }
  $("image-sum").textContent = imageSum;
}

// true where the edges' ratios are equal (logarithmic bins): I(2θ, d) on a log d axis
function logarithmic(edges) {
  if (edges.length < 3 || edges[0] <= 0) return false;
  const first = edges[1] / edges[0], last = edges[edges.length - 1] / edges[edges.length - 2];
  return Math.abs(first - last) < 1e-6 * first && Math.abs(first - 1) > 1e-9;
}

function showReduction(r) {
  $("reduction-missing").hidden = true;
  $("reduction-views").hidden = false;
  if (!reductionPlots) reductionPlots = makeReductionPlots();
  const d = r.d, xs = centres(d.edges);
  const perMonitor = $("d-per-monitor").checked;
  const by = perMonitor ? d.monitor_counts : null;
  livePlots.dspacing.opts.yName = perMonitor ? "I per monitor count" : "I";
  livePlots.dspacing.setLog($("d-log").checked);
  livePlots.dspacing.set(Object.entries(d.banks).map(([name, ys]) => ({
    name, x: xs, y: perMonitor ? ys.map((v) => (by ? v / by : 0)) : ys })));
  $("d-events").textContent = d.events;
  $("d-outside").textContent = d.outside;
  const t = r.d_two_theta, de = t.d_edges, te = t.two_theta_edges;
  livePlots.dTwoTheta.setLog($("dtt-log").checked);
  livePlots.dTwoTheta.set(t.counts, t.width, t.height, [de[0], de[de.length - 1]],
                          [te[0], te[te.length - 1]], logarithmic(de));
  const lam = r.lambda, lx = centres(lam.edges);
  livePlots.lambda.setLog($("lambda-log").checked);
  livePlots.lambda.set(Object.entries(lam.monitors).map(([name, ys]) => ({ name, x: lx, y: ys })));
}

let asking = false;  // one request at a time: a slow answer is not overtaken by the next
async function update() {
  if (asking) return;
  asking = true;
  const query = new URLSearchParams();
  if ($("pixel").value) query.set("pixel", $("pixel").value);
  if ($("roi").value) query.set("roi", $("roi").value);
  if ($("period").value) query.set("period", $("period").value);
  try {
    // the first answer was asked for while the library loaded (page.html)
    const early = window.firstAnswer;
    window.firstAnswer = null;
    let r = await (early && !query.size ? early : fetch("api/live?" + query));
    let problem = "";
    if (r.status === 400) {  // a bad pixel or region: say why, and show the rest
      problem = (await r.json()).error;
      r = await fetch("api/live");
    }
    const s = await r.json();
    window.liveState = s;  // the numbers last plotted, for a test to compare
    $("instrument").textContent = s.instrument;
    $("run-number").textContent = s.run.number || "-";
    $("state").textContent = s.run.state;
    $("state").className = s.run.state;
    $("title").textContent = s.run.title;
    $("counters").innerHTML = COUNTERS.filter((k) => k in s.counters).map(
      (k) => `<tr><td>${k}</td><td id="c-${k}">${s.counters[k]}</td></tr>`).join("");
    const periods = $("period"), n = s.counters.NUMPERIODS || 1;  // "all", then 1..n
    while (periods.options.length <= n) {
      periods.add(new Option(String(periods.options.length), String(periods.options.length)));
    }
    while (periods.options.length > n + 1) periods.remove(periods.options.length - 1);
    $("tof-sum").textContent = sum(s.tof.counts);
    if (!window.Bokeh) throw new Error("the plotting library (BokehJS) did not load");
    if (!tofPlots) tofPlots = makeTofPlots();
    showRate(s.counters);
    const tofX = centres(s.tof.edges, 1e-3);  // ns -> µs
    livePlots.tof.setLog($("tof-log").checked);
    livePlots.tof.set([{ name: "all pixels", x: tofX, y: s.tof.counts }]);
    showImages(s);
    if (s.pixel) {
      livePlots.pixel.setLog($("pixel-log").checked);
      livePlots.pixel.set([{ name: `pixel ${s.pixel.id}`, x: tofX, y: s.pixel.counts }]);
      $("pixel-sum").textContent = sum(s.pixel.counts);
    }
    if (s.roi) {
      livePlots.roi.setLog($("roi-log").checked);
      livePlots.roi.set([{ name: "region", x: tofX, y: s.roi.counts }]);
      $("roi-pixels").textContent = s.roi.pixels;
      $("roi-sum").textContent = sum(s.roi.counts);
    }
    $("error").textContent = problem;
    if (!window.pageDrawn) {
      // the page's load time: from navigating to it until its first plots (the run's
      // spectra and images) are on screen; the logs and the reduction follow a frame later
      const views = [livePlots.tof, livePlots.rate, ...Object.values(livePlots.images)]
        .map((p) => p.view).filter((v) => v);
      window.pageDrawn = Promise.all(views).then(() => new Promise((ok) => {
        requestAnimationFrame(() => ok(window.firstDrawnAt = performance.now()));
      }));
      await window.pageDrawn;
    }
    showLogs(s.logs, s.log_units);
    if (s.reduction) showReduction(s.reduction);
    $("updates").textContent = ++updates;
  } catch (e) {
    $("error").textContent = "no answer from the live view: " + e;
  } finally {
    asking = false;
  }
}

function chooseRegion(text) {
  $("roi").value = text;
  update();
}
$("roi-clear").addEventListener("click", () => {
  $("roi").value = "";
  $("roi-pixels").textContent = $("roi-sum").textContent = "0";
  if (livePlots.roi) livePlots.roi.set([{ name: "region", x: [], y: [] }]);
});
update();
setInterval(update, 250);
