// The HTTP front (routes/front.ts): slow or silent clients are cut off by the header and idle timeouts, everything
// else passes through unchanged (bodies byte for byte, chunked and pipelined requests, long streams), and a slowloris
// crowd does not slow an honest client. Real sockets, timeouts shortened.
import { assert, assertEquals, assertThrows } from "../fixtures/asserts.ts";
import { RequestFraming, serveFronted } from "../routes/front.ts";

const HEADER_MS = 400, IDLE_MS = 1200;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const enc = new TextEncoder(), dec = new TextDecoder();

async function withFront(fn: (port: number) => Promise<void>): Promise<void> {
  const ac = new AbortController();
  const front = await serveFronted(
    { hostname: "127.0.0.1", port: 0, headerTimeoutMs: HEADER_MS, idleTimeoutMs: IDLE_MS, signal: ac.signal },
    async (req) => {
      const url = new URL(req.url);
      if (url.pathname === "/echo") {
        const body = new Uint8Array(await req.arrayBuffer());
        return new Response(body, { headers: { "X-Host": req.headers.get("Host") ?? "" } });
      }
      if (url.pathname === "/stream") {
        // A byte every 300 ms for 3 s: longer than the idle timeout, never idle that long.
        let n = 0;
        return new Response(
          new ReadableStream({
            async pull(ctl) {
              if (n++ === 10) return ctl.close();
              await sleep(300);
              ctl.enqueue(enc.encode("."));
            },
          }),
        );
      }
      return new Response("hi");
    },
  );
  try {
    await fn(front.addr.port);
  } finally {
    ac.abort();
    await front.finished;
  }
}

/** Reads until the server closes the connection or `ms` pass; what came back and when it closed. */
async function readUntilClosed(conn: Deno.Conn, ms: number): Promise<{ text: string; closedAfter: number | null }> {
  const t0 = performance.now();
  const buf = new Uint8Array(65536);
  let text = "";
  const deadline = sleep(ms).then(() => "deadline" as const);
  for (;;) {
    const r = await Promise.race([conn.read(buf).catch(() => null), deadline]);
    if (r === "deadline") return { text, closedAfter: null };
    if (r === null) return { text, closedAfter: performance.now() - t0 };
    text += dec.decode(buf.subarray(0, r));
  }
}

Deno.test("front: a silent connection gets 408 after the header timeout; dribbled headers are cut off too", async () => {
  await withFront(async (port) => {
    const silent = await Deno.connect({ port });
    const dribble = await Deno.connect({ port });
    let stop = false;
    const dribbling = (async () => {
      await dribble.write(enc.encode("GET / HTTP/1.1\r\nHost: x\r\n"));
      for (let i = 0; i < 40 && !stop; i++) {
        await sleep(50);
        await dribble.write(enc.encode("X: y\r\n")).catch(() => (stop = true));
      }
    })();
    const [a, b] = await Promise.all([readUntilClosed(silent, 5000), readUntilClosed(dribble, 5000)]);
    stop = true;
    await dribbling;
    silent.close();
    dribble.close();
    for (const [what, r] of [["silent", a], ["dribble", b]] as const) {
      assert(r.closedAfter !== null, `${what}: still open after 5 s (${JSON.stringify(r.text)})`);
      assert(
        r.closedAfter >= HEADER_MS - 50 && r.closedAfter < HEADER_MS + 1500,
        `${what}: closed at ${r.closedAfter}`,
      );
      assert(r.text.startsWith("HTTP/1.1 408 "), `${what}: ${JSON.stringify(r.text)}`);
    }
  });
});

