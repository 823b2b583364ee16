// flowrun's websocket client for pages: one connection, many subscriptions, reconnects by itself.
//
//   const socket = new FlowSocket();               // ws(s)://<this host>/ws, cookie auth
//   const sub = socket.subscribe({run_id}, afterSeq, (msg) => { ... }, {onOpen});
//   sub.close();
//
// Each run subscription remembers the last seq it was given; after a dropped connection the
// client reconnects (backing off up to 10 s) and subscribes again from that seq, so the server
// replays what was missed: no gap, no duplicate. `onOpen` runs on every (re)connect, for pages
// that also refetch. `request(msg)` sends a message with a `ref` and resolves with its `ack`
// (or rejects with its `error`). A `batch` from the server is handled message by message.

const MAX_BACKOFF_MS = 10000;

export function defaultUrl() {
  return `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`;
}

export class FlowSocket {
  constructor({ url = defaultUrl() } = {}) {
    this.url = url;
    this.subs = new Map(); // ref -> subscription
    this.pending = new Map(); // ref -> {resolve, reject}
    this.statusListeners = new Set();
    this.nextRef = 1;
    this.backoff = 250;
    this.closed = false;
    this.state = "connecting";
    this._connect();
  }

  _ref(prefix) {
    return `${prefix}-${this.nextRef++}`;
  }

  _connect() {
    const ws = new WebSocket(this.url);
    this.ws = ws;
    ws.addEventListener("open", () => {
      this.backoff = 250;
      this._status("open");
      for (const sub of this.subs.values()) this._sendSubscribe(sub);
    });
    ws.addEventListener("message", (ev) => this._onMessage(ev.data));
    ws.addEventListener("close", (ev) => {
      if (this.ws !== ws) return;
      for (const { reject } of this.pending.values()) reject(new Error("connection closed"));
      this.pending.clear();
      if (this.closed) return;
      this._status("closed", ev.reason || "connection lost");
      setTimeout(() => { if (!this.closed) this._connect(); }, this.backoff);
      this.backoff = Math.min(this.backoff * 2, MAX_BACKOFF_MS);
    });
  }

  _status(state, reason = "") {
    this.state = state;
    for (const fn of this.statusListeners) fn(state, reason);
  }

  onStatus(fn) {
    this.statusListeners.add(fn);
    return () => this.statusListeners.delete(fn);
  }

  _send(msg) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) {
      this.ws.send(JSON.stringify(msg));
      return true;
    }
    return false;
  }

  _sendSubscribe(sub) {
    const msg = { type: "subscribe", ref: sub.ref, ...sub.target };
    if (sub.target.run_id || sub.target.chat_id) msg.after_seq = sub.lastSeq;
    this._send(msg);
    if (sub.onOpen) sub.onOpen();
  }

  subscribe(target, afterSeq, onEvent, { onOpen, onError } = {}) {
    const sub = { ref: this._ref("sub"), target, lastSeq: afterSeq || 0, onEvent, onOpen, onError };
    this.subs.set(sub.ref, sub);
    if (this.state === "open") this._sendSubscribe(sub);
    return {
      close: () => {
        this.subs.delete(sub.ref);
        this._send({ type: "unsubscribe", ref: sub.ref, ...target });
      },
      get lastSeq() { return sub.lastSeq; },
    };
  }

  request(msg) {
    const ref = this._ref("req");
    return new Promise((resolve, reject) => {
      this.pending.set(ref, { resolve, reject });
      if (!this._send({ ...msg, ref })) {
        this.pending.delete(ref);
        reject(new Error("not connected"));
      }
    });
  }

  _onMessage(raw) {
    let msg;
    try { msg = JSON.parse(raw); } catch { return; }
    if (msg.type === "batch") { // messages that queued up on the server, in order
      for (const one of msg.messages || []) this._handle(one);
      return;
    }
    this._handle(msg);
  }

  _handle(msg) {
    if (msg.type === "session" || msg.type === "task") { // a row of a subscribed topic changed
      const topic = msg.type === "session" ? "sessions" : "tasks";
      for (const sub of this.subs.values()) if (sub.target.topic === topic) sub.onEvent(msg);
      return;
    }
    if (msg.type === "event") {
      for (const sub of this.subs.values()) {
        const t = sub.target;
        const log = t.run_id || t.chat_id;  // a chat's events carry the chat id as run_id
        if (!log || msg.run_id !== log || msg.topic) continue;
        if (typeof msg.seq === "number" && msg.seq <= sub.lastSeq) continue; // replay overlap
        if (typeof msg.seq === "number") sub.lastSeq = msg.seq;
        sub.onEvent(msg);
      }
      return;
    }
    const waiter = msg.ref ? this.pending.get(msg.ref) : null;
    if (waiter) {
      this.pending.delete(msg.ref);
      if (msg.type === "error") waiter.reject(Object.assign(new Error(msg.message || msg.code), msg));
      else waiter.resolve(msg);
      return;
    }
    if (msg.type === "error" && msg.ref && this.subs.has(msg.ref)) {
      const sub = this.subs.get(msg.ref);
      if (sub.onError) sub.onError(msg);
    }
  }

  close() {
    this.closed = true;
    if (this.ws) this.ws.close();
  }
}

// One shared socket per page: the overlay and the page reuse it.
let shared = null;
export function sharedSocket() {
  if (!shared) shared = new FlowSocket();
  return shared;
}
