// The MicroFlack client: sign in, read and post messages, see who is online, all kept current by
// Socket.IO (or, when the page says so, by polling the REST API every second as the original did).
import { io, type Socket } from 'socket.io-client';
import { EVENTS, SOCKETIO_LOCATION } from '@microflack/common/contract/constants';
import type {
  ClientToServerEvents,
  PostMessageAck,
  ServerToClientEvents,
} from '@microflack/common/contract';
import { call, errorMessage, fetchList, type Message, type User } from './api.js';
import { element, renameAuthors, renderMessages, renderUsers } from './views.js';

const PING_INTERVAL_MS = 30000;
const POLL_INTERVAL_MS = 1000;
const ACK_TIMEOUT_MS = 8000;
// Timestamps are whole seconds and `updated_since` is exclusive: asking again from a little before
// the newest change seen cannot miss one made in the same second; duplicates merge by id.
const SINCE_OVERLAP_SECONDS = 2;
const TOKEN_KEY = 'microflack-token';

const mode = document.body.dataset.mode === 'polling' ? 'polling' : 'socketio';
const users = new Map<number, User>();
const messages = new Map<number, Message>();
let usersSeen: number | undefined;
let messagesSeen: number | undefined;
let token: string | null = sessionStorage.getItem(TOKEN_KEY);
let pingTimer: number | undefined;
let socket: Socket<ServerToClientEvents, ClientToServerEvents> | undefined;

const loginForm = element<HTMLFormElement>('#login-form');
const loginError = element<HTMLElement>('#login-error');
const postForm = element<HTMLFormElement>('#post-form');
const status = element<HTMLElement>('#status');

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

function setStatus(text: string): void {
  status.textContent = text;
}

// ---- the model: changes merge by id, an older copy never replaces a newer one

function mergeUsers(list: User[]): void {
  const changed: User[] = [];
  for (const user of list) {
    const known = users.get(user.id);
    if (known && known.updated_at > user.updated_at) continue;
    users.set(user.id, user);
    changed.push(user);
    usersSeen = Math.max(usersSeen ?? 0, user.updated_at);
  }
  if (changed.length === 0) return;
  renderUsers(users.values(), myUserId());
  renameAuthors(nicknameOf, new Set(changed.map((u) => u.id)));
  showAccount();
}

function mergeMessages(list: Message[]): void {
  const changed: Message[] = [];
  let unknownAuthor = false;
  for (const message of list) {
    const known = messages.get(message.id);
    if (known && known.updated_at > message.updated_at) continue;
    messages.set(message.id, message);
    changed.push(message);
    messagesSeen = Math.max(messagesSeen ?? 0, message.updated_at);
    if (!users.has(message.user_id)) unknownAuthor = true;
  }
  renderMessages(changed, nicknameOf);
  if (unknownAuthor) void syncUsers();
}

async function syncUsers(): Promise<void> {
  const since = usersSeen === undefined ? undefined : usersSeen - SINCE_OVERLAP_SECONDS;
  const res = await fetchList<User>('users', since, token);
  if (res.status === 401) return expired();
  mergeUsers(res.items);
}

async function syncMessages(): Promise<void> {
  const since = messagesSeen === undefined ? undefined : messagesSeen - SINCE_OVERLAP_SECONDS;
  const res = await fetchList<Message>('messages', since, token);
  if (res.status === 401) return expired();
  mergeMessages(res.items);
}

let syncing: Promise<void> | undefined;
/** Catches up on everything changed since the last sync; concurrent callers share one run. */
function sync(): Promise<void> {
  syncing ??= (async () => {
    try {
      await syncUsers();
      await syncMessages();
    } catch {
      setStatus('Cannot reach the server, retrying…');
    } finally {
      syncing = undefined;
    }
  })();
  return syncing;
}

// ---- signing in and out

function showAccount(): void {
  const signedIn = token !== null;
  loginForm.hidden = signedIn;
  postForm.hidden = !signedIn;
  element('#account').hidden = !signedIn;
  const id = myUserId();
  element('#me').textContent = id !== undefined ? nicknameOf(id) : '';
}

function setToken(value: string | null): void {
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

// ---- posting

type PostAnswer = PostMessageAck | { error: string; status?: number };

async function post(source: string): Promise<void> {
  if (!token) return;
  let answer: PostAnswer;
  if (socket?.connected) {
    try {
      answer = await socket
        .timeout(ACK_TIMEOUT_MS)
        .emitWithAck(EVENTS.postMessage, { source }, token);
    } catch {
      answer = { error: 'The message could not be sent, please try again.' };
    }
  } else {
    const res = await call<PostAnswer>('POST', '/api/messages', { token, body: { source } });
    if (res.status === 401) return expired();
    answer = res.status === 201 ? res.body : { error: errorMessage(res), status: res.status };
  }
  if ('error' in answer) {
    // 401 arrives as expired_token on the socket too; this covers the answer.
    if (answer.status === 401) return expired();
    setStatus(answer.error);
    return;
  }
  mergeMessages([answer]);
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
  const input = postForm.elements.namedItem('source') as HTMLInputElement;
  const source = input.value;
  if (source.trim() === '') return;
  input.value = '';
  post(source).catch(() => {
    input.value = source;
    setStatus('The message could not be sent, please try again.');
  });
});

element('#signout').addEventListener('click', () => void signOut());

if (mode === 'socketio') {
  socket = io({ path: SOCKETIO_LOCATION });
  socket.on('connect', () => {
    setStatus('');
    if (token) socket?.emit(EVENTS.pingUser, token);
    // Whatever changed while disconnected, so a reader never misses a message.
    void sync();
  });
  socket.on('disconnect', () => setStatus('Reconnecting…'));
  socket.on(EVENTS.updatedModel, (data) => {
    // Typed by the contract, but checked all the same: a browser trusts nothing it is sent.
    if (typeof data?.model !== 'object' || data.model === null) return;
    if (data.class === 'User') mergeUsers([data.model]);
    else if (data.class === 'Message') mergeMessages([data.model]);
  });
  socket.on(EVENTS.expiredToken, () => expired());
} else {
  const poll = () => void sync().finally(() => window.setTimeout(poll, POLL_INTERVAL_MS));
  poll();
}

setToken(token);
if (mode === 'socketio') void sync();
