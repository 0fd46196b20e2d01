// Browser events in (ping_user, post_message, typing, disconnect), answered by calling users and
// messages through the load balancer; updated_model events out, fed to every instance by the Redis
// adapter. A socket that brings a token in its handshake (`auth: { token }`) joins its user's
// Socket.IO room and one per room it is a member of: rooms other than general are heard only there.
// A socket without one (the original's clients, anonymous readers) hears general only.
//
// Presence: a socket whose token a service accepted is in the Socket.IO room of its user
// (`user:<id>`). When it disconnects, the user is signed off (DELETE /api/users/me) only if no
// other socket of theirs is left in that room on any instance (the adapter asks every instance
// through Redis): closing one of two tabs leaves the user online. If the others cannot be asked in
// time, the user is signed off as before; the other tab's next ping puts them back online.
import { randomUUID } from 'node:crypto';
import { Server, type Socket } from 'socket.io';
import { createAdapter } from '@socket.io/redis-adapter';
import type { Redis } from 'ioredis';
import {
  counter,
  EventTokenSchema,
  EVENTS,
  IDEMPOTENCY_KEY_HEADER,
  logger,
  PostMessageDataSchema,
  roomSocketRoom,
  SOCKETIO_LOCATION,
  TypingDataSchema,
  userSocketRoom,
  type ClientToServerEvents,
  type EventError,
  type LbClient,
  type LbResponse,
  type PingUserAck,
  type PostMessageAck,
  type PostMessageData,
  type ServerToClientEvents,
  unverifiedUserId,
  withTimeout,
} from '@microflack/common';

const log = logger.child({ module: 'gateway' });

/** The largest event a client may send; a bigger one closes that client's connection. */
export const MAX_PAYLOAD_BYTES = 64 * 1024;
// A client waiting on this many answers gets refused rather than queueing work on the services.
const MAX_IN_FLIGHT_PER_SOCKET = 8;
// Shorter than Socket.IO's default ack timeout on clients, so an answer always comes.
const LB_CALL_TIMEOUT_MS = 4000;
// How long a disconnect waits for the other instances to say whether the user has sockets there.
const PRESENCE_QUERY_TIMEOUT_MS = 2000;

const events = counter('socketio_events_total', 'Socket.IO events received, by event and outcome', [
  'event',
  'outcome',
]);

export interface GatewayDeps {
  lb: LbClient;
  /** Two connections: a subscribed Redis connection cannot publish. */
  pub: Redis;
  sub: Redis;
}

type Ack = (answer: unknown) => void;

/** A client's events as they arrive: named by the contract, every argument still unchecked. */
type ClientEventsUnchecked = {
  [E in keyof ClientToServerEvents]: (...args: unknown[]) => void;
};
type GatewaySocket = Socket<ClientEventsUnchecked, ServerToClientEvents>;

interface SocketData {
  /** The last token that the users service accepted, used to sign the user out on disconnect. */
  token?: string;
  /** Set once a token of this user was accepted; the socket is then in its user's room. */
  userId?: number;
  inFlight: number;
}

/** At most one typing event a second per user, across every gateway instance; the rest dropped. */
export const TYPING_INTERVAL_MS = 1000;
/** The Redis key that holds a user's turn to type for TYPING_INTERVAL_MS (`SET NX PX`). */
export const typingKey = (userId: number) => `mf:typing:${userId}`;
// How long a typing event waits for Redis to give the turn; past that, this instance's own count
// decides (typing is a hint: a second one a second when Redis is slow is better than none).
const TYPING_REDIS_TIMEOUT_MS = 300;
const ROOM_PREFIX = 'room:';

interface Memberships {
  user_id: number;
  rooms: number[];
}

class EventRefused extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

/** A contract schema (zod), as far as the gateway uses one. */
interface Schema<T> {
  safeParse(
    value: unknown,
  ): { success: true; data: T } | { success: false; error: { issues: Array<{ message: string }> } };
}

/** An event argument checked against the contract's schema; refused with the schema's message. */
function read<T>(schema: Schema<T>, value: unknown): T {
  const result = schema.safeParse(value);
  if (!result.success) throw new EventRefused(400, result.error.issues[0]?.message ?? 'bad event');
  return result.data;
}

function bearer(token: string): { headers: Record<string, string>; timeoutMs: number } {
  return { headers: { Authorization: `Bearer ${token}` }, timeoutMs: LB_CALL_TIMEOUT_MS };
}

function errorOf(res: LbResponse): EventError {
  const body = res.body as { error?: unknown } | undefined;
  const message = typeof body?.error === 'string' ? body.error : `request failed (${res.status})`;
  return { error: message, status: res.status };
}

