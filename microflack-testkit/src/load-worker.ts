// A LoadGenerator in a process of its own, driven over stdin/stdout (one JSON object per line), so
// that a test can run the load from another network namespace than its own (`ip netns exec <ns>
// node load-worker.js`): the cluster tests reach the platform's virtual address only from a client
// host on the cluster's bridge. RemoteLoad (remote-load.ts) is the test's side.
//
// Requests: {"id": n, "cmd": "logins" | "start" | "stop" | "checkDelivery" | "get" | "exit", ...}.
// Answers: {"id": n, "result": ...} or {"id": n, "error": "..."}.
import readline from 'node:readline';
import { createLogin, LoadGenerator, type LoadOptions, type Login } from './load.js';

let load: LoadGenerator | undefined;
const logins: Login[] = [];

async function handle(msg: Record<string, unknown>): Promise<unknown> {
  const url = String(msg.url ?? '');
  switch (msg.cmd) {
    case 'logins': {
      const n = Number(msg.count ?? 1);
      for (let i = 0; i < n; i++) logins.push(await createLogin(url, `${String(msg.prefix)}${i}`));
      return logins;
    }
    case 'start': {
      load = new LoadGenerator({ ...(msg.options as Omit<LoadOptions, 'logins'>), logins });
      await load.start();
      return true;
    }
    case 'stop':
      if (!load) throw new Error('no load running');
      return await load.stop();
    case 'checkDelivery': {
      if (!load) throw new Error('no load running');
      const report = await load.checkDelivery(Number(msg.waitMs ?? 10000));
      return { ...report, acknowledgedIds: [...load.acknowledged] };
    }
    case 'get': {
      const res = await fetch(url + String(msg.path), { signal: AbortSignal.timeout(10000) });
      return { status: res.status, body: await res.text() };
    }
    case 'exit':
      load?.abort();
      setImmediate(() => process.exit(0));
      return true;
    default:
      throw new Error(`unknown command ${String(msg.cmd)}`);
  }
}

const reply = (o: unknown) => process.stdout.write(`${JSON.stringify(o)}\n`);
readline.createInterface({ input: process.stdin }).on('line', (line) => {
  let msg: Record<string, unknown>;
  try {
    msg = JSON.parse(line) as Record<string, unknown>;
  } catch {
    reply({ id: null, error: 'not JSON' });
    return;
  }
  handle(msg).then(
    (result) => reply({ id: msg.id, result }),
    (err: Error) => reply({ id: msg.id, error: err.message }),
  );
});
// The test went away: no load may outlive it.
process.stdin.on('end', () => {
  load?.abort();
  process.exit(0);
});
