// The MicroFlack client: sign in, read and post messages in rooms and direct conversations, see
// who is online and typing, react, delete, search; all kept current by Socket.IO (or, when the
// page says so, by polling the REST API every second as the original did).
import { io, type Socket } from 'socket.io-client';
import {
  EVENTS,
  IDEMPOTENCY_KEY_HEADER,
  RESYNC_AGAIN_MS,
  RESYNC_OVERLAP_SECONDS,
  SOCKETIO_LOCATION,
} from '@microflack/common/contract/constants';
import type {
  ClientToServerEvents,
  PostMessageAck,
  ServerToClientEvents,
} from '@microflack/common/contract';
import {
  call,
  errorMessage,
  fetchHistory,
  fetchList,
  MAX_SOURCE_LENGTH,
  type Message,
  type Room,
  type User,
} from './api.js';
import {
  clearMessages,
  element,
  nicknameKeyOf,
  prependOlder,
  renameAuthors,
  renderMessages,
  renderRooms,
  renderSearchResults,
  renderUsers,
  roomLabel,
  scrollToBottom,
  toggleReactionPicker,
  type MessageContext,
} from './views.js';

const PING_INTERVAL_MS = 30000;
const POLL_INTERVAL_MS = 1000;
const ACK_TIMEOUT_MS = 8000;
const TOKEN_KEY = 'microflack-token';
const GENERAL = 1;
const ROOMS_PAGE = 100;
/** Others' typing is shown this long after their last keystroke event. */
const TYPING_SHOWN_MS = 3000;
/** One typing event per this while the user types (the gateway relays one a second at most). */
const TYPING_SEND_MS = 1500;
/** The counter appears this close to the limit. */
const COUNT_FROM = MAX_SOURCE_LENGTH - 500;
/** Older history loads when the reader is this close to the top. */
const LOAD_OLDER_PX = 150;
const SEARCH_PAGE = 20;

const mode = document.body.dataset.mode === 'polling' ? 'polling' : 'socketio';
const users = new Map<number, User>();
/** The messages of the room on screen, by id. */
const messages = new Map<number, Message>();
const rooms = new Map<number, Room>();
let roomsNext: string | undefined;
let currentRoom = GENERAL;
let usersSeen: number | undefined;
let messagesSeen: number | undefined;
/** Whether the room on screen has older history to load, and whether it is loading. */
let olderMore = false;
let olderLoading = false;
let token: string | null = sessionStorage.getItem(TOKEN_KEY);
let pingTimer: number | undefined;
let socket: Socket<ServerToClientEvents, ClientToServerEvents> | undefined;

const loginForm = element<HTMLFormElement>('#login-form');
const loginError = element<HTMLElement>('#login-error');
const postForm = element<HTMLFormElement>('#post-form');
const postInput = postForm.elements.namedItem('source') as HTMLInputElement;
const postError = element<HTMLElement>('#post-error');
const postCount = element<HTMLElement>('#post-count');
const status = element<HTMLElement>('#status');
const messagesList = element<HTMLUListElement>('#messages');
const historyStatus = element<HTMLElement>('#history-status');

function myUserId(): number | undefined {
  if (!token) return undefined;
  try {
    const payload = token.split('.')[1] ?? '';
    const json = atob(payload.replace(/-/g, '+').replace(/_/g, '/'));
    const id = (JSON.parse(json) as { user_id?: unknown }).user_id;
    return typeof id === 'number' ? id : undefined;
  } catch {
    return undefined;
  }
}

function nicknameOf(userId: number): string {
  return users.get(userId)?.nickname ?? `user ${userId}`;
}

function context(): MessageContext {
  const id = myUserId();
  const me = id === undefined ? undefined : users.get(id);
  return { myId: id, myKey: me ? nicknameKeyOf(me.nickname) : undefined, nicknameOf };
}

function setStatus(text: string): void {
  status.textContent = text;
}

function showRooms(): void {
  renderRooms([...rooms.values()], currentRoom, myUserId(), nicknameOf);
  element('#more-rooms').hidden = roomsNext === undefined;
}

// ---- the model: changes merge by id, an older copy never replaces a newer one

