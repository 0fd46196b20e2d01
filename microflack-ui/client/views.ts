// Drawing users and messages into the page. Nicknames go in as text; message bodies only as the
// HTML that the messages service rendered and sanitized.
import type { Message, User } from './api.js';

export function element<T extends HTMLElement>(selector: string): T {
  const el = document.querySelector<T>(selector);
  if (!el) throw new Error(`page is missing ${selector}`);
  return el;
}

const usersList = () => element<HTMLUListElement>('#users');
const messagesList = () => element<HTMLUListElement>('#messages');

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
      const dot = document.createElement('span');
      dot.className = 'dot';
      dot.setAttribute('aria-hidden', 'true');
      const name = document.createElement('span');
      name.className = 'name';
      const state = document.createElement('span');
      state.className = 'state';
      li.append(dot, name, state);
    }
    li.dataset.nickname = user.nickname;
    li.dataset.online = String(user.online);
    li.classList.toggle('online', user.online);
    li.classList.toggle('me', user.id === myId);
    (li.querySelector('.name') as HTMLElement).textContent = user.nickname;
    (li.querySelector('.state') as HTMLElement).textContent = user.online ? 'online' : 'offline';
    list.append(li); // appending an existing node moves it: this keeps the sorted order
  }
}

function timeOf(seconds: number): string {
  return new Date(seconds * 1000).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
}

function isAtBottom(list: HTMLElement): boolean {
  return list.scrollHeight - list.scrollTop - list.clientHeight < 40;
}

/** Inserts or updates messages in (created_at, id) order; follows the bottom if the reader was there. */
export function renderMessages(messages: Message[], nicknameOf: (userId: number) => string): void {
  if (messages.length === 0) return;
  const list = messagesList();
  const follow = isAtBottom(list);
  for (const message of messages) {
    let li = list.querySelector<HTMLLIElement>(`li[data-id="${message.id}"]`);
    if (!li) {
      li = document.createElement('li');
      li.className = 'message';
      li.dataset.id = String(message.id);
      const meta = document.createElement('div');
      meta.className = 'meta';
      const author = document.createElement('span');
      author.className = 'author';
      const time = document.createElement('time');
      meta.append(author, time);
      const body = document.createElement('div');
      body.className = 'body';
      li.append(meta, body);
      insertInOrder(list, li, message);
    }
    li.dataset.userId = String(message.user_id);
    li.dataset.updatedAt = String(message.updated_at);
    (li.querySelector('.author') as HTMLElement).textContent = nicknameOf(message.user_id);
    const time = li.querySelector('time') as HTMLTimeElement;
    time.dateTime = new Date(message.created_at * 1000).toISOString();
    time.textContent = timeOf(message.created_at);
    (li.querySelector('.body') as HTMLElement).innerHTML = message.html;
  }
  if (follow) list.scrollTop = list.scrollHeight;
}

function insertInOrder(list: HTMLElement, li: HTMLLIElement, message: Message): void {
  li.dataset.createdAt = String(message.created_at);
  // New messages are almost always the last: search from the end.
  let after: Element | null = list.lastElementChild;
  while (after) {
    const el = after as HTMLElement;
    const created = Number(el.dataset.createdAt);
    const id = Number(el.dataset.id);
    if (created < message.created_at || (created === message.created_at && id < message.id)) break;
    after = after.previousElementSibling;
  }
  if (after) after.after(li);
  else list.prepend(li);
}

/** Authors learned after their messages: fill in the names now known. */
export function renameAuthors(nicknameOf: (userId: number) => string, userIds: Set<number>): void {
  for (const li of messagesList().querySelectorAll<HTMLLIElement>('li[data-user-id]')) {
    const id = Number(li.dataset.userId);
    if (userIds.has(id)) (li.querySelector('.author') as HTMLElement).textContent = nicknameOf(id);
  }
}
