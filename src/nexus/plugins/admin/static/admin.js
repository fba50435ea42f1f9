// Nexus admin dashboard: one vanilla ES module, no framework, no build step, no CDN.
// Each section of the page is a view chosen by the URL's hash (#plugins, #events ...); a view
// loads its data when shown and refreshes it on a timer while it stays visible.

const CSRF = document.querySelector('meta[name="csrf-token"]')?.content ?? "";
const SVG_NS = "http://www.w3.org/2000/svg";
const MAX_EVENTS = 200;

// -- helpers --------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, problem) {
    super(problem?.detail || problem?.title || `Request failed (${status})`);
    this.status = status;
    this.problem = problem;
  }
}

async function api(path, { method = "GET" } = {}) {
  const headers = { Accept: "application/json" };
  if (method !== "GET") headers["X-CSRF-Token"] = CSRF;
  const response = await fetch(`/admin/api${path}`, {
    method,
    headers,
    credentials: "same-origin",
    cache: "no-store",
  });
  const type = response.headers.get("content-type") || "";
  const data = type.includes("json") ? await response.json() : null;
  if (response.status === 401) {
    // The session ended: the dashboard's address shows the sign-in form, with the reason.
    window.location.assign("/admin");
  }
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

/** Create an element: el("td", {class: "x", dataset: {label: "State"}}, "text", child) */
function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "dataset") Object.assign(node.dataset, value);
    else if (name === "text") node.textContent = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function svg(tag, attributes = {}, ...children) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value !== undefined && value !== null) node.setAttribute(name, String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function badge(kind, text) {
  const known = ["active", "failed", "blocked", "disabled", "stopped", "missing"];
  const state = known.includes(kind) ? kind : "other";
  return el("span", { class: `badge state-${state}` }, text ?? kind);
}

function formatTime(value) {
  const date = typeof value === "number" ? new Date(value * 1000) : new Date(value);
  if (Number.isNaN(date.getTime())) return String(value);
  return date.toLocaleTimeString([], { hour12: false });
}

function formatDateTime(value) {
  const date = new Date(value);
  if (Number.isNaN(date.getTime())) return String(value);
  return date.toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z");
}

let toastTimer = 0;
function toast(message, { error = false } = {}) {
  const node = document.getElementById("toast");
  node.textContent = message;
  node.classList.toggle("error", error);
  node.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { node.hidden = true; }, error ? 8000 : 4000);
}

function reportError(error) {
  if (error instanceof ApiError && error.status === 401) return;
  toast(error.message || String(error), { error: true });
}

/** Ask for confirmation in the <dialog>; resolves true when confirmed. */
function confirmAction(title, text, confirmLabel, { danger = true } = {}) {
  const dialog = document.getElementById("confirm");
  document.getElementById("confirm-title").textContent = title;
  document.getElementById("confirm-text").textContent = text;
  const ok = document.getElementById("confirm-ok");
  ok.textContent = confirmLabel;
  ok.className = danger ? "danger" : "primary";
  dialog.returnValue = "";
  dialog.showModal();
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
  });
}

/** Re-render a container, keeping keyboard focus on the control with the same data-key. */
function keepingFocus(render) {
  const key = document.activeElement?.dataset?.key;
  render();
  if (key) document.querySelector(`[data-key="${CSS.escape(key)}"]`)?.focus();
}

// -- plugins -------------------------------------------------------------------------------

const OPERATIONS = {
  enable: {
    label: "Enable",
    title: (name) => `Enable plugin “${name}”?`,
    text: "It starts now, and plugins waiting for it start too.",
    danger: false,
  },
  disable: {
    label: "Disable",
    title: (name) => `Disable plugin “${name}”?`,
    text: "Its routes, event handlers and services stop now, and plugins that require it are blocked until it is enabled again.",
    danger: true,
  },
  reload: {
    label: "Reload",
    title: (name) => `Reload plugin “${name}”?`,
    text: "Its code is imported again and it restarts, with the plugins that depend on it. Requests wait while it restarts.",
    danger: true,
  },
};

