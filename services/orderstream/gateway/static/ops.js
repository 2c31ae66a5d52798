// The operator dashboard: the gateway's admin REST API (signed with an admin key) and its /metrics.
import { $, el, login, logout } from "/static/common.js";

const POLL_MS = 2000;
const WINDOW_S = 15 * 60;  // what the plots keep
let signer = null;

login($("#login"), "os.operator", start);
$("#logout").addEventListener("click", () => logout("os.operator"));

async function start(s) {
  await s.call("GET", "/api/v1/admin/services");  // refuses a key that is not an admin's
  signer = s;
  $("#screen").hidden = false;
  $("#logout").hidden = false;
  setupPlots();
  setupForms();
  poll();
}

async function poll() {
  await Promise.allSettled([services(), lag(), deadLetters(), metrics()]);
  $("#updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
  setTimeout(poll, POLL_MS);
}

async function services() {
  const { services } = await signer.call("GET", "/api/v1/admin/services");
  $("#services tbody").replaceChildren(...Object.entries(services).map(([name, s]) =>
    el("tr", { "data-service": name },
      el("td", { text: name }), el("td", { class: `status ${s.status}`, text: s.status }),
      el("td", { text: s.pid ?? "–" }), el("td", { text: s.assigned_partitions ?? "–" }),
      el("td", { text: s.restarts ?? "–" }), el("td", { text: s.port }))));
}

async function lag() {
  const { lag } = await signer.call("GET", "/api/v1/admin/lag");
  $("#lag tbody").replaceChildren(...Object.entries(lag).map(([service, topics]) => {
    const total = Object.values(topics).reduce((a, b) => a + b, 0);
    const detail = Object.entries(topics).filter(([, n]) => n).map(([t, n]) => `${t} ${n}`).join(", ") || "–";
    return el("tr", { "data-service": service }, el("td", { text: service }), el("td", { text: total }),
      el("td", { text: detail, style: "text-align:left" }));
  }));
}

async function deadLetters() {
  const { topics } = await signer.call("GET", "/api/v1/admin/dead-letters");
  $("#dlq tbody").replaceChildren(...Object.entries(topics).filter(([, c]) => c.records).map(([topic, c]) =>
    el("tr", { "data-topic": topic },
      el("td", { text: topic }), el("td", { class: "records", text: c.records }),
      el("td", { class: "not-replayed", text: c.not_replayed }),
      el("td", {}, el("button", { type: "button", class: "replay", disabled: !c.not_replayed,
        onclick: () => replay(topic), text: "replay" })))));
  if (!$("#dlq tbody").rows.length) {
    $("#dlq tbody").append(el("tr", {}, el("td", { colspan: 4, class: "muted", text: "no dead letters" })));
  }
}

async function replay(topic) {
  const out = $("#replayed");
  out.textContent = `replaying ${topic}…`;
  try {
    const { replayed } = await signer.call("POST", "/api/v1/admin/dead-letters/replay", { topic });
    out.textContent = `${topic}: replayed ${replayed.length}\n${replayed.join("\n")}`;
  } catch (err) {
    out.textContent = `${err.code} ${err.message}`;
  }
  deadLetters();
}

// -- /metrics: the order-to-report histogram, as rates and latencies per poll interval ---------------

let plots = null;
let previous = null;

function setupPlots() {
  const LC = window.LightweightCharts;
  const chart = (id) => LC.createChart($(id), {
    autoSize: true,
    layout: { background: { color: "#161c23" }, textColor: "#7b8794" },
    grid: { vertLines: { color: "#263040" }, horzLines: { color: "#263040" } },
    timeScale: { timeVisible: true, secondsVisible: true },
  });
  const rate = chart("#rate");
  const latency = chart("#latency");
  plots = {
    rate: rate.addSeries(LC.LineSeries, { color: "#26a69a", lineWidth: 2 }),
    mean: latency.addSeries(LC.LineSeries, { color: "#d8dee9", lineWidth: 2, title: "mean" }),
    p99: latency.addSeries(LC.LineSeries, { color: "#ef5350", lineWidth: 1, title: "p99" }),
    points: 0,
  };
}

/** The histogram's samples from the Prometheus text format: count, sum and cumulative buckets. */
export function histogram(text, name) {
  const out = { count: 0, sum: 0, buckets: [] };
  for (const line of text.split("\n")) {
    if (line.startsWith(`${name}_count`)) out.count = Number(line.split(" ").pop());
    else if (line.startsWith(`${name}_sum`)) out.sum = Number(line.split(" ").pop());
    else if (line.startsWith(`${name}_bucket`)) {
      const le = line.match(/le="([^"]+)"/)[1];
      out.buckets.push([le === "+Inf" ? Infinity : Number(le), Number(line.split(" ").pop())]);
    }
  }
  return out;
}

