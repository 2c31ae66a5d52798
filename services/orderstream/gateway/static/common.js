// What both pages share: signing with WebCrypto (as gateway/auth.py's `sign`), the signed REST call,
// the /ws connection, the login form and small DOM helpers. No framework.
const utf8 = new TextEncoder();

export const $ = (sel, root = document) => root.querySelector(sel);

/** An element with attributes (`text` sets its text) and children. */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "text") node.textContent = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : v);
  }
  node.append(...children);
  return node;
}

export class ApiError extends Error {
  constructor(body) {
    super(body.message);
    this.code = body.code;
    this.details = body.details || {};
  }
}

/** A key id and its secret as an HMAC key: hex HMAC-SHA256(secret, timestamp + METHOD + path + body). */
export class Signer {
  static async of(keyId, secret) {
    const key = await crypto.subtle.importKey("raw", utf8.encode(secret), { name: "HMAC", hash: "SHA-256" },
      false, ["sign"]);
    return new Signer(keyId, key);
  }

  constructor(keyId, key) {
    this.keyId = keyId;
    this.key = key;
    this.last = 0;
  }

  /** A fresh millisecond timestamp: never the same twice, so two equal requests never sign alike
   * (the gateway accepts a signature once). */
  stamp() {
    this.last = Math.max(Date.now(), this.last + 1);
    return String(this.last);
  }

  async sign(timestamp, method, path, body) {
    const mac = await crypto.subtle.sign("HMAC", this.key, utf8.encode(timestamp + method.toUpperCase() + path + body));
    return Array.from(new Uint8Array(mac), (b) => b.toString(16).padStart(2, "0")).join("");
  }

  /** A signed REST call; its JSON answer, or an ApiError with the gateway's code and details. */
  async call(method, path, body) {
    const text = body === undefined ? "" : JSON.stringify(body);
    const timestamp = this.stamp();
    const headers = {
      "X-OS-KEY": this.keyId,
      "X-OS-TIMESTAMP": timestamp,
      "X-OS-SIGNATURE": await this.sign(timestamp, method, path, text),
    };
    if (text) headers["Content-Type"] = "application/json";
    const resp = await fetch(path, { method, headers, body: text || undefined });
    const answer = await resp.json().catch(() => ({}));
    if (!resp.ok) throw new ApiError(answer.error || { code: resp.status * 100, message: resp.statusText });
    return answer;
  }
}

/** /ws, logged in with a signature of timestamp + "GET" + "/ws"; requests answered by id, pushes to
 * `onPush`. After a drop it connects again and calls `onReady` (resubscribe, reload). */
export class Socket {
  constructor(signer, onPush, onReady, onState) {
    Object.assign(this, { signer, onPush, onReady, onState, next: 1, pending: new Map(), closed: false });
  }

  async open() {
    const url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws";
    const ws = (this.ws = new WebSocket(url));
    ws.onmessage = (e) => this.receive(JSON.parse(e.data));
    ws.onclose = () => {
      for (const { reject } of this.pending.values()) reject(new ApiError({ code: 0, message: "disconnected" }));
      this.pending.clear();
      this.onState("disconnected");
      if (!this.closed) setTimeout(() => this.open().catch(() => {}), 1000);
    };
    await new Promise((resolve, reject) => {
      ws.onopen = resolve;
      ws.onerror = reject;
    });
    const timestamp = this.signer.stamp();
    const signature = await this.signer.sign(timestamp, "GET", "/ws", "");
    const who = await this.call("auth.login", { key: this.signer.keyId, timestamp, signature });
    this.onState("live");
    await this.onReady(who);
    return who;
  }

  call(method, params = {}) {
    const id = this.next++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.ws.send(JSON.stringify({ id, method, params }));
    });
  }

  receive(msg) {
    const waiting = msg.id !== undefined ? this.pending.get(msg.id) : undefined;
    if (waiting) {
      this.pending.delete(msg.id);
      if (msg.error) waiting.reject(new ApiError(msg.error));
      else waiting.resolve(msg.result);
    } else if (msg.stream) {
      this.onPush(msg);
    }
  }

  close() {
    this.closed = true;
    this.ws?.close();
  }
}

/** The key of this page in this tab (`slot`): from sessionStorage (the secret never leaves the
 * browser, and is gone when the tab closes), else from the login form. */
export function login(form, slot, onSigner) {
  const fail = (err) => {
    form.hidden = false;
    $(".login-error", form).textContent = `${err.code || ""} ${err.message}`;
  };
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const keyId = form.elements.key_id.value.trim();
    const secret = form.elements.secret.value;
    try {
      form.hidden = true;
      await onSigner(await Signer.of(keyId, secret));
      sessionStorage.setItem(slot, JSON.stringify({ keyId, secret }));
      form.elements.secret.value = "";
    } catch (err) {
      fail(err);
    }
  });
  const saved = sessionStorage.getItem(slot);
  if (!saved) {
    form.hidden = false;
    return;
  }
  const { keyId, secret } = JSON.parse(saved);
  Signer.of(keyId, secret).then(onSigner).catch((err) => {
    sessionStorage.removeItem(slot);
    fail(err);
  });
}

export function logout(slot) {
  sessionStorage.removeItem(slot);
  location.reload();
}

/** An exact decimal string as written plainly: trailing zeros dropped ("31000.500000" -> "31000.5",
 * "0E-18" -> "0"); the digits are kept, never rounded through a float. */
export function dec(value) {
  if (value === null || value === undefined) return "";
  const s = String(value);
  if (/e/i.test(s)) return Number(s) === 0 ? "0" : s;
  return s.includes(".") ? s.replace(/0+$/, "").replace(/\.$/, "") : s;
}

/** A decimal string for display: at most `places` decimals, trailing zeros dropped. */
export function fmt(value, places = 8) {
  if (value === null || value === undefined || value === "") return "";
  const n = Number(value);
  if (!Number.isFinite(n)) return String(value);
  return n.toLocaleString("en-US", { maximumFractionDigits: places, useGrouping: false });
}

export function clock(ns) {
  return new Date(Number(ns) / 1e6).toISOString().slice(11, 19);
}
