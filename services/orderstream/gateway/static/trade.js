// The trading screen: market data, the order ticket, orders, balances and positions of one key,
// live from /ws (market and user streams) and the signed REST API.
import { $, el, dec, fmt, clock, login, logout, Socket } from "/static/common.js";

const OPEN = new Set(["NEW", "ACCEPTED", "PARTIALLY_FILLED", "TRIGGERED", "REPLACED"]);
const HISTORY_PAGE = 10;
const LADDER_ROWS = 12;
const TAPE_ROWS = 40;

// What the page did, for people and for the browser test: pushes applied and how late they were.
const stats = (window.osStats = { market: 0, user: 0, frames: 0, lagMs: [], firstPaintMs: null });
new PerformanceObserver((list) => {
  for (const e of list.getEntries()) if (e.name === "first-contentful-paint") stats.firstPaintMs = e.startTime;
}).observe({ type: "paint", buffered: true });

const state = {
  socket: null, signer: null, instruments: new Map(), symbol: null,
  bids: new Map(), asks: new Map(), dirty: false,
  open: new Map(), balances: new Map(), positions: new Map(),
  history: { cursors: [null], next: null, reload: null },
  chart: null, candles: null, candleCount: 0,
};

login($("#login"), "os.trader", start);
$("#logout").addEventListener("click", () => logout("os.trader"));

async function start(signer) {
  const { instruments } = await signer.call("GET", "/api/v1/instruments");
  state.signer = signer;
  for (const i of instruments) state.instruments.set(i.symbol, i);
  const picker = $("#symbol");
  picker.replaceChildren(...instruments.filter((i) => i.enabled).map((i) => el("option", { text: i.symbol })));
  const internal = instruments.find((i) => i.enabled && i.venue === "INTERNAL");  // our own book first
  state.symbol = sessionStorage.getItem("os.symbol") || (internal || instruments[0])?.symbol;
  picker.value = state.symbol;
  picker.addEventListener("change", () => switchSymbol(picker.value));
  $("#screen").hidden = false;
  $("#logout").hidden = false;
  setupChart();
  setupTicket();
  $("#newest").addEventListener("click", () => loadHistory(0));
  $("#older").addEventListener("click", () => loadHistory(state.history.cursors.length));
  state.socket = new Socket(signer, onPush, ready, (s) => { $("#conn").textContent = s; });
  await state.socket.open();
}

/** After each login on /ws: the streams, then what they change (pushes during the reads apply on top). */
async function ready(who) {
  $("#account").textContent = who.account_id;
  const s = state.socket;
  await s.call("subscribe", { stream: "user" });
  await subscribeMarket(state.symbol);
  const [open, balances] = await Promise.all([s.call("orders.open", { limit: 500 }), s.call("balances.get")]);
  state.open = new Map(open.orders.map((o) => [o.order_id, o]));
  for (const [asset, b] of Object.entries(balances.balances)) if (!state.balances.has(asset)) state.balances.set(asset, b);
  renderOpen();
  renderBalances();
  await loadHistory(0);
}

// -- market data ---------------------------------------------------------------------

async function subscribeMarket(symbol) {
  const answer = await state.socket.call("subscribe", { stream: "market", symbol });
  state.bids.clear();
  state.asks.clear();
  for (const level of answer.snapshot?.levels || []) applyLevel(level);
  state.dirty = true;
  scheduleRender();
  showRules();
}

async function switchSymbol(symbol) {
  await state.socket.call("unsubscribe", { stream: "market", symbol: state.symbol });
  state.symbol = symbol;
  sessionStorage.setItem("os.symbol", symbol);
  $("#tape tbody").replaceChildren();
  state.candles.setData([]);
  state.candleCount = 0;
  $("#ticker").textContent = "";
  await subscribeMarket(symbol);
}

function applyLevel(level) {
  const side = level.side === "BID" ? state.bids : state.asks;
  if (Number(level.quantity) === 0) side.delete(level.price);
  else side.set(level.price, level.quantity);
}

