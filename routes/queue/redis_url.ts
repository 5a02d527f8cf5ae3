// `--queue redis://[USER][:PASSWORD@]HOST[:PORT][/DB]` (or rediss:// for TLS) -> connection options for ioredis and
// BullMQ, and the same address with its password hidden for logs and /healthz.

export interface RedisAddress {
  host: string;
  port: number;
  db: number;
  username?: string;
  password?: string;
  /** rediss://: TLS, the server's certificate checked against the host name. */
  tls: boolean;
  /** The address as shown to people: no password. */
  display: string;
}

export class RedisUrlError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "RedisUrlError";
  }
}

/** Parses a Redis URL; throws RedisUrlError saying which part is wrong. */
export function parseRedisUrl(text: string): RedisAddress {
  let u: URL;
  try {
    u = new URL(text);
  } catch {
    throw new RedisUrlError(`expected redis://[:PASSWORD@]HOST:PORT[/DB] or rediss://..., got ${JSON.stringify(text)}`);
  }
  if (u.protocol !== "redis:" && u.protocol !== "rediss:") {
    throw new RedisUrlError(`expected a redis:// or rediss:// URL, got ${JSON.stringify(u.protocol)} in ${text}`);
  }
  const host = u.hostname.replace(/^\[(.*)\]$/, "$1");
  if (!host) throw new RedisUrlError(`no host in ${JSON.stringify(text)}`);
  const port = u.port === "" ? 6379 : Number(u.port);
  const path = u.pathname.replace(/^\//, "");
  if (path !== "" && !/^\d+$/.test(path)) {
    throw new RedisUrlError(`the database after the host must be a number (/0../15), got /${path}`);
  }
  const db = path === "" ? 0 : Number(path);
  if (u.search || u.hash) throw new RedisUrlError(`no query or fragment expected in a Redis URL, got ${text}`);
  const username = u.username ? decodeURIComponent(u.username) : undefined;
  const password = u.password ? decodeURIComponent(u.password) : undefined;
  const auth = username || password ? `${username ?? ""}${password ? ":***" : ""}@` : "";
  const shownHost = host.includes(":") ? `[${host}]` : host;
  return {
    host,
    port,
    db,
    username,
    password,
    tls: u.protocol === "rediss:",
    display: `${u.protocol}//${auth}${shownHost}:${port}${db ? `/${db}` : ""}`,
  };
}

/** ioredis options for an address (the caller adds its own retry and queue settings). */
export function ioredisOptions(a: RedisAddress): {
  host: string;
  port: number;
  db: number;
  username?: string;
  password?: string;
  tls?: { servername: string };
} {
  return {
    host: a.host,
    port: a.port,
    db: a.db,
    ...(a.username ? { username: a.username } : {}),
    ...(a.password ? { password: a.password } : {}),
    ...(a.tls ? { tls: { servername: a.host } } : {}),
  };
}