async function metrics() {
  const text = await (await fetch("/metrics")).text();
  const now = Date.now() / 1000;
  const h = { ...histogram(text, "orderstream_gateway_order_report_seconds"), at: now };
  if (previous) {
    const dt = now - previous.at;
    const n = h.count - previous.count;
    const time = Math.floor(now);
    plots.rate.update({ time, value: n / dt });
    if (n > 0) {
      plots.mean.update({ time, value: ((h.sum - previous.sum) / n) * 1000 });
      const want = n * 0.99;  // the bucket bound where 99% of this interval's orders fall
      const p99 = h.buckets.find(([, c], i) => c - previous.buckets[i][1] >= want);
      if (p99 && Number.isFinite(p99[0])) plots.p99.update({ time, value: p99[0] * 1000 });
    }
    if (++plots.points * POLL_MS / 1000 > WINDOW_S) {
      const keep = (series) => series.setData(series.data().filter((p) => p.time >= now - WINDOW_S));
      [plots.rate, plots.mean, plots.p99].forEach(keep);
      plots.points = 0;
    }
    $("#rate").dataset.last = (n / dt).toFixed(2);
  }
  previous = h;
}

// -- kill switches, accounts, deposits ---------------------------------------------------

function setupForms() {
  const kill = $("#kill");
  kill.addEventListener("submit", async (e) => {
    e.preventDefault();
    const engaged = e.submitter?.value === "true";
    const f = kill.elements;
    const body = { scope: f.scope.value, target: f.target.value.trim(), engaged, reason: f.reason.value.trim() };
    const line = el("li");
    $("#switches").prepend(line);
    try {
      const sent = await signer.call("POST", "/api/v1/admin/kill-switch", body);
      line.textContent = `${new Date().toLocaleTimeString()} ${engaged ? "engaged" : "released"} ${sent.scope} ${sent.target} (${body.reason})`;
    } catch (err) {
      line.textContent = `${err.code} ${err.message}`;
    }
  });
  const account = $("#account");
  account.addEventListener("submit", async (e) => {
    e.preventDefault();
    const f = account.elements;
    const permissions = ["trade", "read", "admin"].filter((p) => f[p].checked);
    const out = $("#created");
    try {
      const made = await signer.call("POST", "/api/v1/admin/accounts", { account_id: f.account_id.value.trim(), permissions });
      out.className = "status ok";
      out.textContent = `account ${made.account_id}: key ${made.key_id}, secret ${made.secret} (shown once)`;
    } catch (err) {
      out.className = "status bad";
      out.textContent = `${err.code} ${err.message}`;
    }
  });
  const deposit = $("#deposit");
  deposit.addEventListener("submit", async (e) => {
    e.preventDefault();
    const f = deposit.elements;
    const body = { account_id: f.account_id.value.trim(), asset: f.asset.value.trim(), amount: f.amount.value.trim() };
    const out = $("#deposited");
    try {
      const sent = await signer.call("POST", "/api/v1/admin/deposits", body);
      out.className = "status ok";
      out.textContent = `deposit of ${body.amount} ${body.asset} to ${body.account_id} sent (${sent.command_id})`;
    } catch (err) {
      out.className = "status bad";
      out.textContent = `${err.code} ${err.message}`;
    }
  });
}
