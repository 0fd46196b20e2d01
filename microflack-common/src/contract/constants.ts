// The platform's contract as plain constants and pure functions, importing nothing: the etcd key
// layout, the names and values the load balancer accepts there, and the Socket.IO event names.
// The browser client bundles from this file only (see ./index.ts for the zod schemas and types).

// ---- etcd: service registry, read by the load balancer (the original's layout)

export const SERVICES_PREFIX = '/services/';

/** `/services/<service>/location`: the URL prefix routed to the service (`/`: the default). */
export function locationKey(service: string): string {
  return `${SERVICES_PREFIX}${service}/location`;
}

/** `/services/<service>/backend/<option>`: an HAProxy backend option (see BACKEND_OPTIONS). */
export function backendOptionKey(service: string, option: string): string {
  return `${SERVICES_PREFIX}${service}/backend/${option}`;
}

/** `/services/<service>/upstream/<instance>`: `host:port[ weight N]`, on the instance's lease. */
export function upstreamKey(service: string, instance: string): string {
  return `${SERVICES_PREFIX}${service}/upstream/${instance}`;
}

/** Every key of one service, with the trailing slash: `/services/<service>/`. */
export function serviceKeysPrefix(service: string): string {
  return `${SERVICES_PREFIX}${service}/`;
}

/** A service name, as the first segment under /services/. */
export const SERVICE_NAME = /^[a-z][a-z0-9_-]{0,62}$/;
/**
 * An instance name, as the last segment of an upstream key. Host-derived by default
 * (hostname-pid-hex), so upper case and dots are allowed, but never first.
 */
export const INSTANCE_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;
export const INSTANCE_NAME_MAX = 64;
/** A path prefix of unreserved URL characters; no `//`, `.` segments or trailing slash (but `/`). */
export const LOCATION =
  /^\/(?:[A-Za-z0-9_~-][A-Za-z0-9._~-]*(?:\/[A-Za-z0-9_~-][A-Za-z0-9._~-]*)*)?$/;
export const LOCATION_MAX = 200;
/** The location whose service is sticky (a Socket.IO session lives on one instance). */
export const SOCKETIO_LOCATION = '/socket.io';

const HOSTNAME =
  /^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;