function mergeUsers(list: User[]): void {
  const changed: User[] = [];
  const renamed = new Set<number>();
  for (const user of list) {
    const known = users.get(user.id);
    if (known && known.updated_at > user.updated_at) continue;
    if (known?.nickname !== user.nickname) renamed.add(user.id);
    users.set(user.id, user);
    changed.push(user);
  }
  if (changed.length === 0) return;
  usersSeen = Math.max(usersSeen ?? 0, ...changed.map((u) => u.updated_at));
  renderUsers(users.values(), myUserId());
  if (renamed.size > 0) {
    renameAuthors(context(), renamed, (id) => messages.get(id));
    if ([...rooms.values()].some((r) => r.direct)) showRooms();
    showRoomHead();
  }
  showAccount();
}

function mergeMessages(list: Message[]): void {
  const changed: Message[] = [];
  let unknownAuthor = false;
  for (const message of list) {
    if (message.room_id !== currentRoom) continue;
    const known = messages.get(message.id);
    if (known && known.updated_at > message.updated_at) continue;
    messages.set(message.id, message);
    changed.push(message);
    messagesSeen = Math.max(messagesSeen ?? 0, message.updated_at);
    if (!users.has(message.user_id)) unknownAuthor = true;
  }
  renderMessages(changed, context());
  if (changed.length > 0) scheduleMarkRead();
  if (unknownAuthor) void syncUsers();
}

/**
 * The second catch-up after a reconnect (RESYNC_AGAIN_MS later) asks from where the first did, not
 * from the newest change seen since: what it is for is older than the events heard meanwhile.
 */
let catchUpFrom: { users?: number; messages?: number; room: number } | undefined;

async function syncUsers(): Promise<void> {
  const seen =
    usersSeen === undefined ? undefined : Math.min(usersSeen, catchUpFrom?.users ?? usersSeen);
  const since = seen === undefined ? undefined : seen - RESYNC_OVERLAP_SECONDS;
  const res = await fetchList<User>('users', since, token);
  if (res.status === 401) return expired();
  mergeUsers(res.items);
}

/** The room on screen: the newest page the first time, afterwards what changed since. */
async function syncMessages(): Promise<void> {
  const room = currentRoom;
  if (messagesSeen === undefined) {
    const page = await fetchHistory(room, undefined, token);
    if (page.status === 401) return expired();
    if (page.status === 404) return leaveVanishedRoom(room);
    if (room !== currentRoom) return;
    olderMore = page.more;
    messagesSeen = 0; // a page came (perhaps empty): from now on, changes since
    mergeMessages(page.messages);
    scrollToBottom();
    return;
  }
  const from = catchUpFrom?.room === room ? catchUpFrom.messages : undefined;
  const since = Math.min(messagesSeen, from ?? messagesSeen) - RESYNC_OVERLAP_SECONDS;
  const res = await fetchList<Message>('messages', since, token, {
    room_id: String(room),
    limit: '200',
  });
  if (res.status === 401) return expired();
  if (res.status === 404) return leaveVanishedRoom(room);
  if (room === currentRoom) mergeMessages(res.items);
}

/** The list of rooms: general, the public ones and the user's own, with unread counts. */
/** Rooms this page created or opened itself, by when: a list asked for before may not have them. */
const openedHere = new Map<number, number>();

function keepRoom(room: Room): void {
  rooms.set(room.id, room);
  openedHere.set(room.id, performance.now());
}

async function syncRooms(): Promise<void> {
  const asked = performance.now();
  const res = await call<{ rooms?: Room[]; next?: string }>(
    'GET',
    `/api/rooms?limit=${ROOMS_PAGE}`,
    { token },
  );
  if (res.status === 401) return expired();
  if (res.status !== 200 || !Array.isArray(res.body.rooms)) return;
  // Rooms of the pages beyond the first that "More rooms" loaded stay, and so do those this page
  // created or opened while the list was on its way (it was answered from before them).
  const lastId = res.body.next ? (res.body.rooms.at(-1)?.id ?? 0) : Infinity;
  const listed = new Set(res.body.rooms.map((r) => r.id));
  const loadedMore = [...rooms.values()].filter(
    (r) => !listed.has(r.id) && (r.id > lastId || (openedHere.get(r.id) ?? -1) >= asked),
  );
  rooms.clear();
  for (const r of [...res.body.rooms, ...loadedMore]) rooms.set(r.id, r);
  roomsNext = typeof res.body.next === 'string' ? res.body.next : undefined;
  if (!rooms.has(currentRoom)) {
    // Gone from the list (left, removed, or a private room of someone signed out).
    void openRoom(GENERAL);
    return;
  }
  showRooms();
  showRoomHead();
}