function pluginActions(plugin) {
  const wanted = [];
  if (!plugin.enabled || plugin.state === "disabled") wanted.push("enable");
  else {
    if (!plugin.protected) wanted.push("disable");
    wanted.push("reload");
  }
  return el(
    "div",
    { class: "actions" },
    wanted.map((operation) =>
      el(
        "button",
        {
          type: "button",
          class: "small",
          dataset: { key: `${operation}:${plugin.name}`, operation, plugin: plugin.name },
          "aria-label": `${OPERATIONS[operation].label} ${plugin.name}`,
          onclick: () => operate(plugin.name, operation),
        },
        OPERATIONS[operation].label,
      ),
    ),
  );
}

function pluginRow(plugin) {
  const health = plugin.health;
  const deps = [];
  const requires = Object.keys(plugin.requires);
  const optional = Object.keys(plugin.optional);
  if (requires.length) deps.push(el("span", {}, `requires ${requires.join(", ")}`));
  if (optional.length) deps.push(el("span", { class: "muted" }, `optional ${optional.join(", ")}`));
  if (plugin.dependents.length) {
    deps.push(el("span", { class: "muted" }, `used by ${plugin.dependents.join(", ")}`));
  }
  const details = [];
  if (plugin.failure) {
    details.push(el("span", { class: "reason" }, `Failed at ${plugin.failure.stage}: ${plugin.failure.reason}`));
  }
  if (plugin.blocked_reason) details.push(el("span", { class: "reason" }, `Blocked: ${plugin.blocked_reason}`));
  if (plugin.last_error) details.push(el("span", { class: "reason" }, plugin.last_error));
  if (plugin.services.length) details.push(el("span", { class: "muted" }, `provides ${plugin.services.join(", ")}`));
  if (plugin.state === "active" && plugin.boot_seconds !== null && plugin.boot_seconds !== undefined) {
    details.push(el("span", { class: "muted" }, `started in ${(plugin.boot_seconds * 1000).toFixed(0)} ms`));
  }
  const running = plugin.state === "active";
  const healthCell = health && running
    ? el("span", { class: `badge ${health.ok ? "health-ok" : "health-bad"}` }, health.ok ? "healthy" : "unhealthy")
    : el("span", { class: "muted" }, "not running");
  return el(
    "tr",
    { dataset: { plugin: plugin.name, state: plugin.state } },
    el(
      "th",
      { scope: "row" },
      el("span", { class: "plugin-name" }, plugin.name),
      el("span", { class: "plugin-meta" }, [plugin.version ? `v${plugin.version}` : "", plugin.description].filter(Boolean).join(" · ")),
    ),
    el("td", { dataset: { label: "State" } }, badge(plugin.state)),
    el(
      "td",
      { dataset: { label: "Health" } },
      healthCell,
      health && running && health.detail ? el("span", { class: "plugin-meta" }, health.detail) : null,
    ),
    el("td", { class: "deps wide", dataset: { label: "Dependencies" } }, deps.length ? deps : el("span", { class: "muted" }, "none")),
    el("td", { class: "deps wide", dataset: { label: "Details" } }, details),
    el("td", { class: "wide", dataset: { label: "Actions" } }, pluginActions(plugin)),
  );
}

async function loadPlugins() {
  const { plugins } = await api("/plugins");
  const body = document.getElementById("plugin-rows");
  keepingFocus(() => body.replaceChildren(...plugins.map(pluginRow)));
  const active = plugins.filter((p) => p.state === "active").length;
  const troubled = plugins.filter((p) => p.state === "failed" || p.state === "blocked").length;
  document.getElementById("plugins-summary").textContent =
    `${plugins.length} plugins: ${active} active` + (troubled ? `, ${troubled} failed or blocked` : "");
}

async function waitForDashboard() {
  for (let attempt = 0; attempt < 40; attempt += 1) {
    await new Promise((resolve) => setTimeout(resolve, 500));
    try {
      await api("/session");
      return;
    } catch (error) {
      if (error instanceof ApiError && error.status === 401) return;
    }
  }
}

