// Runs one of the operators' bin/ scripts as a test would, with its output and exit code.
import { spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const bin = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../bin');

export interface Result {
  code: number | null;
  stdout: string;
  stderr: string;
}

export function run(
  script: string,
  args: string[],
  env: NodeJS.ProcessEnv,
  timeoutMs = 120000,
): Promise<Result> {
  return new Promise((resolve, reject) => {
    const child = spawn(path.join(bin, script), args, {
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(
        new Error(
          `${script} ${args.join(' ')} timed out after ${timeoutMs} ms\n${stdout}\n${stderr}`,
        ),
      );
    }, timeoutMs);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}
