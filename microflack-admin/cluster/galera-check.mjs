// The Galera health check for HAProxy (what Percona's clustercheck does, without xinetd): an HTTP
// server on the node's address answering 200 only while the local node is Synced in the Primary
// component and ready for queries, 503 otherwise (joining, donor, desynced, or cut off from the
// majority: a node that lost quorum must not be sent a single write); a donor counts as synced. Run by mfcluster on every
// host; HAProxy's `option httpchk` polls it every second.
//
// Environment: MF_CHECK_LISTEN (address:port to listen on), MF_CHECK_SOCKET (the node's socket),
// MF_CHECK_USER and MF_CHECK_PASSWORD (an account with no privileges: SHOW STATUS needs none).
import http from 'node:http';
import mysql from 'mysql2/promise';

const listen = process.env.MF_CHECK_LISTEN ?? '127.0.0.1:9200';
const socketPath = process.env.MF_CHECK_SOCKET;
if (!socketPath) {
  console.error('galera-check: MF_CHECK_SOCKET is required');
  process.exit(2);
}
const QUERY_TIMEOUT_MS = 800;

let conn;
async function state() {
  if (!conn) {
    conn = await mysql.createConnection({
      socketPath,
      user: process.env.MF_CHECK_USER ?? 'mf_check',
      password: process.env.MF_CHECK_PASSWORD ?? '',
      connectTimeout: QUERY_TIMEOUT_MS,
    });
    conn.on('error', () => {
      conn = undefined;
    });
  }
  const [rows] = await conn.query({
    sql: "SHOW GLOBAL STATUS WHERE Variable_name IN ('wsrep_local_state', 'wsrep_local_state_comment', 'wsrep_cluster_status', 'wsrep_ready', 'wsrep_cluster_size')",
    timeout: QUERY_TIMEOUT_MS,
  });
  return Object.fromEntries(rows.map((r) => [r.Variable_name, r.Value]));
}

const server = http.createServer(async (req, res) => {
  let status = 503;
  let body;
  try {
    const s = await state();
    // Synced (4), or a donor (2) of an incremental transfer: IST is sent in the background and the
    // donor keeps taking writes (mfcluster makes the nodes ask other donors than the first host's).
    const synced =
      (s.wsrep_local_state === '4' || s.wsrep_local_state === '2') &&
      s.wsrep_cluster_status === 'Primary' &&
      s.wsrep_ready === 'ON';
    status = synced ? 200 : 503;
    body = {
      state: s.wsrep_local_state_comment,
      cluster: s.wsrep_cluster_status,
      ready: s.wsrep_ready,
      size: Number(s.wsrep_cluster_size),
    };
  } catch (err) {
    conn?.destroy();
    conn = undefined;
    body = { error: err.message };
  }
  res.writeHead(status, { 'content-type': 'application/json', connection: 'close' });
  res.end(`${JSON.stringify(body)}\n`);
});
server.requestTimeout = 2000;
const i = listen.lastIndexOf(':');
server.listen(Number(listen.slice(i + 1)), listen.slice(0, i), () => {
  console.log(`galera-check: listening on ${listen}`);
});
for (const sig of ['SIGTERM', 'SIGINT']) {
  process.on(sig, () => {
    server.close();
    conn?.destroy();
    process.exit(0);
  });
}
