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
      <section class="messages-pane" aria-label="Messages">
        <ul id="messages"></ul>
        <form id="post-form" hidden autocomplete="off">
          <input name="source" aria-label="Message" placeholder="Type a message, Enter sends" maxlength="10000" required>
          <button type="submit">Send</button>
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
    <p id="status" role="status"></p>
  </body>
</html>
`;
}