async function operate(name, operation) {
  const spec = OPERATIONS[operation];
  if (!(await confirmAction(spec.title(name), spec.text, spec.label, { danger: spec.danger }))) return;
  try {
    const result = await api(`/plugins/${encodeURIComponent(name)}/${operation}`, { method: "POST" });
    if (result.accepted) {
      toast(`${spec.label}: ${name}. ${result.detail}`);
      await waitForDashboard();
      if (current === "events") startStream();
    } else {
      const state = result.status.state;
      const failed = result.outcome !== "success";
      toast(`${name} is now ${state}${failed && result.status.failure ? `: ${result.status.failure.reason}` : ""}`, { error: failed });
    }
  } catch (error) {
    reportError(error);
  }
  await refresh();
}

// -- dependency graph -----------------------------------------------------------------------

const NODE_W = 150;
const NODE_H = 50;
const GAP_X = 28;
const GAP_Y = 64;
const PAD = 16;
const LANE = 18; // the width an edge passing through a layer takes in it

/**
 * A layered (Sugiyama-style) layout: layers come from the server (start order), an edge
 * spanning several layers passes through a waypoint in each layer between, and nodes are
 * ordered within their layer by the mean position of what they depend on, which keeps
 * crossings few.
 */
function layout(nodes, edges) {
  const layerOf = new Map(nodes.map((node) => [node.id, node.layer]));
  const rows = new Map();
  const row = (layer) => {
    if (!rows.has(layer)) rows.set(layer, []);
    return rows.get(layer);
  };
  for (const node of [...nodes].sort((a, b) => (a.order ?? 1e9) - (b.order ?? 1e9) || a.id.localeCompare(b.id))) {
    row(node.layer).push({ id: node.id, node, width: NODE_W, up: [] });
  }
  const slots = new Map([...rows.values()].flat().map((slot) => [slot.id, slot]));
  const routes = [];
  for (const edge of edges) {
    if (!slots.has(edge.source) || !slots.has(edge.target)) continue;
    const from = layerOf.get(edge.source);
    const to = layerOf.get(edge.target);
    const chain = [slots.get(edge.source)];
    for (let layer = from + 1; layer < to; layer += 1) {
      const waypoint = { id: `${edge.source}>${edge.target}@${layer}`, width: LANE, up: [chain[chain.length - 1]] };
      row(layer).push(waypoint);
      chain.push(waypoint);
    }
    const target = slots.get(edge.target);
    target.up.push(chain[chain.length - 1]);
    chain.push(target);
    routes.push({ edge, chain });
  }
  const layers = [...rows.keys()].sort((a, b) => a - b);
  const place = () => {
    for (const layer of layers) {
      rows.get(layer).forEach((slot, index) => { slot.index = index; });
    }
  };
  place();
  for (let sweep = 0; sweep < 4; sweep += 1) {
    for (const layer of layers.slice(1)) {
      const current = rows.get(layer);
      const centre = (slot) => (slot.up.length ? slot.up.reduce((sum, up) => sum + up.index, 0) / slot.up.length : slot.index);
      current.sort((a, b) => centre(a) - centre(b) || a.index - b.index);
      current.forEach((slot, index) => { slot.index = index; });
    }
  }
  let width = 0;
  for (const layer of layers) {
    const slotsOfLayer = rows.get(layer);
    width = Math.max(width, slotsOfLayer.reduce((sum, slot) => sum + slot.width, 0) + (slotsOfLayer.length - 1) * GAP_X);
  }
  width += PAD * 2;
  for (const layer of layers) {
    const slotsOfLayer = rows.get(layer);
    const rowWidth = slotsOfLayer.reduce((sum, slot) => sum + slot.width, 0) + (slotsOfLayer.length - 1) * GAP_X;
    let x = (width - rowWidth) / 2;
    for (const slot of slotsOfLayer) {
      slot.x = x;
      slot.cx = x + slot.width / 2;
      slot.y = PAD + layer * (NODE_H + GAP_Y);
      x += slot.width + GAP_X;
    }
  }
  const depth = layers.length ? layers[layers.length - 1] + 1 : 1;
  return { slots, routes, width, height: PAD * 2 + depth * NODE_H + (depth - 1) * GAP_Y };
}

