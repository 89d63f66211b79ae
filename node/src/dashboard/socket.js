// The /analytics WebSocket, reconnecting with capped exponential backoff.
// The delay doubles from FIRST_DELAY_MS up to MAX_DELAY_MS, with jitter so
// that many pages do not return at once, and resets once the server has
// welcomed a connection.

const FIRST_DELAY_MS = 500;
const MAX_DELAY_MS = 15000;

export class LiveSocket {
  /**
   * `handlers`: onWelcome(data), onMessage(message) and onState(state,
   * retryInMs), state being "connecting", "open" or "waiting".
   */
  constructor(url, handlers) {
    this.url = url;
    this.handlers = handlers;
    this.failures = 0;
    this.socket = null;
  }

  start() {
    this.handlers.onState("connecting");
    const socket = new WebSocket(this.url);
    this.socket = socket;
    socket.onmessage = (event) => this.receive(event.data);
    socket.onclose = () => this.retry(socket);
    // An error is always followed by close, which schedules the retry.
    socket.onerror = () => {};
  }

  receive(text) {
    let message;
    try {
      message = JSON.parse(text);
    } catch {
      return;
    }
    if (message.type === "welcome") {
      this.failures = 0;
      this.handlers.onState("open");
      this.handlers.onWelcome(message.data ?? {});
      return;
    }
    this.handlers.onMessage(message);
  }

  retry(socket) {
    if (socket !== this.socket) return;
    const ceiling = Math.min(MAX_DELAY_MS, FIRST_DELAY_MS * 2 ** this.failures);
    const delay = Math.round(ceiling * (0.5 + Math.random() / 2));
    this.failures += 1;
    this.handlers.onState("waiting", delay);
    setTimeout(() => this.start(), delay);
  }

  /** Sends a message when open; returns whether it was sent. */
  send(message) {
    if (this.socket?.readyState !== WebSocket.OPEN) return false;
    this.socket.send(JSON.stringify(message));
    return true;
  }
}
