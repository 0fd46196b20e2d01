// Drawing users, rooms and messages into the page. Nicknames, room names and topics go in as text;
// message bodies only as the HTML that the messages service rendered and sanitized. Every change
// touches the DOM nodes of what changed, never the whole list: a new message is one inserted
// node, an edited, deleted or reacted-to message rewrites its own node only.
import type { Message, Room, User } from './api.js';

export function element<T extends HTMLElement>(selector: string): T {
  const el = document.querySelector<T>(selector);
  if (!el) throw new Error(`page is missing ${selector}`);
  return el;
}

/** Builds an element with a class and text (text only: never HTML). */
function make<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  className = '',
  text = '',
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  if (className) el.className = className;
  if (text) el.textContent = text;
  return el;
}

/** A button of the client's own (marked so that tests can tell it from anything a user wrote). */
function control(className: string, text: string, label?: string): HTMLButtonElement {
  const b = make('button', className, text);
  b.type = 'button';
  b.dataset.control = '';
  if (label) b.setAttribute('aria-label', label);
  return b;
}

const usersList = () => element<HTMLUListElement>('#users');
const messagesList = () => element<HTMLUListElement>('#messages');

// ---- participants

function compareUsers(a: User, b: User): number {
  if (a.online !== b.online) return a.online ? -1 : 1;
  return a.nickname.localeCompare(b.nickname);
}

export function renderUsers(users: Iterable<User>, myId: number | undefined): void {
  const list = usersList();
  const sorted = [...users].sort(compareUsers);
  const existing = new Map<string, HTMLLIElement>();
  for (const li of list.querySelectorAll<HTMLLIElement>('li[data-id]')) {
    existing.set(li.dataset.id as string, li);
  }
  for (const user of sorted) {
    let li = existing.get(String(user.id));
    if (!li) {
      li = document.createElement('li');
      li.dataset.id = String(user.id);
      const dot = make('span', 'dot');
      dot.setAttribute('aria-hidden', 'true');
      li.append(dot, control('name', ''), make('span', 'state'));
    }
    li.dataset.nickname = user.nickname;
    li.dataset.online = String(user.online);
    li.classList.toggle('online', user.online);
    li.classList.toggle('me', user.id === myId);
    const name = li.querySelector('.name') as HTMLButtonElement;
    name.textContent = user.nickname;
    name.title = user.id === myId ? 'you' : `Send ${user.nickname} a direct message`;
    name.disabled = myId === undefined || user.id === myId;
    (li.querySelector('.state') as HTMLElement).textContent = user.online ? 'online' : 'offline';
    list.append(li); // appending an existing node moves it: this keeps the sorted order
  }
}

// ---- rooms

/** A direct room's name is `direct <lower user id> <higher user id>` (rest.md): the other one. */
export function directPeer(room: Room, myId: number | undefined): number | undefined {
  const m = /^direct (\d+) (\d+)$/.exec(room.name);
  if (!room.direct || !m) return undefined;
  const [a, b] = [Number(m[1]), Number(m[2])];
  return a === myId ? b : a;
}

export function roomLabel(
  room: Room,
  myId: number | undefined,
  nicknameOf: (id: number) => string,
): string {
  const peer = directPeer(room, myId);
  if (peer !== undefined) return `@${nicknameOf(peer)}`;
  return room.name;
}

function countText(n: number): string {
  return n >= 1000 ? '999+' : String(n);
}

/**
 * The room list: the rooms the user is in first (general, then by id), then the public rooms to
 * join. Existing items are updated in place and moved, never rebuilt.
 */
export function renderRooms(
  rooms: Room[],
  current: number,
  myId: number | undefined,
  nicknameOf: (id: number) => string,
): void {
  const list = element<HTMLUListElement>('#rooms');
  const existing = new Map<string, HTMLLIElement>();
  for (const li of list.querySelectorAll<HTMLLIElement>('li[data-room-id]')) {
    existing.set(li.dataset.roomId as string, li);
  }
  const mine = rooms.filter((r) => r.member !== false);
  const others = rooms.filter((r) => r.member === false);
  const keep = new Set<string>();
  for (const room of [...mine, ...others]) {
    const id = String(room.id);
    keep.add(id);
    let li = existing.get(id);
    if (!li) {
      li = document.createElement('li');
      li.dataset.roomId = id;
      const open = control('room-link', '');
      open.append(
        make('span', 'room-kind'),
        make('span', 'room-label'),
        make('span', 'badge mentions'),
        make('span', 'badge unread'),
      );
      li.append(open);
    }
    const label = roomLabel(room, myId, nicknameOf);
    li.classList.toggle('current', room.id === current);
    li.classList.toggle('joinable', room.member === false);
    li.dataset.private = String(room.private);
    li.dataset.direct = String(room.direct);
    // A direct room's kind already says `@`: the label is the other person's nickname.
    (li.querySelector('.room-label') as HTMLElement).textContent = room.direct
      ? label.replace(/^@/, '')
      : label;
    (li.querySelector('.room-kind') as HTMLElement).textContent = room.direct
      ? '@'
      : room.private
        ? '🔒'
        : '#';
    const unread = room.id === current ? 0 : (room.unread ?? 0);
    const mentions = room.id === current ? 0 : (room.mentions ?? 0);
    const u = li.querySelector('.badge.unread') as HTMLElement;
    u.textContent = unread > 0 ? countText(unread) : '';
    u.hidden = unread === 0;
    u.title = `${unread} unread`;
    const m = li.querySelector('.badge.mentions') as HTMLElement;
    m.textContent = mentions > 0 ? `@${countText(mentions)}` : '';
    m.hidden = mentions === 0;
    m.title = `${mentions} mentioning you`;
    const button = li.querySelector('.room-link') as HTMLButtonElement;
    button.setAttribute('aria-current', room.id === current ? 'true' : 'false');
    button.title = room.member === false ? `${label}: public, not joined` : label;
    list.append(li);
  }
  for (const [id, li] of existing) if (!keep.has(id)) li.remove();
}