function onPush(msg) {
  if (msg.stream === "user") return onUser(msg.type, msg.data);
  if (msg.symbol !== state.symbol) return;
  stats.market++;
  const d = msg.data;
  if (d.ts_event) stats.lagMs.push(Date.now() - d.ts_event / 1e6);
  if (stats.lagMs.length > 1000) stats.lagMs.splice(0, 500);
  if (msg.type === "book") {
    d.changes.forEach(applyLevel);
    state.dirty = true;
    scheduleRender();
  } else if (msg.type === "trade") {
    const tape = $("#tape tbody");
    tape.prepend(el("tr", { "data-trade-id": d.trade_id, class: d.aggressor_side === "BUY" ? "buy" : "sell" },
      el("td", { text: clock(d.ts_event) }), el("td", { text: dec(d.price) }), el("td", { text: dec(d.quantity) })));
    while (tape.rows.length > TAPE_ROWS) tape.deleteRow(-1);
  } else if (msg.type === "candle") {
    state.candles.update({ time: Math.floor(d.start / 1e9), open: +d.open, high: +d.high, low: +d.low, close: +d.close });
    state.candleCount++;
    $("#candle").textContent = `1m ${clock(d.start)}  O ${dec(d.open)}  H ${dec(d.high)}  L ${dec(d.low)}  C ${dec(d.close)}  V ${dec(d.volume)}  (${d.trades} trades)`;
    $("#chart").dataset.candles = state.candleCount;
  } else if (msg.type === "ticker") {
    $("#ticker").textContent = `last ${dec(d.last_price)}  high ${dec(d.high)}  low ${dec(d.low)}  vol ${fmt(d.volume)}`;
    markPositions(d.last_price);
  }
}

// Book changes are applied at once but drawn at most once a frame: a burst costs one render.
function scheduleRender() {
  if (state.rendering) return;
  state.rendering = true;
  requestAnimationFrame(() => {
    state.rendering = false;
    if (!state.dirty) return;
    state.dirty = false;
    stats.frames++;
    renderLadder();
  });
}

function renderLadder() {
  const asks = [...state.asks].sort((a, b) => a[0] - b[0]).slice(0, LADDER_ROWS);
  const bids = [...state.bids].sort((a, b) => b[0] - a[0]).slice(0, LADDER_ROWS);
  const rows = (levels) => {
    let total = 0;
    return levels.map(([price, qty]) => {
      total += Number(qty);
      return el("tr", {}, el("td", { text: dec(price) }), el("td", { text: dec(qty) }), el("td", { text: fmt(total) }));
    });
  };
  $("#asks").replaceChildren(...rows(asks).reverse());
  $("#bids").replaceChildren(...rows(bids));
  const spread = asks.length && bids.length ? fmt(asks[0][0] - bids[0][0]) : "–";
  $("#spread").replaceChildren(el("tr", {}, el("td", { colspan: 3, class: "muted", text: `spread ${spread}` })));
}

function setupChart() {
  const box = $("#chart");
  const LC = window.LightweightCharts;
  state.chart = LC.createChart(box, {
    autoSize: true,
    layout: { background: { color: "#161c23" }, textColor: "#7b8794" },
    grid: { vertLines: { color: "#263040" }, horzLines: { color: "#263040" } },
    timeScale: { timeVisible: true, secondsVisible: false },
  });
  state.candles = state.chart.addSeries(LC.CandlestickSeries, {
    upColor: "#26a69a", downColor: "#ef5350", wickUpColor: "#26a69a", wickDownColor: "#ef5350", borderVisible: false,
  });
}

// -- the order ticket ------------------------------------------------------------------