async function moreRooms(): Promise<void> {
  if (!roomsNext?.startsWith('/api/rooms')) return;
  const res = await call<{ rooms?: Room[]; next?: string }>('GET', roomsNext, { token });
  if (res.status !== 200 || !Array.isArray(res.body.rooms)) return;
  for (const r of res.body.rooms) rooms.set(r.id, r);
  roomsNext = typeof res.body.next === 'string' ? res.body.next : undefined;
  showRooms();
}

let roomsTimer: number | undefined;
/** Room list refreshes are gathered: at most one every 700 ms, however many events came. */
function scheduleRooms(): void {
  roomsTimer ??= window.setTimeout(() => {
    roomsTimer = undefined;
    void syncRooms().catch(() => undefined);
  }, 700);
}

let syncing: Promise<void> | undefined;
/** Catches up on everything changed since the last sync; concurrent callers share one run. */
function sync(): Promise<void> {
  syncing ??= (async () => {
    try {
      await syncUsers();
      await syncRooms();
      await syncMessages();
    } catch {
      setStatus('Cannot reach the server, retrying…');
    } finally {
      syncing = undefined;
    }
  })();
  return syncing;
}

// ---- rooms: switching, history, read markers

function currentRoomModel(): Room | undefined {
  return rooms.get(currentRoom);
}

function showRoomHead(): void {
  const room = currentRoomModel();
  const me = myUserId();
  element('#room-name').textContent = room ? roomLabel(room, me, nicknameOf) : 'general';
  element('#room-topic').textContent = room?.topic ?? '';
  const signedIn = token !== null;
  const member = room?.member !== false;
  element('#join-room').hidden = !signedIn || member;
  element('#members-button').hidden = !signedIn || !room || !room.private || room.direct || !member;
  element('#leave-room').hidden = !signedIn || currentRoom === GENERAL || !member;
  postForm.hidden = !signedIn || !member;
  document.title = room ? `${roomLabel(room, me, nicknameOf)} · MicroFlack` : 'MicroFlack';
}

async function openRoom(roomId: number): Promise<void> {
  if (roomId !== currentRoom) {
    currentRoom = roomId;
    messages.clear();
    clearMessages();
    messagesSeen = undefined;
    olderMore = false;
    typists.clear();
    showTyping();
    postError.textContent = '';
  }
  const room = rooms.get(roomId);
  if (room) {
    // The counts of the room on screen are read: shown as none at once.
    room.unread = 0;
    room.mentions = 0;
  }
  showRooms();
  showRoomHead();
  await syncMessages();
}

/** The room on screen answered 404: it is gone or private to others now. */
async function leaveVanishedRoom(roomId: number): Promise<void> {
  rooms.delete(roomId);
  if (currentRoom === roomId && roomId !== GENERAL) {
    setStatus('That room is no longer available.');
    await openRoom(GENERAL);
  }
}

async function loadOlder(): Promise<void> {
  if (olderLoading || !olderMore || messagesSeen === undefined) return;
  const oldest = Math.min(...messages.keys());
  if (!Number.isFinite(oldest)) return;
  olderLoading = true;
  historyStatus.textContent = 'Loading older messages…';
  const room = currentRoom;
  try {
    const page = await fetchHistory(room, oldest, token);
    if (room !== currentRoom || page.status !== 200) return;
    olderMore = page.more;
    const fresh = page.messages.filter((m) => !messages.has(m.id));
    for (const m of fresh) messages.set(m.id, m);
    prependOlder(fresh, context());
    if (fresh.some((m) => !users.has(m.user_id))) void syncUsers();
  } finally {
    olderLoading = false;
    historyStatus.textContent = olderMore ? '' : 'Beginning of the room.';
  }
  // Still at the top (a short page, a tall screen): the next page too.
  if (messagesList.scrollTop < LOAD_OLDER_PX) void loadOlder();
}

let readTimer: number | undefined;
const marked = new Map<number, number>();
/** Moves the read marker to the newest message on screen, once the reader can see it. */
function scheduleMarkRead(): void {
  if (!token) return;
  window.clearTimeout(readTimer);
  readTimer = window.setTimeout(() => void markRead(), 300);
}