/** Spread the ends of a node's edges along its side, ordered by where they lead. */
function ports(routes, slots) {
  const out = new Map();
  const into = new Map();
  for (const route of routes) {
    const next = route.chain[1];
    const before = route.chain[route.chain.length - 2];
    if (!out.has(route.edge.source)) out.set(route.edge.source, []);
    if (!into.has(route.edge.target)) into.set(route.edge.target, []);
    out.get(route.edge.source).push({ route, towards: next.cx });
    into.get(route.edge.target).push({ route, towards: before.cx });
  }
  const spread = (groups, key) => {
    for (const [id, ends] of groups) {
      const slot = slots.get(id);
      ends.sort((a, b) => a.towards - b.towards);
      ends.forEach((end, index) => {
        end.route[key] = slot.x + (slot.width * (index + 1)) / (ends.length + 1);
      });
    }
  };
  spread(out, "startX");
  spread(into, "endX");
}

function edgePath(route) {
  const { chain } = route;
  const points = chain.map((slot, index) => {
    if (index === 0) return [route.startX, slot.y + NODE_H];
    if (index === chain.length - 1) return [route.endX, slot.y - 2];
    return [slot.cx, slot.y + NODE_H / 2];
  });
  let d = `M${points[0][0]},${points[0][1]}`;
  for (let i = 1; i < points.length; i += 1) {
    const [x1, y1] = points[i - 1];
    const [x2, y2] = points[i];
    const bend = (y2 - y1) / 2;
    d += ` C${x1},${y1 + bend} ${x2},${y2 - bend} ${x2},${y2}`;
  }
  return d;
}