export function createSocketServer({
  lb,
  pub,
  sub,
}: GatewayDeps): Server<ClientEventsUnchecked, ServerToClientEvents> {
  const io = new Server<ClientEventsUnchecked, ServerToClientEvents>({
    path: SOCKETIO_LOCATION,
    serveClient: false,
    maxHttpBufferSize: MAX_PAYLOAD_BYTES,
    adapter: createAdapter(pub, sub, { requestsTimeout: PRESENCE_QUERY_TIMEOUT_MS }),
  });

  // Redis pub/sub keeps nothing: events published while this instance's subscription was down are
  // gone, and its clients, still connected, would never know. Once the subscription is back every
  // client is made to reconnect; clients fetch what changed (updated_since) on each connect.
  let subscriptionLost = false;
  sub.on('close', () => (subscriptionLost = true));
  sub.on('ready', () => {
    if (!subscriptionLost) return;
    subscriptionLost = false;
    log.info({ clients: io.sockets.sockets.size }, 'redis back: clients reconnect to resync');
    for (const socket of io.sockets.sockets.values()) socket.conn.close();
  });

  /** Leaves every room but the socket's own: it hears general only from now on. */
  function leaveRooms(socket: GatewaySocket): void {
    for (const room of socket.rooms) if (room !== socket.id) socket.leave(room);
    delete (socket.data as SocketData).userId;
  }

  function expired(socket: GatewaySocket, token: string): void {
    if ((socket.data as SocketData).token === token) delete (socket.data as SocketData).token;
    leaveRooms(socket);
    socket.emit(EVENTS.expiredToken);
  }

  /** The token was accepted by a service: remember it, and be in the room of its user. */
  function accepted(socket: GatewaySocket, token: string): void {
    const data = socket.data as SocketData;
    data.token = token;
    const id = unverifiedUserId(token);
    if (id === undefined || id === data.userId) return;
    if (data.userId !== undefined) void socket.leave(userSocketRoom(data.userId));
    data.userId = id;
    void socket.join(userSocketRoom(id));
  }

  /** Signs the user off, unless another socket of theirs is still connected to any instance. */
  async function signOff(data: SocketData, token: string, reason: string): Promise<void> {
    const id = data.userId ?? unverifiedUserId(token);
    if (id !== undefined) {
      try {
        const others = await io.in(userSocketRoom(id)).fetchSockets();
        if (others.length > 0) {
          log.debug({ reason, others: others.length }, 'user still connected elsewhere');
          return;
        }
      } catch (err) {
        log.warn({ err: (err as Error).message }, 'could not ask the other instances; signing off');
      }
    }
    const res = await lb.delete('/api/users/me', bearer(token));
    log.debug({ status: res.status, reason }, 'user signed off on disconnect');
  }

  async function memberships(token: string): Promise<Memberships | number> {
    const res = await lb.get<Memberships>('/api/rooms/memberships', bearer(token));
    return res.status === 200 ? res.body : res.status;
  }

  /**
   * Joins the socket to its user's room, then to each of the user's rooms; then asks again and
   * leaves any room no longer listed. A removal's socketsLeave published between the first answer
   * and the joins would be undone by them; the second answer, asked after the joins, no longer
   * lists that room, so the socket leaves it (and one added meanwhile was joined by socketsJoin,
   * since the socket was already in its user's room).
   */
  async function joinRooms(socket: GatewaySocket, token: string): Promise<void> {
    const first = await memberships(token);
    if (typeof first === 'number') {
      log.debug({ status: first }, 'handshake token not accepted: general only');
      if (first === 401) socket.emit(EVENTS.expiredToken);
      return;
    }
    if (!socket.connected) return;
    (socket.data as SocketData).userId = first.user_id;
    socket.join(userSocketRoom(first.user_id));
    socket.join(first.rooms.map(roomSocketRoom));
    const second = await memberships(token);
    if (typeof second === 'number') {
      leaveRooms(socket);
      return;
    }
    const listed = new Set(second.rooms.map(roomSocketRoom));
    for (const room of socket.rooms) {
      if (room.startsWith(ROOM_PREFIX) && !listed.has(room)) socket.leave(room);
    }
  }

  const lastTyping = new Map<number, number>();
  /** Whether this user's typing turn was free on Redis (true when Redis does not answer in time). */
  async function sharedTypingTurn(userId: number): Promise<boolean> {
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<'late'>((resolve) => {
      timer = setTimeout(() => resolve('late'), TYPING_REDIS_TIMEOUT_MS);
    });
    try {
      const set = pub.set(typingKey(userId), '1', 'PX', TYPING_INTERVAL_MS, 'NX');
      set.catch(() => undefined);
      const answer = await Promise.race([set, late]);
      return answer !== null;
    } catch {
      return true;
    } finally {
      clearTimeout(timer);
    }
  }
  async function typing(
    socket: GatewaySocket,
    args: unknown[],
  ): Promise<{ ok: true } | EventError> {
    const { room_id: roomId } = read(TypingDataSchema, args[0]);
    const userId = (socket.data as SocketData).userId;
    if (userId === undefined) throw new EventRefused(401, 'authentication required');
    const room = roomSocketRoom(roomId);
    if (!socket.rooms.has(room)) throw new EventRefused(403, 'not a member');
    // This instance's own count first (no Redis round trip for a typist's every key), then the
    // turn shared by every instance, so that a user with sockets on two gateways is relayed once.
    const now = Date.now();
    if (now - (lastTyping.get(userId) ?? 0) < TYPING_INTERVAL_MS) return { ok: true };
    lastTyping.set(userId, now);
    if (lastTyping.size > 10000) {
      for (const [u, at] of lastTyping) if (now - at >= TYPING_INTERVAL_MS) lastTyping.delete(u);
    }
    if (!(await sharedTypingTurn(userId))) return { ok: true };
    io.to(room)
      .except(userSocketRoom(userId))
      .emit(EVENTS.typing, { room_id: roomId, user_id: userId });
    return { ok: true };
  }

  async function pingUser(socket: GatewaySocket, args: unknown[]): Promise<PingUserAck> {
    const token = read(EventTokenSchema, args[0]);
    const res = await lb.put('/api/users/me', bearer(token));
    if (res.status === 401) {
      expired(socket, token);
      return errorOf(res);
    }
    if (res.status >= 400) return errorOf(res);
    accepted(socket, token);
    return { ok: true };
  }

  async function postMessage(socket: GatewaySocket, args: unknown[]): Promise<PostMessageAck> {
    const { idempotency_key: clientKey, ...body }: PostMessageData = read(
      PostMessageDataSchema,
      args[0],
    );
    const token = read(EventTokenSchema, args[1]);
    // Every post carries a key (the client's, which it reuses when it sends the same draft again,
    // or one of the gateway's own), so the call may be retried whatever happened to a try: a
    // second try of a post that was written answers with that message, never a copy.
    const call = bearer(token);
    const res = await lb.post('/api/messages', {
      ...call,
      headers: { ...call.headers, [IDEMPOTENCY_KEY_HEADER]: clientKey ?? randomUUID() },
      body,
      idempotent: true,
    });
    if (res.status === 401) {
      expired(socket, token);
      return errorOf(res);
    }
    if (res.status >= 400) return errorOf(res);
    accepted(socket, token);
    return res.body as PostMessageAck;
  }

  // Every event goes through here: arguments are checked, failures answer the sender only, and
  // nothing a client sends can throw out of a listener (which would end the process).
  function on(
    socket: GatewaySocket,
    event: keyof ClientToServerEvents,
    handler: (socket: GatewaySocket, args: unknown[]) => Promise<unknown>,
  ): void {
    socket.on(event, (...args: unknown[]) => {
      const last = args[args.length - 1];
      const ack = typeof last === 'function' ? (args.pop() as Ack) : undefined;
      const data = socket.data as SocketData;
      const answer = (outcome: string, value: unknown) => {
        events.inc({ event, outcome });
        try {
          ack?.(value);
        } catch (err) {
          log.warn({ err, event }, 'acknowledgement failed');
        }
      };
      if (data.inFlight >= MAX_IN_FLIGHT_PER_SOCKET) {
        answer('refused', { error: 'too many requests', status: 429 });
        return;
      }
      data.inFlight++;
      handler(socket, args)
        .then(
          (value) =>
            answer(value && typeof value === 'object' && 'error' in value ? 'error' : 'ok', value),
          (err: unknown) => {
            if (err instanceof EventRefused) {
              answer('refused', { error: err.message, status: err.status });
            } else {
              log.warn({ err: (err as Error).message, event }, 'event failed');
              answer('unavailable', { error: 'service unavailable', status: 503 });
            }
          },
        )
        .finally(() => data.inFlight--);
    });
  }

  io.on('connection', (socket) => {
    socket.data = { inFlight: 0 } satisfies SocketData;
    on(socket, EVENTS.pingUser, pingUser);
    on(socket, EVENTS.postMessage, postMessage);
    on(socket, EVENTS.typing, typing);
    const auth = socket.handshake.auth as { token?: unknown } | undefined;
    if (auth?.token !== undefined) {
      const token = EventTokenSchema.safeParse(auth.token);
      if (token.success) {
        joinRooms(socket, token.data).catch((err: Error) => {
          log.warn({ err: err.message }, 'rooms not joined: general only');
          leaveRooms(socket);
        });
      }
    }
    socket.on('disconnect', (reason) => {
      const data = socket.data as SocketData;
      if (!data.token) return;
      // The user goes offline, unless connected elsewhere; a client that reconnects elsewhere
      // pings again at once.
      signOff(data, data.token, reason).catch((err: Error) =>
        log.warn({ err: err.message }, 'could not mark the user offline'),
      );
    });
  });
  return io;
}

/** How long an instance waits at start for its Redis subscription before registering anyway. */
export const SUBSCRIBE_WAIT_MS = 5000;

/** Whether the subscriptions `sub` was asked for are in place, within `timeoutMs` (false if not). */
export async function subscribed(sub: Redis, timeoutMs: number): Promise<boolean> {
  const ok = await withTimeout(sub.ping(), timeoutMs).then(
    () => true,
    () => false,
  );
  if (!ok) log.warn({ waitedMs: timeoutMs }, 'Redis subscription not confirmed; starting anyway');
  return ok;
}
