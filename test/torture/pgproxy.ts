/**
 * A TCP proxy between workers and PostgreSQL that reads the wire protocol just enough to find COMMIT: it
 * forwards a simple-query COMMIT to the server, lets the server commit, and then — when armed — resets the
 * client's connection instead of relaying the CommandComplete. The worker sees a connection lost during
 * COMMIT and must find out from the server that its commit happened, without applying it twice (P3).
 * It can also blackhole a connection (stop forwarding without closing it).
 */
import net from 'node:net';

export interface PgProxyOptions {
  /** Upstream PostgreSQL. */
  host: string;
  port: number;
  /** Decides, per COMMIT the proxy sees, whether to drop its reply. */
  dropCommit: (n: number) => boolean;
  onDrop?: (n: number) => void;
}

/** Splits a byte stream into protocol messages: [type (0 for untyped), length-prefixed body]. */
class MessageReader {
  #buffer: Buffer = Buffer.alloc(0);
  #untyped: number;

  constructor(untypedFirst: number) {
    this.#untyped = untypedFirst;
  }

  push(chunk: Buffer, onMessage: (type: number, body: Buffer) => void): void {
    this.#buffer = this.#buffer.length === 0 ? chunk : Buffer.concat([this.#buffer, chunk]);
    for (;;) {
      if (this.#untyped > 0) {
        if (this.#buffer.length < 4) return;
        const length = this.#buffer.readInt32BE(0);
        if (this.#buffer.length < length) return;
        const body = this.#buffer.subarray(4, length);
        this.#buffer = this.#buffer.subarray(length);
        // An SSLRequest (80877103) is followed by one more untyped message, the real startup.
        if (!(length === 8 && body.readInt32BE(0) === 80877103)) this.#untyped--;
        onMessage(0, body);
        continue;
      }
      if (this.#buffer.length < 5) return;
      const length = this.#buffer.readInt32BE(1);
      if (this.#buffer.length < 1 + length) return;
      const type = this.#buffer[0] as number;
      const body = this.#buffer.subarray(5, 1 + length);
      this.#buffer = this.#buffer.subarray(1 + length);
      onMessage(type, body);
    }
  }
}

export class PgProxy {
  readonly #server: net.Server;
  readonly #options: PgProxyOptions;
  readonly #sockets = new Set<net.Socket>();
  #commits = 0;
  drops = 0;
  #blackhole = false;
  port = 0;

  constructor(options: PgProxyOptions) {
    this.#options = options;
    this.#server = net.createServer((client) => this.#connect(client));
  }

  async listen(): Promise<number> {
    await new Promise<void>((resolve) => this.#server.listen(0, '127.0.0.1', resolve));
    this.port = (this.#server.address() as net.AddressInfo).port;
    return this.port;
  }

  /** Stops forwarding on every connection, open or new, without closing any (a half-open network). */
  blackhole(on: boolean): void {
    this.#blackhole = on;
  }

  #connect(client: net.Socket): void {
    const upstream = net.connect(this.#options.port, this.#options.host);
    // Without this, Nagle's algorithm and delayed ACKs hold each relayed reply ~40 ms: a commit of a few round
    // trips took a tenth of a second through the proxy, and episodes ran out of budget for no fault of rlm's.
    client.setNoDelay(true);
    upstream.setNoDelay(true);
    this.#sockets.add(client);
    this.#sockets.add(upstream);
    const end = () => {
      client.destroy();
      upstream.destroy();
      this.#sockets.delete(client);
      this.#sockets.delete(upstream);
    };
    client.on('error', end);
    upstream.on('error', end);
    client.on('close', end);
    upstream.on('close', end);
    const fromClient = new MessageReader(1);
    const fromServer = new MessageReader(0);
    // COMMITs forwarded on this connection whose replies are still to come: drop or pass, in order.
    const verdicts: boolean[] = [];
    let sslAnswerPending = false;
    client.on('data', (chunk: Buffer) => {
      if (this.#blackhole) return;
      fromClient.push(chunk, (type, body) => {
        if (type === 0 && body.length === 4 && body.readInt32BE(0) === 80877103) sslAnswerPending = true;
        if (type === 0x51 /* Q */) {
          const text = body.toString('utf8', 0, Math.max(0, body.length - 1)).trim().replace(/;$/, '').toUpperCase();
          if (text === 'COMMIT') {
            const n = ++this.#commits;
            verdicts.push(this.#options.dropCommit(n));
          }
        }
      });
      upstream.write(chunk);
    });
    upstream.on('data', (chunk: Buffer) => {
      if (this.#blackhole) return;
      if (sslAnswerPending) {
        // The one-byte answer to an SSLRequest precedes every typed message.
        sslAnswerPending = false;
        client.write(chunk.subarray(0, 1));
        chunk = chunk.subarray(1);
        if (chunk.length === 0) return;
      }
      // Whole messages only, so a COMMIT's CommandComplete can be held back exactly; the rest of a chunk is
      // relayed in one write.
      const relay: Buffer[] = [];
      fromServer.push(chunk, (type, body) => {
        if (client.destroyed) return;
        if (type === 0x43 /* C */ && body.toString('utf8', 0, Math.max(0, body.length - 1)) === 'COMMIT' && verdicts.shift()) {
          // The server has committed; the client never hears of it.
          this.drops++;
          this.#options.onDrop?.(this.drops);
          if (relay.length > 0) client.write(Buffer.concat(relay.splice(0)));
          client.resetAndDestroy();
          upstream.destroy();
          return;
        }
        const header = Buffer.alloc(5);
        header[0] = type;
        header.writeInt32BE(4 + body.length, 1);
        relay.push(header, body);
      });
      if (relay.length > 0 && !client.destroyed) client.write(Buffer.concat(relay));
    });
  }

  async close(): Promise<void> {
    for (const socket of this.#sockets) socket.destroy();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }
}