function drawGraph({ nodes, edges, order }) {
  const canvas = document.getElementById("graph-svg");
  const { slots, routes, width, height } = layout(nodes, edges);
  ports(routes, slots);
  const marker = svg(
    "marker",
    { id: "arrow", viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" },
    svg("path", { d: "M0,0 L10,5 L0,10 z", class: "arrow" }),
  );
  const edgePaths = routes.map(({ edge, ...route }) =>
    svg(
      "path",
      { class: `edge ${edge.kind}`, d: edgePath({ edge, ...route }), "marker-end": "url(#arrow)" },
      svg("title", {}, `${edge.target} ${edge.kind === "optional" ? "optionally uses" : "requires"} ${edge.source}`),
    ),
  );
  const nodeGroups = nodes.map((node) => {
    const { x, y } = slots.get(node.id);
    const needs = edges.filter((e) => e.target === node.id).map((e) => `${e.kind === "optional" ? "optionally " : ""}needs ${e.source}`);
    const label = [`${node.id}, ${node.state}`, node.reason, ...needs].filter(Boolean).join("; ");
    const mark = node.is_troubled ? (node.state === "blocked" ? "⚠ " : "✕ ") : "";
    return svg(
      "g",
      { class: `node state-${node.state}`, tabindex: 0, role: "img", "aria-label": label, transform: `translate(${x},${y})` },
      svg("title", {}, label),
      svg("rect", { width: NODE_W, height: NODE_H, rx: 8 }),
      svg("text", { x: NODE_W / 2, y: 21, "text-anchor": "middle", class: "name" }, node.id),
      svg("text", { x: NODE_W / 2, y: 39, "text-anchor": "middle", class: "state-label" }, `${mark}${node.state}${node.version ? ` · v${node.version}` : ""}`),
    );
  });
  canvas.setAttribute("viewBox", `0 0 ${width} ${height}`);
  canvas.setAttribute("width", width);
  canvas.setAttribute("height", height);
  canvas.replaceChildren(svg("defs", {}, marker), ...edgePaths, ...nodeGroups);
  const states = new Map(nodes.map((node) => [node.id, node.state]));
  document.getElementById("graph-order").replaceChildren(
    ...order.map((name) => el("li", {}, name, states.get(name) === "active" ? "" : el("span", { class: "muted" }, ` (${states.get(name)})`))),
  );
}

async function loadGraph() {
  drawGraph(await api("/graph"));
}

// -- live events ----------------------------------------------------------------------------

const stream = { source: null, paused: false, held: [], seen: new Set() };

function setStreamStatus(text, kind) {
  const node = document.getElementById("events-status");
  node.textContent = text;
  node.className = `status ${kind || ""}`;
}

function eventItem(item, isNew) {
  const data = JSON.stringify(item.data, null, 2);
  return el(
    "li",
    { class: `event${isNew ? " new" : ""}`, dataset: { type: item.type, id: item.id } },
    el(
      "div",
      { class: "event-head" },
      el("time", { datetime: item.time }, formatTime(item.time)),
      el("code", { class: "topic" }, item.type),
      el("span", { class: "muted small" }, `from ${item.source}`),
      item.correlation_id ? el("span", { class: "muted small mono" }, `request ${item.correlation_id}`) : null,
    ),
    data && data !== "null" ? el("details", {}, el("summary", {}, "Data"), el("pre", {}, data)) : null,
  );
}

function showEvents(items, isNew = true) {
  const list = document.getElementById("event-list");
  const fresh = items.filter((item) => !stream.seen.has(item.id));
  for (const item of fresh) stream.seen.add(item.id);
  if (!fresh.length) return;
  list.prepend(...fresh.reverse().map((item) => eventItem(item, isNew)));
  while (list.children.length > MAX_EVENTS) {
    stream.seen.delete(list.lastElementChild.dataset.id);
    list.lastElementChild.remove();
  }
}

function startStream() {
  stopStream();
  const pattern = document.getElementById("events-pattern").value.trim() || "**";
  const source = new EventSource(`/admin/api/events/stream?pattern=${encodeURIComponent(pattern)}`);
  stream.source = source;
  setStreamStatus("Connecting…");
  source.addEventListener("open", () => {
    if (stream.paused) setStreamStatus(`Paused: ${stream.held.length} new event(s) held`, "paused");
    else setStreamStatus(`Live: showing events matching ${pattern}`, "live");
  });
  const receive = (message, isNew) => {
    const item = JSON.parse(message.data);
    if (stream.paused) {
      stream.held.push(item);
      setStreamStatus(`Paused: ${stream.held.length} new event(s) held`, "paused");
    } else {
      showEvents([item], isNew);
    }
  };
  source.addEventListener("event", (message) => receive(message, true));
  // Published before the stream (re)connected: shown, but not flagged as just arrived.
  source.addEventListener("backlog", (message) => receive(message, false));
  source.addEventListener("skipped", (message) => {
    const { count } = JSON.parse(message.data);
    toast(`${count} event(s) skipped: they arrived faster than this page could take them.`);
  });
  source.addEventListener("error", () => {
    if (source.readyState === EventSource.CLOSED) setStreamStatus("Disconnected; reload the page to reconnect.", "error");
    else setStreamStatus("Reconnecting…", "error");
  });
}

function stopStream() {
  if (stream.source) {
    stream.source.close();
    stream.source = null;
    setStreamStatus("Not connected");
  }
}

function togglePause() {
  stream.paused = !stream.paused;
  const button = document.getElementById("events-pause");
  button.setAttribute("aria-pressed", String(stream.paused));
  button.textContent = stream.paused ? "Resume" : "Pause";
  if (!stream.paused) {
    showEvents(stream.held.splice(0));
    if (stream.source) setStreamStatus("Live", "live");
  } else {
    setStreamStatus("Paused: 0 new event(s) held", "paused");
  }
}

// -- charts ---------------------------------------------------------------------------------

const CHART_SECONDS = 120;
const CHART_W = 520;
const CHART_H = 200;
const M = { top: 10, right: 12, bottom: 24, left: 44 };

function niceMax(value) {
  if (!(value > 0)) return 1;
  const power = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 2.5, 5, 10]) {
    if (value <= step * power) return step * power;
  }
  return 10 * power;
}

function formatNumber(value) {
  if (value === null || value === undefined) return "–";
  if (value >= 100) return value.toFixed(0);
  if (value >= 10) return value.toFixed(1);
  return value.toFixed(2);
}