// ---- messages

export interface MessageContext {
  myId: number | undefined;
  /** The signed-in user's nickname identity, to highlight mentions of them. */
  myKey: string | undefined;
  nicknameOf: (userId: number) => string;
}

// The messages service's mention rule (messages.ts): `@nickname`, not inside a word or address.
const MENTION = /(?<![\p{L}\p{N}_@.])@([\p{L}\p{N}_][\p{L}\p{N}_.-]{0,31})/gu;

export function nicknameKeyOf(nickname: string): string {
  return nickname.normalize('NFKC').toLowerCase();
}

/** Wraps `@nickname` in the body's text (never inside links or code) in a highlight. */
function highlightMentions(body: HTMLElement, myKey: string | undefined): void {
  const walker = document.createTreeWalker(body, NodeFilter.SHOW_TEXT);
  const texts: Text[] = [];
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    if (n.parentElement?.closest('a, code')) continue;
    if ((n.nodeValue ?? '').includes('@')) texts.push(n as Text);
  }
  for (const text of texts) {
    const value = text.nodeValue ?? '';
    const parts: Node[] = [];
    let at = 0;
    for (const m of value.matchAll(MENTION)) {
      const name = (m[1] ?? '').replace(/[.-]+$/, '');
      const start = m.index;
      parts.push(document.createTextNode(value.slice(at, start)));
      const mark = make('span', 'mention', `@${name}`);
      if (myKey !== undefined && nicknameKeyOf(name) === myKey) mark.classList.add('mention-me');
      parts.push(mark);
      at = start + 1 + name.length;
    }
    if (parts.length === 0) continue;
    parts.push(document.createTextNode(value.slice(at)));
    text.replaceWith(...parts);
  }
}

/** The bounded set of reactions the client offers (any emoji others used is shown too). */
export const REACTION_EMOJI = ['👍', '❤️', '😂', '🎉', '😮', '👀'];

function renderReactions(li: HTMLElement, message: Message, ctx: MessageContext): void {
  const box = li.querySelector('.reactions') as HTMLElement;
  box.replaceChildren();
  if (message.deleted) return;
  for (const r of message.reactions ?? []) {
    const mine = ctx.myId !== undefined && r.user_ids.includes(ctx.myId);
    const b = control('reaction', `${r.emoji} ${r.count}`);
    b.dataset.emoji = r.emoji;
    b.setAttribute('aria-pressed', String(mine));
    const who = r.user_ids.map(ctx.nicknameOf);
    const more = r.count > who.length ? ` and ${r.count - who.length} more` : '';
    b.title = `${who.join(', ')}${more}`;
    b.setAttribute('aria-label', `${r.emoji} ${r.count}: ${b.title}`);
    box.append(b);
  }
  if (ctx.myId !== undefined) box.append(control('react-open', '+☺', 'Add a reaction'));
}

/** The emoji picker of one message: a row of buttons, opened by its `+☺`. */
export function toggleReactionPicker(li: HTMLElement): void {
  const open = li.querySelector('.picker');
  if (open) {
    open.remove();
    return;
  }
  const picker = make('div', 'picker');
  picker.setAttribute('role', 'group');
  picker.setAttribute('aria-label', 'Pick a reaction');
  for (const emoji of REACTION_EMOJI) {
    const b = control('pick', emoji, `React with ${emoji}`);
    b.dataset.emoji = emoji;
    picker.append(b);
  }
  (li.querySelector('.reactions') as HTMLElement).after(picker);
  (picker.firstElementChild as HTMLElement).focus();
}

function timeOf(seconds: number): string {
  return new Date(seconds * 1000).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
}

function isAtBottom(list: HTMLElement): boolean {
  return list.scrollHeight - list.scrollTop - list.clientHeight < 40;
}

/** The message list's nodes by message id: finding one never walks the list. */
const nodes = new Map<number, HTMLLIElement>();