Deno.test("front: bodies, chunked and pipelined requests, Host and long streams pass through unchanged", async () => {
  await withFront(async (port) => {
    const base = `http://127.0.0.1:${port}`;
    const body = crypto.getRandomValues(new Uint8Array(60_000));
    const big = new Uint8Array(3 * 2 ** 20);
    for (let i = 0; i < big.length; i += 60_000) big.set(body.subarray(0, Math.min(60_000, big.length - i)), i);
    // Content-Length body, then a chunked (streamed) one, on fetch's keep-alive connections.
    for (let round = 0; round < 3; round++) {
      const r = await fetch(`${base}/echo`, { method: "POST", body: big });
      assertEquals(new Uint8Array(await r.arrayBuffer()), big);
      let sent = 0;
      const stream = new ReadableStream<Uint8Array>({
        pull(ctl) {
          if (sent >= 5) return ctl.close();
          ctl.enqueue(body.subarray(sent * 12_000, ++sent * 12_000));
        },
      });
      // @ts-ignore: Deno's fetch streams a request body with duplex "half"
      const c = await fetch(`${base}/echo`, { method: "POST", body: stream, duplex: "half" });
      assertEquals(new Uint8Array(await c.arrayBuffer()), body);
    }
    // Two pipelined requests on one raw connection, the second split mid-header; Host reaches the app as sent.
    const conn = await Deno.connect({ port });
    await conn.write(enc.encode(
      "POST /echo HTTP/1.1\r\nHost: evil.example:1\r\nContent-Length: 5\r\n\r\nhelloPOST /echo HTTP/1.1\r\nHo",
    ));
    await sleep(100);
    await conn.write(enc.encode("st: b\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n"));
    const seen = await readUntilClosed(conn, 600);
    conn.close();
    assert(/x-host: evil\.example:1/i.test(seen.text) && /\r\n\r\nhello/.test(seen.text), seen.text);
    assert(/x-host: b\r\n/i.test(seen.text) && /\r\n\r\nabcde$/.test(seen.text), seen.text);
    // A 3 s stream that is never idle for the idle timeout is not cut.
    const t0 = performance.now();
    const s = await fetch(`${base}/stream`);
    assertEquals(await s.text(), "..........");
    assert(performance.now() - t0 > IDLE_MS, "the stream was supposed to outlast the idle timeout");
  });
});

Deno.test("front: an idle keep-alive connection is closed; a slowloris crowd does not slow an honest client", async () => {
  await withFront(async (port) => {
    const conn = await Deno.connect({ port });
    await conn.write(enc.encode("GET / HTTP/1.1\r\nHost: a\r\n\r\n"));
    const r = await readUntilClosed(conn, 5000);
    conn.close();
    assert(r.text.startsWith("HTTP/1.1 200") && r.text.endsWith("hi"), r.text);
    assert(r.closedAfter !== null && r.closedAfter > IDLE_MS - 100, `closed after ${r.closedAfter} ms`);

    const crowd = await Promise.all(Array.from({ length: 200 }, () => Deno.connect({ port })));
    await Promise.all(crowd.map((c) => c.write(enc.encode("GET / HTTP/1.1\r\n"))));
    const times: number[] = [];
    for (let i = 0; i < 10; i++) {
      const t0 = performance.now();
      const res = await fetch(`http://127.0.0.1:${port}/`);
      assertEquals(await res.text(), "hi");
      times.push(performance.now() - t0);
    }
    const closed = await Promise.all(crowd.map((c) => readUntilClosed(c, 5000)));
    crowd.forEach((c) => c.close());
    assert(Math.max(...times) < 200, `honest requests took ${times.map((t) => t.toFixed(0))} ms`);
    assertEquals(closed.filter((c) => c.closedAfter === null).length, 0, "a slowloris connection stayed open");
  });
});

Deno.test("front: request framing follows Content-Length, chunked bodies and header sizes", () => {
  const f = new RequestFraming(0);
  assertEquals(f.headerSince, 0, "a new connection owes its headers from the start");
  f.push(enc.encode("POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\nab"), 5);
  assertEquals([f.requests, f.headerSince], [1, null]);
  f.push(enc.encode("c\r\n"), 6); // the body's last byte, then an empty line between requests
  assertEquals(f.headerSince, null);
  f.push(enc.encode("GET /x HTTP/1.1\r\n"), 7);
  assertEquals(f.headerSince, 7);
  f.push(enc.encode("Transfer-Encoding: chunked\r\n\r\n10\r\n0123456789abcdef\r\n0\r\nT: 1\r\n\r\n"), 8);
  assertEquals([f.requests, f.headerSince], [2, null]);
  // The front's own statuses, as it answers them.
  assertThrows(
    () => new RequestFraming(0).push(enc.encode(`GET / HTTP/1.1\r\nX: ${"a".repeat(70_000)}`), 1),
    Error,
    "431",
  );
  for (const bad of ["Content-Length: 1\r\nContent-Length: 2", "Content-Length: -1", "Transfer-Encoding: gzip"]) {
    assertThrows(() => new RequestFraming(0).push(enc.encode(`POST / HTTP/1.1\r\n${bad}\r\n\r\n`), 1), Error, "400");
  }
});