async function markRead(): Promise<void> {
  const room = currentRoomModel();
  if (!token || !room || room.member === false || document.visibilityState !== 'visible') return;
  const newest = Math.max(...messages.keys());
  if (!Number.isFinite(newest) || newest <= (marked.get(room.id) ?? room.last_read_id ?? 0)) {
    return;
  }
  marked.set(room.id, newest);
  const res = await call('PUT', `/api/rooms/${room.id}/read`, {
    token,
    body: { message_id: newest },
  });
  if (res.status === 204) {
    room.last_read_id = newest;
    room.unread = 0;
    room.mentions = 0;
    showRooms();
  } else {
    marked.delete(room.id);
  }
}

async function roomCall(method: string, path: string, body?: unknown): Promise<boolean> {
  const res = await call(method, path, { token, body });
  if (res.status === 401) {
    expired();
    return false;
  }
  if (res.status >= 300) {
    setStatus(errorMessage(res));
    return false;
  }
  return true;
}

async function joinRoom(): Promise<void> {
  const me = myUserId();
  if (me === undefined) return;
  if (await roomCall('PUT', `/api/rooms/${currentRoom}/members/${me}`)) {
    const room = currentRoomModel();
    if (room) room.member = true;
    showRoomHead();
    await syncRooms();
  }
}

async function leaveRoom(): Promise<void> {
  const me = myUserId();
  if (me === undefined || currentRoom === GENERAL) return;
  const left = currentRoom;
  if (await roomCall('DELETE', `/api/rooms/${left}/members/${me}`)) {
    const room = rooms.get(left);
    if (room?.private) rooms.delete(left);
    else if (room) room.member = false;
    await openRoom(GENERAL);
    await syncRooms();
  }
}

/** The direct conversation with a user, made the first time. */
async function openDirect(userId: number): Promise<void> {
  if (!token || userId === myUserId()) return;
  const res = await call<Room>('POST', '/api/rooms/direct', { token, body: { user_id: userId } });
  if (res.status === 401) return expired();
  if (res.status !== 200 && res.status !== 201) return setStatus(errorMessage(res));
  keepRoom(res.body);
  await openRoom(res.body.id);
  postInput.focus();
}

// ---- dialogs: a new room, the members of a private room

const roomDialog = element<HTMLDialogElement>('#room-dialog');
const roomForm = element<HTMLFormElement>('#room-form');
const membersDialog = element<HTMLDialogElement>('#members-dialog');

async function createRoom(): Promise<void> {
  const data = new FormData(roomForm);
  const body = {
    name: String(data.get('name') ?? ''),
    topic: String(data.get('topic') ?? ''),
    private: data.get('private') === 'on',
  };
  const res = await call<Room>('POST', '/api/rooms', { token, body });
  if (res.status === 401) return expired();
  if (res.status !== 201) {
    element('#room-form-error').textContent = errorMessage(res);
    return;
  }
  roomDialog.close();
  roomForm.reset();
  keepRoom(res.body);
  await openRoom(res.body.id);
  postInput.focus();
}

async function showMembers(): Promise<void> {
  const room = currentRoomModel();
  if (!room) return;
  const res = await call<Room>('GET', `/api/rooms/${room.id}`, { token });
  if (res.status !== 200) return setStatus(errorMessage(res));
  const me = myUserId();
  const list = element<HTMLUListElement>('#members');
  list.replaceChildren();
  for (const id of res.body.members ?? []) {
    const li = document.createElement('li');
    li.dataset.userId = String(id);
    const name = document.createElement('span');
    name.className = 'name';
    name.textContent = nicknameOf(id) + (id === res.body.created_by ? ' (creator)' : '');
    li.append(name);
    if (me === res.body.created_by && id !== me) {
      const remove = document.createElement('button');
      remove.type = 'button';
      remove.className = 'small secondary remove';
      remove.dataset.control = '';
      remove.textContent = 'Remove';
      remove.setAttribute('aria-label', `Remove ${nicknameOf(id)}`);
      li.append(remove);
    }
    list.append(li);
  }
  const names = element<HTMLDataListElement>('#nicknames');
  names.replaceChildren(
    ...[...users.values()].map((u) => {
      const option = document.createElement('option');
      option.value = u.nickname;
      return option;
    }),
  );
  element('#members-error').textContent = '';
  if (!membersDialog.open) membersDialog.showModal();
}

