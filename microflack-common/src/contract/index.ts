// The platform's registry and event contract: the etcd key layout and name patterns (./constants),
// and the models and Socket.IO payloads as zod schemas with the TypeScript types inferred from them.
// Services, the LB configurator and the socketio gateway import this; the browser client imports
// only its types (erased) and ./constants (so no zod goes into the bundle).
import { z } from 'zod';
import {
  BACKEND_OPTIONS,
  EVENT_TOKEN,
  EVENT_TOKEN_MAX,
  EVENTS,
  IDEMPOTENCY_KEY,
  INSTANCE_NAME,
  isLocation,
  LOCATION_MAX,
  parseUpstream,
  SERVICE_NAME,
} from './constants.js';

export * from './constants.js';
import { User as UserModel } from '../api/users.js';
import { Message as MessageModel } from '../api/messages.js';
import { Room as RoomModel } from '../api/rooms.js';

// ---- etcd names and values, as schemas (config and registration validate with these)

export const ServiceNameSchema = z
  .string()
  .regex(SERVICE_NAME, 'must be a lower-case letter, then up to 62 of a-z 0-9 _ -');
export const InstanceNameSchema = z
  .string()
  .regex(INSTANCE_NAME, 'must be a letter or digit, then up to 63 of A-Z a-z 0-9 _ . -');
export const LocationSchema = z
  .string()
  .refine(
    isLocation,
    `must be a path of A-Z a-z 0-9 _ ~ - . starting with /, without //, . segments or a trailing /, at most ${LOCATION_MAX} characters`,
  );
/** `host:port` (IPv4 address or host name) as an upstream key's value starts. */
export const UpstreamAddressSchema = z.string().refine((v) => {
  const up = parseUpstream(v);
  return typeof up !== 'string' && up.address === v;
}, 'must be host:port, with an IPv4 address or host name and a port 1-65535');
export const BalanceSchema = z.enum(BACKEND_OPTIONS.balance);

// ---- models, as the REST API answers them and updated_model carries them

// One declaration of each model: the REST contract's (./api), strict, so that a field the API does
// not document never reaches a browser through an event either.
export const UserSchema = UserModel;
export type User = z.output<typeof UserSchema>;

export const MessageSchema = MessageModel;
export type Message = z.output<typeof MessageSchema>;

export const RoomSchema = RoomModel;
export type Room = z.output<typeof RoomSchema>;

// ---- Socket.IO payloads

export const UpdatedModelEventSchema = z.discriminatedUnion('class', [
  z.object({ class: z.literal('User'), model: UserSchema }),
  z.object({ class: z.literal('Message'), model: MessageSchema }),
  z.object({ class: z.literal('Room'), model: RoomSchema }),
]);
/** `updated_model`: `{ class: 'User' | 'Message' | 'Room', model }` (Room: to its members only). */
export type UpdatedModelEvent = z.infer<typeof UpdatedModelEventSchema>;
export type ModelOf<C extends UpdatedModelEvent['class']> = Extract<
  UpdatedModelEvent,
  { class: C }
>['model'];

/** The token argument of ping_user and post_message. */
export const EventTokenSchema = z
  .string({ error: 'token required' })
  .min(1, 'token required')
  .max(EVENT_TOKEN_MAX, 'malformed token')
  .regex(EVENT_TOKEN, 'malformed token');

const IDEMPOTENCY_KEY_DATA_ERROR =
  "idempotency_key must be 1 to 64 letters, digits, '-', '_', '.' or ':'";

/**
 * post_message's data: posted as the body of POST /api/messages (other fields pass through), but
 * `idempotency_key`, which travels as the post's Idempotency-Key header.
 */
export const PostMessageDataSchema = z.looseObject(
  {
    source: z.string({ error: 'message source must be a string' }),
    idempotency_key: z
      .string({ error: IDEMPOTENCY_KEY_DATA_ERROR })
      .regex(IDEMPOTENCY_KEY, IDEMPOTENCY_KEY_DATA_ERROR)
      .optional(),
  },
  { error: 'message data must be an object' },
);
export type PostMessageData = z.infer<typeof PostMessageDataSchema>;

/** typing from a client. */
export const TypingDataSchema = z.object(
  {
    room_id: z
      .int({ error: 'room_id must be a room id' })
      .positive('room_id must be a room id')
      .max(999999999999999, 'room_id must be a room id'),
  },
  { error: 'typing data must be an object' },
);
export type TypingData = z.infer<typeof TypingDataSchema>;
/** typing to the room's other members. */
export const TypingEventSchema = z.strictObject({
  room_id: z.int().positive(),
  user_id: z.int().positive(),
});
export type TypingEvent = z.infer<typeof TypingEventSchema>;

/** What an acknowledgement carries when the event failed. */
export const EventErrorSchema = z.object({ error: z.string(), status: z.number().int() });
export type EventError = z.infer<typeof EventErrorSchema>;

export const PingUserAckSchema = z.union([z.object({ ok: z.literal(true) }), EventErrorSchema]);
export type PingUserAck = z.infer<typeof PingUserAckSchema>;
export const PostMessageAckSchema = z.union([MessageSchema, EventErrorSchema]);
export type PostMessageAck = z.infer<typeof PostMessageAckSchema>;

/** Events the server emits (Socket.IO's EmitEvents on the server, ListenEvents on a client). */
export interface ServerToClientEvents {
  [EVENTS.updatedModel]: (event: UpdatedModelEvent) => void;
  [EVENTS.expiredToken]: () => void;
  [EVENTS.typing]: (event: TypingEvent) => void;
}

/** Events a client emits; the server checks every argument (see the schemas above). */
export interface ClientToServerEvents {
  [EVENTS.pingUser]: (token: string, ack?: (answer: PingUserAck) => void) => void;
  [EVENTS.postMessage]: (
    data: PostMessageData,
    token: string,
    ack: (answer: PostMessageAck) => void,
  ) => void;
  [EVENTS.typing]: (data: TypingData) => void;
}