function setupTicket() {
  const form = $("#ticket");
  const show = () => {
    const type = form.elements.order_type.value;
    const tif = form.elements.time_in_force.value;
    for (const label of form.querySelectorAll("[data-types]")) label.hidden = !label.dataset.types.split(" ").includes(type);
    for (const label of form.querySelectorAll("[data-tif]")) label.hidden = label.dataset.tif !== tif;
  };
  form.addEventListener("change", show);
  show();
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    clearErrors(form);
    const status = $("#ticket-status");
    const params = ticketParams(form);
    status.className = "status";
    status.textContent = "sending…";
    $("#place").disabled = true;
    try {
      const placed = await state.socket.call("order.place", params);
      status.className = "status ok";
      status.textContent = `placed ${placed.order_id}`;
    } catch (err) {
      status.className = "status bad";
      status.textContent = `${err.code} ${err.message}`;
      showFieldError(form, err);
    } finally {
      $("#place").disabled = false;
    }
  });
}

/** The ticket's order: the fields its type uses, empty ones left out (the gateway names what is missing). */
function ticketParams(form) {
  const f = form.elements;
  const params = {
    client_order_id: `web-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`,
    symbol: state.symbol,
    side: f.side.value,
    order_type: f.order_type.value,
    time_in_force: f.time_in_force.value,
    self_trade_prevention: f.self_trade_prevention.value,
  };
  for (const label of form.querySelectorAll("label[data-field]")) {
    const name = label.dataset.field;
    if (label.hidden || name in params) continue;
    const input = f[name];
    if (input.type === "checkbox") {
      if (input.checked) params[name] = true;
    } else if (name === "expire_at") {
      if (input.value) params[name] = new Date(input.value).getTime() * 1e6;
    } else if (input.value.trim() !== "") {
      params[name] = input.value.trim();
    }
  }
  return params;
}

/** A refusal naming a field (40001 details.field, or 40010-40013) is shown at that field. */
function showFieldError(form, err) {
  const field = String(err.details.field || "").split(".")[0];
  const label = form.querySelector(`label[data-field="${field}"]`);
  if (!label) return;
  label.classList.add("invalid");
  label.append(el("span", { class: "field-error", text: err.details.issue || err.message }));
}

function clearErrors(form) {
  form.querySelectorAll(".field-error").forEach((n) => n.remove());
  form.querySelectorAll(".invalid").forEach((n) => n.classList.remove("invalid"));
}

function showRules() {
  const i = state.instruments.get(state.symbol);
  if (i) $("#rules").textContent = `tick ${dec(i.tick_size)} · lot ${dec(i.lot_size)} · min ${dec(i.min_quantity)} · fees ${dec(i.maker_fee)}/${dec(i.taker_fee)}`;
}

// -- the user stream -----------------------------------------------------------------

function onUser(type, d) {
  stats.user++;
  if (type === "execution_report") {
    if (OPEN.has(d.status)) state.open.set(d.order_id, { ...state.open.get(d.order_id), ...d });
    else state.open.delete(d.order_id);
    renderOpen();
    if (state.history.cursors.length === 1) {  // on the newest page: show the change (read model a moment later)
      clearTimeout(state.history.reload);
      state.history.reload = setTimeout(() => loadHistory(0), 400);
    }
  } else if ("free" in d && "held" in d && d.asset) {
    state.balances.set(d.asset, { free: d.free, held: d.held });
    renderBalances();
  } else if (type === "position_updated") {
    state.positions.set(d.symbol, d);
    renderPositions();
  }
}

function renderOpen() {
  const rows = [...state.open.values()].sort((a, b) => (a.order_id < b.order_id ? -1 : 1)).map((o) =>
    el("tr", { "data-order-id": o.order_id, "data-client-order-id": o.client_order_id },
      el("td", { text: o.order_id, title: o.client_order_id }), el("td", { text: o.symbol }),
      el("td", { class: o.side === "BUY" ? "buy" : "sell", text: o.side }), el("td", { text: o.order_type }),
      el("td", { text: dec(o.quantity) }), el("td", { text: dec(o.filled_quantity) }), el("td", { text: dec(o.price) }),
      el("td", { text: o.status }),
      el("td", {},
        el("button", { type: "button", class: "cancel", onclick: () => cancel(o.order_id), text: "cancel" }),
        el("button", { type: "button", class: "replace", onclick: (e) => replaceForm(e.target, o), text: "replace" }))));
  $("#open tbody").replaceChildren(...rows);
}

