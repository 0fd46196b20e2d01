// The one HTML page: a shell that the bundled client fills in.
import type { Assets } from './assets.js';

export type ClientMode = 'socketio' | 'polling';

function escapeAttribute(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

export function renderPage(assets: Assets, mode: ClientMode): string {
  const script = escapeAttribute(`/static/${assets.script}`);
  const style = escapeAttribute(`/static/${assets.style}`);
  return `<!doctype html>
<html lang="en">
  <head>
    <meta charset="utf-8">
    <meta name="viewport" content="width=device-width, initial-scale=1">
    <title>MicroFlack</title>
    <link rel="stylesheet" href="${style}">
    <script type="module" src="${script}"></script>
  </head>
  <body data-mode="${mode}">
    <header class="top">
      <h1>MicroFlack</h1>
      <div id="account" hidden>
        <span id="me"></span>
        <button id="signout" type="button">Sign out</button>
      </div>
    </header>
    <main class="chat">
      <nav class="rooms-pane" aria-label="Rooms">
        <div class="pane-head">
          <h2>Rooms</h2>
          <button id="new-room" type="button" class="small" hidden>New room</button>
        </div>
        <ul id="rooms"></ul>
        <button id="more-rooms" type="button" class="small link" hidden>More rooms</button>
      </nav>
      <section class="messages-pane" aria-label="Messages">
        <div class="room-head">
          <div class="room-title">
            <h2 id="room-name">general</h2>
            <span id="room-topic"></span>
          </div>
          <div class="room-actions">
            <button id="join-room" type="button" class="small" hidden>Join</button>
            <button id="members-button" type="button" class="small" hidden>Members</button>
            <button id="leave-room" type="button" class="small secondary" hidden>Leave</button>
            <button id="search-button" type="button" class="small secondary" aria-controls="search-pane">Search</button>
          </div>
        </div>
        <div id="search-pane" class="search-pane" hidden>
          <form id="search-form" role="search" autocomplete="off">
            <input name="q" type="search" aria-label="Search messages" placeholder="Search messages" maxlength="200" required>
            <button type="submit" class="small">Search</button>
            <button type="button" id="search-close" class="small secondary">Close</button>
          </form>
          <p id="search-status" role="status"></p>
          <ul id="search-results"></ul>
        </div>
        <p id="history-status" class="history-status" role="status"></p>
        <ul id="messages" aria-live="polite"></ul>
        <p id="typing" class="typing" role="status"></p>
        <form id="post-form" hidden autocomplete="off">
          <input name="source" aria-label="Message" aria-describedby="post-count post-error" placeholder="Type a message, Enter sends" required>
          <button type="submit">Send</button>
          <p id="post-count" class="count" aria-live="polite"></p>
          <p id="post-error" class="error" role="alert"></p>
        </form>
        <form id="login-form" autocomplete="on">
          <h2>Register or Sign In</h2>
          <input name="nickname" aria-label="Nickname" placeholder="Nickname" autocomplete="username" maxlength="32" required>
          <input name="password" type="password" aria-label="Password" placeholder="Password" autocomplete="current-password" required>
          <button type="submit">Register or Sign In</button>
          <p class="error" id="login-error" role="alert"></p>
        </form>
      </section>
      <aside class="users-pane" aria-label="Participants">
        <h2>Participants</h2>
        <ul id="users"></ul>
      </aside>
    </main>
    <dialog id="room-dialog" aria-labelledby="room-dialog-title">
      <form id="room-form" method="dialog" autocomplete="off">
        <h2 id="room-dialog-title">New room</h2>
        <label>Name <input name="name" maxlength="80" required></label>
        <label>Topic <input name="topic" maxlength="250"></label>
        <label class="check"><input name="private" type="checkbox"> Private: only invited members see it</label>
        <p id="room-form-error" class="error" role="alert"></p>
        <div class="dialog-actions">
          <button type="button" class="secondary" data-close>Cancel</button>
          <button type="submit" value="create">Create</button>
        </div>
      </form>
    </dialog>
    <dialog id="members-dialog" aria-labelledby="members-dialog-title">
      <h2 id="members-dialog-title">Members</h2>
      <ul id="members"></ul>
      <form id="invite-form" autocomplete="off">
        <input name="nickname" aria-label="Nickname to invite" placeholder="Nickname to invite" maxlength="32" required list="nicknames">
        <button type="submit" class="small">Invite</button>
      </form>
      <datalist id="nicknames"></datalist>
      <p id="members-error" class="error" role="alert"></p>
      <div class="dialog-actions">
        <button type="button" class="secondary" data-close>Close</button>
      </div>
    </dialog>
    <p id="status" role="status"></p>
  </body>
</html>
`;
}
