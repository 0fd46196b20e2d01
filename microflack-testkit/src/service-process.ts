// Runs a built service (`node dist/main.js`) as a child process, as operators run it.
import path from 'node:path';
import { Proc, tempDir, WaitAbort, waitFor } from './processes.js';

export interface ServiceProcess {
  proc: Proc;
  /** host:port it registered, read from its "listening" log line. */
  address: string;
  stop(): Promise<void>;
}

/** `packageDir` holds dist/main.js; env is the service's whole environment. */
export async function startServiceProcess(
  packageDir: string,
  env: NodeJS.ProcessEnv,
  dir = tempDir('svc'),
): Promise<ServiceProcess> {
  const name = path.basename(packageDir).replace(/^microflack-/, '');
  const proc = new Proc(
    `${name}-${Date.now()}`,
    process.execPath,
    [path.join(packageDir, 'dist/main.js')],
    dir,
    {
      PATH: process.env.PATH,
      HOME: process.env.HOME,
      LOG_LEVEL: 'info',
      ...env,
    },
  );
  let address = '';
  await waitFor(
    `${name} to listen`,
    () => {
      if (!proc.running) throw new WaitAbort(`${name} exited`);
      const line = proc
        .log()
        .split('\n')
        .find((l) => l.includes('"listening"'));
      if (line) address = JSON.parse(line).address;
      return address !== '';
    },
    30000,
  ).catch(async (err) => {
    // Not listening in time: stopped here, or it would outlive the test (no one else holds it).
    const log = proc.log().slice(-2000);
    await proc.stop();
    throw new Error(`${err.message}\n${log}`);
  });
  return { proc, address, stop: () => proc.stop() };
}