async function invite(nickname: string): Promise<void> {
  const key = nicknameKeyOf(nickname.trim());
  let user = [...users.values()].find((u) => nicknameKeyOf(u.nickname) === key);
  if (!user) {
    await syncUsers();
    user = [...users.values()].find((u) => nicknameKeyOf(u.nickname) === key);
  }
  const error = element('#members-error');
  if (!user) {
    error.textContent = `No one is called ${nickname.trim()}.`;
    return;
  }
  const res = await call('PUT', `/api/rooms/${currentRoom}/members/${user.id}`, { token });
  if (res.status !== 204) {
    error.textContent = errorMessage(res);
    return;
  }
  (
    element<HTMLFormElement>('#invite-form').elements.namedItem('nickname') as HTMLInputElement
  ).value = '';
  await showMembers();
}

async function removeMember(userId: number): Promise<void> {
  const res = await call('DELETE', `/api/rooms/${currentRoom}/members/${userId}`, { token });
  if (res.status !== 204) {
    element('#members-error').textContent = errorMessage(res);
    return;
  }
  await showMembers();
}

// ---- search

const searchPane = element<HTMLElement>('#search-pane');
const searchForm = element<HTMLFormElement>('#search-form');
const searchInput = searchForm.elements.namedItem('q') as HTMLInputElement;

function openSearch(): void {
  searchPane.hidden = false;
  searchInput.focus();
}

function closeSearch(): void {
  searchPane.hidden = true;
  element('#search-results').replaceChildren();
  element('#search-status').textContent = '';
  element('#search-button').focus();
}

async function search(q: string): Promise<void> {
  const statusLine = element('#search-status');
  statusLine.textContent = 'Searching…';
  const params = new URLSearchParams({ q, limit: String(SEARCH_PAGE) });
  const res = await call<{ messages?: Message[] }>('GET', `/api/messages?${params.toString()}`, {
    token,
  });
  if (res.status !== 200 || !Array.isArray(res.body.messages)) {
    statusLine.textContent = errorMessage(res);
    return;
  }
  const found = res.body.messages;
  if (found.some((m) => !users.has(m.user_id))) await syncUsers();
  statusLine.textContent =
    found.length === 0
      ? 'Nothing found.'
      : `${found.length}${found.length === SEARCH_PAGE ? '+' : ''} found, newest first.`;
  renderSearchResults(found, context(), (id) => {
    const room = rooms.get(id);
    return room ? roomLabel(room, myUserId(), nicknameOf) : `room ${id}`;
  });
}

// ---- typing

/** Who is typing in the room on screen, with when their indicator goes. */
const typists = new Map<number, number>();
let typingSentAt = 0;

function showTyping(): void {
  const names = [...typists.keys()].map(nicknameOf);
  const line = element('#typing');
  line.textContent =
    names.length === 0
      ? ''
      : names.length === 1
        ? `${names[0]} is typing…`
        : names.length <= 3
          ? `${names.join(', ')} are typing…`
          : 'Several people are typing…';
}

function someoneTyping(roomId: number, userId: number): void {
  if (roomId !== currentRoom || userId === myUserId()) return;
  window.clearTimeout(typists.get(userId));
  typists.set(
    userId,
    window.setTimeout(() => {
      typists.delete(userId);
      showTyping();
    }, TYPING_SHOWN_MS),
  );
  showTyping();
}

function iAmTyping(): void {
  const now = Date.now();
  if (!socket?.connected || !token || now - typingSentAt < TYPING_SEND_MS) return;
  typingSentAt = now;
  socket.emit(EVENTS.typing, { room_id: currentRoom });
}

// ---- signing in and out

function showAccount(): void {
  const signedIn = token !== null;
  loginForm.hidden = signedIn;
  element('#account').hidden = !signedIn;
  element('#new-room').hidden = !signedIn;
  const id = myUserId();
  element('#me').textContent = id !== undefined ? nicknameOf(id) : '';
  showRoomHead();
}

function setToken(value: string | null): void {
  const changed = value !== token;
  token = value;
  if (value) sessionStorage.setItem(TOKEN_KEY, value);
  else sessionStorage.removeItem(TOKEN_KEY);
  window.clearInterval(pingTimer);
  pingTimer = undefined;
  if (value) {
    void ping();
    pingTimer = window.setInterval(() => void ping(), PING_INTERVAL_MS);
  }
  renderUsers(users.values(), myUserId());
  showAccount();
  if (changed) {
    // The socket joins the user's rooms in its handshake: a new identity needs a new one.
    if (socket?.connected) socket.disconnect().connect();
    marked.clear();
    void syncRooms().catch(() => undefined);
    // Own messages get their delete buttons, and a private room of the last user goes.
    const ctx = context();
    renderMessages([...messages.values()], ctx);
  }
}