function drawChart(figure, times, series, unit) {
  const canvas = figure.querySelector("svg");
  const width = CHART_W - M.left - M.right;
  const height = CHART_H - M.top - M.bottom;
  const values = series.flatMap((s) => s.values).filter((v) => v !== null && v !== undefined);
  const top = niceMax(Math.max(0, ...values));
  // A fixed window ending now: a fresh dashboard's few samples sit at the right edge.
  const last = times[times.length - 1] ?? Date.now() / 1000;
  const span = CHART_SECONDS;
  const first = last - span;
  const x = (t) => M.left + ((t - first) / span) * width;
  const y = (v) => M.top + height - (v / top) * height;
  const parts = [];
  for (let i = 0; i <= 4; i += 1) {
    const value = (top * i) / 4;
    parts.push(svg("line", { class: "grid", x1: M.left, x2: M.left + width, y1: y(value), y2: y(value) }));
    parts.push(svg("text", { class: "axis-label", x: M.left - 6, y: y(value) + 4, "text-anchor": "end" }, formatNumber(value)));
  }
  parts.push(svg("text", { class: "axis-label", x: M.left, y: CHART_H - 6 }, `-${Math.round(span)} s`));
  parts.push(svg("text", { class: "axis-label", x: M.left + width, y: CHART_H - 6, "text-anchor": "end" }, "now"));
  series.forEach((s, index) => {
    let d = "";
    let pen = "M";
    s.values.forEach((value, i) => {
      if (value === null || value === undefined) {
        pen = "M";
        return;
      }
      d += `${pen}${x(times[i]).toFixed(1)},${y(value).toFixed(1)} `;
      pen = "L";
    });
    if (d) parts.push(svg("path", { class: `series s${index % 6}`, d }, svg("title", {}, s.name)));
  });
  canvas.setAttribute("viewBox", `0 0 ${CHART_W} ${CHART_H}`);
  canvas.replaceChildren(...parts);
  canvas.dataset.points = String(times.length);
  canvas.dataset.last = String(last);
  const legend = figure.querySelector(".chart-legend");
  legend.replaceChildren(
    ...series.map((s, index) => {
      const latest = [...s.values].reverse().find((v) => v !== null && v !== undefined);
      return el("li", {}, el("span", { class: `swatch s${index % 6}` }), ` ${s.name}: ${formatNumber(latest ?? null)}${unit}`);
    }),
  );
}

function busiest(table, plugins, count) {
  const total = (name) => (table[name] || []).reduce((sum, v) => sum + (v || 0), 0);
  return [...plugins].sort((a, b) => total(b) - total(a)).slice(0, count);
}

async function loadMetrics() {
  const data = await api(`/metrics?seconds=${CHART_SECONDS}`);
  const times = data.time;
  const top = busiest(data.requests_per_second, data.plugins, 5);
  drawChart(
    document.getElementById("chart-requests"),
    times,
    [{ name: "total", values: data.requests_per_second.total }, ...top.map((p) => ({ name: p, values: data.requests_per_second[p] }))],
    "/s",
  );
  drawChart(
    document.getElementById("chart-latency"),
    times,
    [{ name: "all", values: data.p95_ms.total }, ...top.map((p) => ({ name: p, values: data.p95_ms[p] }))],
    " ms",
  );
  drawChart(
    document.getElementById("chart-errors"),
    times,
    [{ name: "5xx", values: data.error_rate.map((v) => (v === null ? 0 : v * 100)) }],
    "%",
  );
  const events = data.events_per_second;
  drawChart(
    document.getElementById("chart-events"),
    times,
    [
      { name: "published", values: events.published },
      { name: "delivered", values: events.delivered },
      { name: "failed", values: events.failed },
    ],
    "/s",
  );
  document.getElementById("metrics-updated").textContent =
    `Last ${times.length} s, one sample a second; updated ${new Date().toLocaleTimeString([], { hour12: false })}.`;
}

// -- dead letters ---------------------------------------------------------------------------

async function deadLetterAction(letter, operation) {
  if (operation === "discard") {
    const sure = await confirmAction("Discard this dead letter?", `The ${letter.event.type} event is forgotten; it cannot be redelivered afterwards.`, "Discard");
    if (!sure) return;
  }
  try {
    const path = `/dead-letters/${encodeURIComponent(letter.id)}${operation === "redeliver" ? "/redeliver" : ""}`;
    const result = await api(path, { method: operation === "redeliver" ? "POST" : "DELETE" });
    if (operation === "redeliver") {
      toast(result.outcome === "success" ? "Redelivered: the handler succeeded." : "Redelivered, but the handler failed again.", { error: result.outcome !== "success" });
    } else {
      toast("Dead letter discarded.");
    }
  } catch (error) {
    reportError(error);
  }
  await loadDeadLetters();
}