async function cancel(orderId) {
  try {
    await state.socket.call("order.cancel", { order_id: orderId });
  } catch (err) {
    alertIn(`#open tr[data-order-id="${CSS.escape(orderId)}"]`, err);
  }
}

function replaceForm(button, order) {
  const cell = button.parentElement;
  const price = el("input", { name: "price", value: dec(order.price), size: 8, "aria-label": "new price" });
  const qty = el("input", { name: "quantity", value: dec(order.quantity), size: 8, "aria-label": "new quantity" });
  const send = async () => {
    const params = { order_id: order.order_id };
    if (price.value && price.value !== dec(order.price)) params.price = price.value;
    if (qty.value && qty.value !== dec(order.quantity)) params.quantity = qty.value;
    try {
      await state.socket.call("order.replace", params);
      renderOpen();
    } catch (err) {
      cell.append(el("span", { class: "error", text: ` ${err.code} ${err.message}` }));
    }
  };
  cell.replaceChildren(price, qty, el("button", { type: "button", text: "send", onclick: send }),
    el("button", { type: "button", text: "×", onclick: renderOpen }));
}

function alertIn(selector, err) {
  document.querySelector(selector)?.lastChild.append(el("span", { class: "error", text: ` ${err.code} ${err.message}` }));
}

async function loadHistory(pageIndex) {
  const h = state.history;
  const before = pageIndex === 0 ? null : pageIndex < h.cursors.length ? h.cursors[pageIndex] : h.next;
  if (pageIndex > 0 && !before) return;
  const params = { limit: HISTORY_PAGE, ...(before ? { before } : {}) };
  const page = await state.socket.call("orders.history", params);
  h.cursors = h.cursors.slice(0, pageIndex);
  h.cursors.push(before);
  h.next = page.next;
  $("#older").disabled = !page.next;
  $("#history tbody").replaceChildren(...page.orders.map((o) =>
    el("tr", { "data-order-id": o.order_id },
      el("td", { text: clock(o.ts_ns) }), el("td", { text: o.order_id }), el("td", { text: o.symbol }),
      el("td", { class: o.side === "BUY" ? "buy" : "sell", text: o.side }), el("td", { text: dec(o.quantity) }),
      el("td", { text: dec(o.filled_quantity) }), el("td", { text: dec(o.average_price) }),
      el("td", { text: `${dec(o.fees)} ${o.fee_asset ?? ""}`.trim() }), el("td", { text: o.status }))));
}

function renderBalances() {
  const rows = [...state.balances].sort().map(([asset, b]) =>
    el("tr", { "data-asset": asset }, el("td", { text: asset }), el("td", { class: "free", text: dec(b.free) }),
      el("td", { class: "held", text: dec(b.held) })));
  $("#balances tbody").replaceChildren(...rows);
}

function markPositions(lastPrice) {
  const p = state.positions.get(state.symbol);
  if (!p) return;
  p.unrealized_pnl = String((Number(lastPrice) - Number(p.average_cost)) * Number(p.quantity));
  p.mark_price = lastPrice;
  renderPositions();
}

function renderPositions() {
  const rows = [...state.positions.values()].map((p) =>
    el("tr", { "data-symbol": p.symbol }, el("td", { text: p.symbol }), el("td", { text: dec(p.quantity) }),
      el("td", { text: fmt(p.average_cost) }), el("td", { text: fmt(p.realized_pnl, 2) }),
      el("td", { text: fmt(p.unrealized_pnl, 2), title: `marked at ${p.mark_price}` })));
  $("#positions tbody").replaceChildren(...rows);
}