/** Keeps the user online: through Socket.IO as the original did, or straight to the API. */
async function ping(): Promise<void> {
  if (!token) return;
  if (socket) {
    if (socket.connected) socket.emit(EVENTS.pingUser, token);
    return; // a disconnected socket pings on reconnecting
  }
  const res = await call('PUT', '/api/users/me', { token }).catch(() => undefined);
  if (res?.status === 401) expired();
}

function expired(): void {
  if (!token) return;
  setToken(null);
  loginError.textContent = 'Your session has ended. Please sign in again.';
}

async function requestToken(nickname: string, password: string) {
  return call<{ token?: string }>('POST', '/api/tokens', {
    basic: { username: nickname, password },
  });
}

async function signIn(nickname: string, password: string): Promise<void> {
  let res = await requestToken(nickname, password);
  if (res.status === 401 && ![...users.values()].some((u) => u.nickname === nickname)) {
    // An unknown nickname: register it, then sign in as the original did.
    const created = await call('POST', '/api/users', { body: { nickname, password } });
    if (created.status === 201) {
      res = await requestToken(nickname, password);
    } else {
      await syncUsers();
      const taken = [...users.values()].some((u) => u.nickname === nickname);
      loginError.textContent = taken ? 'Wrong password.' : errorMessage(created);
      return;
    }
  }
  if (res.status === 200 && typeof res.body.token === 'string') {
    loginError.textContent = '';
    setToken(res.body.token);
    if (!users.has(myUserId() ?? 0)) await syncUsers();
    return;
  }
  loginError.textContent = res.status === 401 ? 'Wrong password.' : errorMessage(res);
}

async function signOut(): Promise<void> {
  const old = token;
  setToken(null);
  if (!old) return;
  // Offline first (needs the token), then revoke the token itself.
  await call('DELETE', '/api/users/me', { token: old }).catch(() => undefined);
  await call('DELETE', '/api/tokens', { token: old }).catch(() => undefined);
}

// ---- posting, deleting, reacting

type PostAnswer = PostMessageAck | { error: string; status?: number };
let sending = false;

function showCount(): void {
  const n = postInput.value.length;
  postCount.hidden = n < COUNT_FROM;
  postCount.textContent =
    n > MAX_SOURCE_LENGTH
      ? `${n} / ${MAX_SOURCE_LENGTH}: ${n - MAX_SOURCE_LENGTH} too many`
      : `${n} / ${MAX_SOURCE_LENGTH}`;
  postCount.classList.toggle('over', n > MAX_SOURCE_LENGTH);
  postInput.setAttribute('aria-invalid', String(n > MAX_SOURCE_LENGTH));
}

/**
 * The Idempotency-Key of the draft being sent: the same for every try of the same text in the same
 * room (a try whose answer was lost may have posted it: the next is answered with that message, not
 * a copy), a new one for anything else.
 */
let draftKey: { source: string; roomId: number; key: string } | undefined;

function keyFor(source: string, roomId: number): string {
  if (draftKey?.source !== source || draftKey.roomId !== roomId) {
    // getRandomValues, not randomUUID: the page may be served over plain HTTP (no secure context).
    const bytes = crypto.getRandomValues(new Uint8Array(16));
    const key = Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
    draftKey = { source, roomId, key };
  }
  return draftKey.key;
}

/** Posts into the room on screen; resolves to an error to show, the draft left as it is. */
async function post(source: string, roomId: number): Promise<string | undefined> {
  if (!token) return 'Sign in to post.';
  const key = keyFor(source, roomId);
  let answer: PostAnswer;
  if (socket?.connected) {
    try {
      answer = await socket
        .timeout(ACK_TIMEOUT_MS)
        .emitWithAck(EVENTS.postMessage, { source, room_id: roomId, idempotency_key: key }, token);
    } catch {
      answer = { error: 'The message could not be sent, please try again.' };
    }
  } else {
    const res = await call<PostAnswer>('POST', '/api/messages', {
      token,
      body: { source, room_id: roomId },
      headers: { [IDEMPOTENCY_KEY_HEADER]: key },
    });
    answer = res.status === 201 ? res.body : { error: errorMessage(res), status: res.status };
  }
  if ('error' in answer) {
    // 401 arrives as expired_token on the socket too; this covers the answer.
    if (answer.status === 401) expired();
    if (answer.status === 404) void leaveVanishedRoom(roomId);
    return `Not sent: ${answer.error}`;
  }
  draftKey = undefined;
  mergeMessages([answer]);
  return undefined;
}