function newMessageNode(message: Message): HTMLLIElement {
  const li = make('li', 'message');
  li.dataset.id = String(message.id);
  const meta = make('div', 'meta');
  meta.append(control('author', ''), make('time'));
  li.append(meta, make('div', 'body'), make('div', 'reactions'));
  nodes.set(message.id, li);
  return li;
}

/** Writes one message into its node (a new node or the one already on screen). */
function fillMessage(li: HTMLLIElement, message: Message, ctx: MessageContext): void {
  li.dataset.userId = String(message.user_id);
  li.dataset.updatedAt = String(message.updated_at);
  const author = li.querySelector('.author') as HTMLButtonElement;
  author.textContent = ctx.nicknameOf(message.user_id);
  author.disabled = ctx.myId === undefined || ctx.myId === message.user_id;
  const time = li.querySelector('time') as HTMLTimeElement;
  time.dateTime = new Date(message.created_at * 1000).toISOString();
  time.textContent = timeOf(message.created_at);
  const body = li.querySelector('.body') as HTMLElement;
  const meta = li.querySelector('.meta') as HTMLElement;
  meta.querySelector('.delete')?.remove();
  if (message.deleted) {
    li.classList.add('deleted');
    li.dataset.deleted = 'true';
    body.textContent = 'message deleted';
    li.querySelector('.picker')?.remove();
  } else {
    body.innerHTML = message.html;
    highlightMentions(body, ctx.myKey);
    if (ctx.myId !== undefined && message.user_id === ctx.myId) {
      meta.append(control('delete', 'Delete', 'Delete this message'));
    }
  }
  renderReactions(li, message, ctx);
}

/** Inserts or updates messages (in id order); follows the bottom if the reader was there. */
export function renderMessages(messages: Message[], ctx: MessageContext): void {
  if (messages.length === 0) return;
  const list = messagesList();
  const follow = isAtBottom(list);
  for (const message of messages) {
    let li = nodes.get(message.id);
    if (!li) {
      li = newMessageNode(message);
      insertInOrder(list, li, message.id);
    }
    fillMessage(li, message, ctx);
  }
  if (follow) list.scrollTop = list.scrollHeight;
}

/**
 * An older page (ascending ids, all below what is on screen) goes on top in one insertion, and
 * the view stays where it was: what the reader looked at keeps its place on the screen.
 */
export function prependOlder(messages: Message[], ctx: MessageContext): void {
  const list = messagesList();
  const fragment = document.createDocumentFragment();
  for (const message of messages) {
    if (nodes.has(message.id)) continue;
    const li = newMessageNode(message);
    fillMessage(li, message, ctx);
    fragment.append(li);
  }
  const before = list.scrollHeight;
  const top = list.scrollTop;
  list.prepend(fragment);
  list.scrollTop = top + (list.scrollHeight - before);
}

function insertInOrder(list: HTMLElement, li: HTMLLIElement, id: number): void {
  // New messages are almost always the last: search from the end.
  let after: Element | null = list.lastElementChild;
  while (after && Number((after as HTMLElement).dataset.id) > id) {
    after = after.previousElementSibling;
  }
  if (after) after.after(li);
  else list.prepend(li);
}

export function clearMessages(): void {
  nodes.clear();
  messagesList().replaceChildren();
}

export function scrollToBottom(): void {
  const list = messagesList();
  list.scrollTop = list.scrollHeight;
}

/** Authors renamed or learned after their messages: their names and reactions, now known. */
export function renameAuthors(
  ctx: MessageContext,
  userIds: Set<number>,
  byId: (id: number) => Message | undefined,
): void {
  for (const li of nodes.values()) {
    const message = byId(Number(li.dataset.id));
    if (!message) continue;
    const reactors = (message.reactions ?? []).some((r) => r.user_ids.some((u) => userIds.has(u)));
    if (userIds.has(message.user_id)) {
      (li.querySelector('.author') as HTMLElement).textContent = ctx.nicknameOf(message.user_id);
    }
    if (reactors) renderReactions(li, message, ctx);
  }
}

// ---- search results

export function renderSearchResults(
  messages: Message[],
  ctx: MessageContext,
  roomName: (roomId: number) => string,
): void {
  const list = element<HTMLUListElement>('#search-results');
  list.replaceChildren();
  for (const message of messages) {
    const li = make('li', 'result');
    li.dataset.id = String(message.id);
    li.dataset.roomId = String(message.room_id);
    const open = control('open-result', '');
    const meta = make('span', 'meta');
    meta.append(
      make('span', 'result-room', roomName(message.room_id)),
      make('span', 'author-name', ctx.nicknameOf(message.user_id)),
      make('time', '', timeOf(message.created_at)),
    );
    const body = make('span', 'body');
    body.innerHTML = message.html;
    // Links inside a button would nest interactive content: their text is enough here.
    for (const a of body.querySelectorAll('a')) a.replaceWith(...a.childNodes);
    highlightMentions(body, ctx.myKey);
    open.append(meta, body);
    li.append(open);
    list.append(li);
  }
}