async function loadDeadLetters() {
  const { dead_letters: letters, dropped } = await api("/dead-letters");
  const rows = letters.map((letter) =>
    el(
      "tr",
      {},
      el("td", { dataset: { label: "Time" } }, formatDateTime(letter.time)),
      el("td", { dataset: { label: "Topic" } }, el("code", {}, letter.event.type)),
      el("td", { dataset: { label: "Subscriber" } }, letter.subscriber),
      el("td", { dataset: { label: "Error" }, class: "reason wide" }, letter.error),
      el("td", { dataset: { label: "Attempts" } }, letter.attempts),
      el(
        "td",
        { dataset: { label: "Actions" }, class: "wide" },
        el(
          "div",
          { class: "actions" },
          el("button", { type: "button", class: "small", dataset: { key: `redeliver:${letter.id}` }, "aria-label": `Redeliver ${letter.event.type} to ${letter.subscriber}`, onclick: () => deadLetterAction(letter, "redeliver") }, "Redeliver"),
          el("button", { type: "button", class: "small ghost", dataset: { key: `discard:${letter.id}` }, "aria-label": `Discard ${letter.event.type} for ${letter.subscriber}`, onclick: () => deadLetterAction(letter, "discard") }, "Discard"),
        ),
      ),
    ),
  );
  const body = document.getElementById("dead-letter-rows");
  keepingFocus(() => body.replaceChildren(...(rows.length ? rows : [el("tr", {}, el("td", { colspan: 6, class: "muted" }, "No dead letters: every handler succeeded."))])));
  document.getElementById("dead-letters-summary").textContent =
    `${letters.length} dead letter(s)` + (dropped ? `; ${dropped} older ones were dropped` : "");
}

// -- configuration --------------------------------------------------------------------------

async function loadConfig() {
  const { config } = await api("/config");
  document.getElementById("config-view").textContent = JSON.stringify(config, null, 2);
}

// -- audit log ------------------------------------------------------------------------------

const audit = { next: null };

function auditQuery(beforeId) {
  const form = new FormData(document.getElementById("audit-filter"));
  const query = new URLSearchParams();
  for (const [name, value] of form) {
    if (value) query.set(name, value);
  }
  query.set("limit", "50");
  if (beforeId) query.set("before_id", beforeId);
  return query;
}

async function loadAudit({ more = false } = {}) {
  const body = document.getElementById("audit-rows");
  let data;
  try {
    data = await api(`/audit?${auditQuery(more ? audit.next : null)}`);
  } catch (error) {
    if (error instanceof ApiError && error.status === 503) {
      body.replaceChildren(el("tr", {}, el("td", { colspan: 6, class: "muted" }, error.message)));
      document.getElementById("audit-more").hidden = true;
      return;
    }
    throw error;
  }
  const rows = data.entries.map((entry) =>
    el(
      "tr",
      {},
      el("td", { dataset: { label: "Time" } }, formatDateTime(entry.time)),
      el("td", { dataset: { label: "Actor" } }, entry.actor),
      el("td", { dataset: { label: "Action" } }, el("code", {}, entry.action)),
      el("td", { dataset: { label: "Resource" }, class: "wide" }, entry.resource || "–"),
      el("td", { dataset: { label: "Outcome" } }, el("span", { class: `badge outcome-${entry.outcome}` }, entry.outcome)),
      el("td", { dataset: { label: "Request" }, class: "mono small" }, entry.request_id || "–"),
    ),
  );
  if (more) body.append(...rows);
  else body.replaceChildren(...(rows.length ? rows : [el("tr", {}, el("td", { colspan: 6, class: "muted" }, "No entries match."))]));
  audit.next = data.next_before_id;
  document.getElementById("audit-more").hidden = !audit.next;
  const shown = data.entries.length ? body.querySelectorAll("tr").length : 0;
  document.getElementById("audit-summary").textContent = `${shown} ${shown === 1 ? "entry" : "entries"} shown, newest first.`;
}

// -- cluster --------------------------------------------------------------------------------