async function send(): Promise<void> {
  const source = postInput.value;
  if (source.trim() === '' || sending) return;
  if (source.length > MAX_SOURCE_LENGTH) {
    postError.textContent = `Not sent: a message is at most ${MAX_SOURCE_LENGTH} characters; this one has ${source.length}. Your text is kept.`;
    return;
  }
  sending = true;
  postError.textContent = '';
  let error: string | undefined;
  try {
    error = await post(source, currentRoom);
  } catch {
    error = 'The message could not be sent, please try again.';
  } finally {
    sending = false;
  }
  if (error) {
    // The draft stays in the box, whatever went wrong.
    postError.textContent = error;
    return;
  }
  // Cleared only if nothing was typed meanwhile.
  if (postInput.value === source) postInput.value = '';
  showCount();
}

async function deleteMessage(id: number): Promise<void> {
  if (await roomCall('DELETE', `/api/messages/${id}`)) {
    const known = messages.get(id);
    if (known) {
      mergeMessages([
        { ...known, deleted: true, source: '', html: '', reactions: undefined } as Message,
      ]);
    }
  }
}

async function toggleReaction(id: number, emoji: string): Promise<void> {
  const me = myUserId();
  const mine = messages
    .get(id)
    ?.reactions?.some((r) => r.emoji === emoji && me !== undefined && r.user_ids.includes(me));
  const path = `/api/messages/${id}/reactions/${encodeURIComponent(emoji)}`;
  if ((await roomCall(mine ? 'DELETE' : 'PUT', path)) && !socket?.connected) await sync();
}

// ---- wiring

loginForm.addEventListener('submit', (ev) => {
  ev.preventDefault();
  const data = new FormData(loginForm);
  const nickname = String(data.get('nickname') ?? '').trim();
  const password = String(data.get('password') ?? '');
  loginError.textContent = '';
  signIn(nickname, password).catch(() => {
    loginError.textContent = 'Cannot reach the server, please try again.';
  });
  (loginForm.elements.namedItem('password') as HTMLInputElement).value = '';
});

postForm.addEventListener('submit', (ev) => {
  ev.preventDefault();
  void send();
});
postInput.addEventListener('input', () => {
  showCount();
  if (postError.textContent && postInput.value.length <= MAX_SOURCE_LENGTH) {
    postError.textContent = '';
  }
  if (postInput.value !== '') iAmTyping();
});

element('#signout').addEventListener('click', () => void signOut());

element('#rooms').addEventListener('click', (ev) => {
  const li = (ev.target as Element).closest<HTMLElement>('li[data-room-id]');
  if (li) void openRoom(Number(li.dataset.roomId));
});
element('#more-rooms').addEventListener('click', () => void moreRooms());
element('#users').addEventListener('click', (ev) => {
  const li = (ev.target as Element).closest<HTMLElement>('li[data-id]');
  if (li && (ev.target as Element).closest('.name')) void openDirect(Number(li.dataset.id));
});

messagesList.addEventListener('click', (ev) => {
  const target = ev.target as Element;
  const li = target.closest<HTMLLIElement>('li.message');
  if (!li) return;
  const id = Number(li.dataset.id);
  const button = target.closest<HTMLButtonElement>('button[data-control]');
  if (!button) return;
  if (button.classList.contains('author')) {
    void openDirect(Number(li.dataset.userId));
  } else if (button.classList.contains('delete')) {
    // Two steps: the first click asks, the second (within 4 s) deletes.
    if (button.dataset.armed) {
      void deleteMessage(id);
    } else {
      button.dataset.armed = 'true';
      button.textContent = 'Delete?';
      window.setTimeout(() => {
        delete button.dataset.armed;
        button.textContent = 'Delete';
      }, 4000);
    }
  } else if (button.classList.contains('react-open')) {
    toggleReactionPicker(li);
  } else if (button.dataset.emoji) {
    li.querySelector('.picker')?.remove();
    void toggleReaction(id, button.dataset.emoji);
  }
});
messagesList.addEventListener('scroll', () => {
  if (messagesList.scrollTop < LOAD_OLDER_PX) void loadOlder();
  if (messagesList.scrollHeight - messagesList.scrollTop - messagesList.clientHeight < 40) {
    scheduleMarkRead();
  }
});
document.addEventListener('visibilitychange', () => scheduleMarkRead());