const IPV4 = /^(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?:\.(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;
/** An upstream key's value: `host:port`, optionally followed by ` weight N`. */
export const UPSTREAM = /^([^:\s]+):(\d{1,5})(?: weight (\d{1,3}))?$/;
export const UPSTREAM_WEIGHT_MAX = 256;

export function isLocation(value: string): boolean {
  return value.length <= LOCATION_MAX && LOCATION.test(value);
}

/** An upstream value as the load balancer reads it, or why it refuses it. */
export function parseUpstream(value: string): { address: string; weight: number } | string {
  const m = UPSTREAM.exec(value);
  if (!m) return 'upstream is not "host:port" optionally followed by " weight N"';
  const [, host = '', portText = '', weightText] = m;
  if (!IPV4.test(host) && (!HOSTNAME.test(host) || /^[\d.]+$/.test(host)))
    return 'upstream host is not an IPv4 address or hostname';
  const port = Number(portText);
  if (port < 1 || port > 65535) return 'upstream port is not 1-65535';
  const weight = weightText === undefined ? 1 : Number(weightText);
  if (weight > UPSTREAM_WEIGHT_MAX) return `upstream weight is not 0-${UPSTREAM_WEIGHT_MAX}`;
  return { address: `${host}:${port}`, weight };
}

/** Backend options an etcd key may set, with the values each accepts (the first is the default). */
export const BACKEND_OPTIONS = {
  balance: ['roundrobin', 'static-rr', 'leastconn', 'first', 'source', 'random'],
} as const;
export type BackendOption = keyof typeof BACKEND_OPTIONS;
export type BalanceAlgorithm = (typeof BACKEND_OPTIONS.balance)[number];
export const DEFAULT_BALANCE: BalanceAlgorithm = 'roundrobin';

export function isBackendOption(option: string): option is BackendOption {
  return Object.hasOwn(BACKEND_OPTIONS, option);
}

/**
 * Turns any host name into the start of a valid instance name: characters the pattern refuses
 * become `-`, and it starts with a letter or digit. Never empty.
 */
export function sanitizeInstanceName(name: string, maxLength = INSTANCE_NAME_MAX): string {
  const cleaned = name
    .replace(/[^A-Za-z0-9_.-]+/g, '-')
    .replace(/^[^A-Za-z0-9]+/, '')
    .slice(0, Math.max(1, maxLength));
  return cleaned === '' ? 'host' : cleaned;
}

// ---- etcd: revocations, watched by every service that checks tokens

/** `/revoked-tokens/<jti>` = '', leased until the token expires (plus slack). */
export const REVOKED_TOKENS_PREFIX = '/revoked-tokens/';
/**
 * `/revoked-users/<user id>` = the last second (Unix time) whose tokens are revoked. Not in the
 * original: "revoke all" for a user.
 */
export const REVOKED_USERS_PREFIX = '/revoked-users/';
/** The prefix one watch covers both with. */
export const REVOKED_PREFIX = '/revoked-';

export function revokedTokenKey(jti: string): string {
  return `${REVOKED_TOKENS_PREFIX}${jti}`;
}

export function revokedUserKey(userId: number): string {
  return `${REVOKED_USERS_PREFIX}${userId}`;
}

// ---- etcd: the users service's presence sweep leader

/**
 * The etcd3 election whose leader runs the presence sweep: etcd3 keeps each candidate under
 * `election/microflack-users-sweep/<lease id>` (value: its instance name), the oldest leading.
 */
export const PRESENCE_ELECTION = 'microflack-users-sweep';

// ---- Socket.IO events

/** Every event name, in both directions (payloads: ./index.ts). */
export const EVENTS = {
  /** Server to client: a user or message changed; `{ class, model }`. */
  updatedModel: 'updated_model',
  /** Server to client: the token last sent was refused; no payload. */
  expiredToken: 'expired_token',
  /** Client to server: `(token, ack?)`, keeps the user online. */
  pingUser: 'ping_user',
  /** Client to server: `({ source }, token, ack?)`, posts a message. */
  postMessage: 'post_message',
  /**
   * Both ways: a client sends `{ room_id }` while its user types; the room's other members get
   * `{ room_id, user_id }` (at most one a second per user).
   */
  typing: 'typing',
} as const;

export const MODEL_CLASSES = ['User', 'Message', 'Room'] as const;

// ---- catching up after a reconnect (what a client that follows the events does)

/**
 * A reconnected client asks for what changed (`updated_since`) from this many seconds before the
 * newest `updated_at` it had seen: timestamps are whole seconds and `updated_since` is exclusive,
 * so a change made in the same second is not missed; duplicates merge by id.
 */
export const RESYNC_OVERLAP_SECONDS = 2;
/**
 * ...and once more, from the same point, this long after the reconnect: a change shows through
 * every instance within 1 s (an answer from memory may be up to ANSWER_CACHE_MAX_AGE_MS old, and
 * the other instances hear of a write through Redis), while its event may have been missed during
 * the reconnect itself.
 */
export const RESYNC_AGAIN_MS = 1500;

// ---- Socket.IO rooms (the gateway's groups of sockets, named here for services that emit to them)

/** Every socket of one signed-in user that asked for rooms (a token in the handshake). */
export function userSocketRoom(userId: number): string {
  return `user:${userId}`;
}

/** The sockets of a room's members; general's (1) only carries typing, its messages go to all. */
export function roomSocketRoom(roomId: number): string {
  return `room:${roomId}`;
}
export type ModelClass = (typeof MODEL_CLASSES)[number];

/** The longest token an event may carry; tokens are base64url parts joined by dots. */
export const EVENT_TOKEN_MAX = 4096;
export const EVENT_TOKEN = /^[A-Za-z0-9._-]+$/;

// ---- Idempotency-Key (POST /api/messages, and post_message's idempotency_key)

/** The header a poster's key for one post travels in (lower case, as Node gives it). */
export const IDEMPOTENCY_KEY_HEADER = 'idempotency-key';
/** A poster's key for one post: a UUID will do. */
export const IDEMPOTENCY_KEY = /^[A-Za-z0-9_.:-]{1,64}$/;