async function loadCluster() {
  const { instances } = await api("/cluster");
  const head = ["Instance", "Host", "Nexus", "Last heartbeat", "Plugins"];
  document.getElementById("cluster-head").replaceChildren(...head.map((name) => el("th", { scope: "col" }, name)));
  const rows = instances.map((instance) => {
    const plugins = Object.entries(instance.plugins || {});
    const troubled = plugins.filter(([, report]) => report.state !== "active");
    return el(
      "tr",
      { dataset: { instance: instance.id } },
      el("th", { scope: "row" }, instance.id),
      el("td", { dataset: { label: "Host" } }, instance.pid ? `${instance.host} (pid ${instance.pid})` : instance.host ?? "–"),
      el("td", { dataset: { label: "Nexus" } }, instance.nexus_version ?? "–"),
      el("td", { dataset: { label: "Last heartbeat" } }, instance.heartbeat_at ? formatTime(instance.heartbeat_at) : "–"),
      el(
        "td",
        { class: "deps wide", dataset: { label: "Plugins" } },
        el("span", {}, `${plugins.length - troubled.length} of ${plugins.length} active`),
        troubled.map(([name, report]) =>
          el("span", {}, `${name}: `, badge(report.state), report.problem ? el("span", { class: "reason" }, ` ${report.problem}`) : null),
        ),
      ),
    );
  });
  document.getElementById("cluster-rows").replaceChildren(
    ...(rows.length ? rows : [el("tr", {}, el("td", { colspan: 5, class: "muted" }, "No instance has reported yet."))]),
  );
  document.getElementById("cluster-summary").textContent = `${instances.length} instance(s) reporting.`;
}

// -- views ----------------------------------------------------------------------------------

const VIEWS = {
  plugins: { load: loadPlugins, every: 5000 },
  graph: { load: loadGraph, every: 10000 },
  events: { enter: startStream, leave: stopStream },
  metrics: { load: loadMetrics, every: 2000 },
  "dead-letters": { load: loadDeadLetters, every: 10000 },
  config: { load: loadConfig },
  audit: { load: loadAudit },
  cluster: { load: loadCluster, every: 5000 },
};

let current = null;
let timer = 0;

async function refresh() {
  const view = VIEWS[current];
  if (!view?.load) return;
  try {
    await view.load();
  } catch (error) {
    reportError(error);
  }
}

function schedule() {
  clearInterval(timer);
  const view = VIEWS[current];
  if (view?.every && !document.hidden) timer = setInterval(refresh, view.every);
}

function route() {
  let name = window.location.hash.slice(1) || "plugins";
  const link = document.querySelector(`.topbar nav a[href="#${CSS.escape(name)}"]`);
  if (!VIEWS[name] || !link || link.closest("li").hidden) name = "plugins";
  if (name === current) return;
  VIEWS[current]?.leave?.();
  current = name;
  for (const section of document.querySelectorAll(".view")) section.hidden = section.dataset.view !== name;
  for (const anchor of document.querySelectorAll(".topbar nav a")) {
    if (anchor.getAttribute("href") === `#${name}`) anchor.setAttribute("aria-current", "page");
    else anchor.removeAttribute("aria-current");
  }
  document.title = `${document.querySelector(`#view-${name} h1`).textContent} · Nexus admin`;
  VIEWS[name].enter?.();
  refresh();
  schedule();
}

async function start() {
  document.getElementById("events-filter").addEventListener("submit", (event) => {
    event.preventDefault();
    document.getElementById("event-list").replaceChildren();
    stream.seen.clear();
    stream.held = [];
    startStream();
  });
  document.getElementById("events-pause").addEventListener("click", togglePause);
  document.getElementById("events-clear").addEventListener("click", () => {
    document.getElementById("event-list").replaceChildren();
    stream.seen.clear();
  });
  document.getElementById("audit-filter").addEventListener("submit", (event) => {
    event.preventDefault();
    loadAudit().catch(reportError);
  });
  document.getElementById("audit-more").addEventListener("click", () => loadAudit({ more: true }).catch(reportError));
  document.addEventListener("visibilitychange", () => {
    schedule();
    if (!document.hidden) refresh();
  });
  window.addEventListener("hashchange", () => {
    route();
    document.getElementById("main").focus({ preventScroll: true });
  });
  try {
    const session = await api("/session");
    for (const item of document.querySelectorAll("[data-feature]")) {
      item.hidden = !session.features[item.dataset.feature];
    }
  } catch (error) {
    reportError(error);
  }
  route();
}

start();