element('#new-room').addEventListener('click', () => {
  element('#room-form-error').textContent = '';
  roomDialog.showModal();
});
roomForm.addEventListener('submit', (ev) => {
  ev.preventDefault();
  void createRoom();
});
for (const dialog of [roomDialog, membersDialog]) {
  dialog.addEventListener('click', (ev) => {
    if ((ev.target as Element).closest('[data-close]')) dialog.close();
  });
}
element('#join-room').addEventListener('click', () => void joinRoom());
element('#leave-room').addEventListener('click', () => void leaveRoom());
element('#members-button').addEventListener('click', () => void showMembers());
element('#invite-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  const input = (ev.target as HTMLFormElement).elements.namedItem('nickname') as HTMLInputElement;
  void invite(input.value);
});
element('#members').addEventListener('click', (ev) => {
  const li = (ev.target as Element).closest<HTMLElement>('li[data-user-id]');
  if (li && (ev.target as Element).closest('.remove')) void removeMember(Number(li.dataset.userId));
});

element('#search-button').addEventListener('click', () =>
  searchPane.hidden ? openSearch() : closeSearch(),
);
element('#search-close').addEventListener('click', () => closeSearch());
searchForm.addEventListener('submit', (ev) => {
  ev.preventDefault();
  void search(searchInput.value);
});
element('#search-results').addEventListener('click', (ev) => {
  const li = (ev.target as Element).closest<HTMLElement>('li[data-room-id]');
  if (!li) return;
  closeSearch();
  void openRoom(Number(li.dataset.roomId));
});
document.addEventListener('keydown', (ev) => {
  if (ev.key !== 'Escape') return;
  // Dialogs close themselves on Escape; the search and an open emoji picker close here.
  const picker = document.querySelector('#messages .picker');
  if (picker) {
    picker.remove();
    return;
  }
  if (!searchPane.hidden) closeSearch();
});

if (mode === 'socketio') {
  // The handshake carries the token, so the gateway joins this socket to the user's rooms.
  socket = io({
    path: SOCKETIO_LOCATION,
    auth: (cb) => cb(token ? { token } : {}),
  });
  socket.on('connect', () => {
    setStatus('');
    if (token) socket?.emit(EVENTS.pingUser, token);
    // Whatever changed while disconnected, so a reader never misses a message: now, and again
    // once every instance is sure to show what was written before (its event may have been missed
    // during the reconnect, and an answer from memory can be up to a second behind).
    const from = { users: usersSeen, messages: messagesSeen, room: currentRoom };
    void sync();
    window.setTimeout(() => {
      catchUpFrom = from;
      void sync().finally(() => {
        if (catchUpFrom === from) catchUpFrom = undefined;
      });
    }, RESYNC_AGAIN_MS);
  });
  socket.on('disconnect', () => setStatus('Reconnecting…'));
  socket.on(EVENTS.updatedModel, (data) => {
    // Typed by the contract, but checked all the same: a browser trusts nothing it is sent.
    if (typeof data?.model !== 'object' || data.model === null) return;
    if (data.class === 'User') mergeUsers([data.model]);
    else if (data.class === 'Message') {
      if (data.model.room_id === currentRoom) mergeMessages([data.model]);
      else if (data.model.user_id !== myUserId()) scheduleRooms();
    } else if (data.class === 'Room') scheduleRooms();
  });
  socket.on(EVENTS.typing, (data) => {
    if (typeof data?.room_id === 'number' && typeof data.user_id === 'number') {
      someoneTyping(data.room_id, data.user_id);
    }
  });
  socket.on(EVENTS.expiredToken, () => expired());
} else {
  let polls = 0;
  const poll = () =>
    void (async () => {
      // The room list (and its unread counts) every fifth poll; the room on screen every one.
      if (polls++ % 5 === 0) await syncRooms().catch(() => undefined);
      await syncUsers();
      await syncMessages();
      setStatus('');
    })()
      .catch(() => setStatus('Cannot reach the server, retrying…'))
      .finally(() => window.setTimeout(poll, POLL_INTERVAL_MS));
  poll();
}

setToken(token);
showCount();
if (mode === 'socketio') void sync();
