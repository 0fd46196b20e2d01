// Password hashing with bcrypt's async API, which runs in libuv's thread pool, off the event loop.
// Hashes wait their turn in a queue of this process's own (p-queue: a well-kept promise queue, used
// here for its concurrency bound), at most one per core at a time, so that what is waiting is
// known here and not lost in libuv's: a request that has waited longer than its callers will (the
// tokens service gives up on users after 5 s), or whose client has gone, is not hashed for
// nobody. Under a burst of sign-ins bcrypt's whole capacity goes to requests someone still waits
// for, instead of collapsing to hashes whose answers nobody reads.
import os from 'node:os';
import bcrypt from 'bcrypt';
import PQueue from 'p-queue';
import { counter } from '@microflack/common';
// bcrypt reads at most 72 bytes; longer passwords are refused (by the contract's Password schema)
// rather than silently truncated.
import { MAX_PASSWORD_BYTES } from '@microflack/common/api';

/** The longest a hash waits for its turn by default: under the tokens service's 5 s call timeout. */
export const DEFAULT_PASSWORD_QUEUE_WAIT_MS = 4000;

const work = counter(
  'password_hashes_total',
  'bcrypt hashes and compares: done, shed (waited too long) or abandoned (the client left first)',
  ['outcome'],
);

/** No turn for this hash in time, or its client left: nothing was hashed. */
export class PasswordsBusy extends Error {
  constructor(readonly abandoned: boolean) {
    super(abandoned ? 'client gone' : 'too many passwords to check, try again');
  }
}

export interface Passwords {
  /** `signal`: aborted when nobody waits for the answer any more (the client's connection closed). */
  hash(password: string, signal?: AbortSignal): Promise<string>;
  verify(password: string, hash: string | undefined, signal?: AbortSignal): Promise<boolean>;
  /** Hashes waiting for their turn. */
  readonly waiting: number;
}

export interface PasswordOptions {
  /** Hashes at once (default: one per core). */
  concurrency?: number;
  /** The longest a hash waits for its turn before it is refused (PasswordsBusy). */
  maxWaitMs?: number;
}

export function createPasswords(rounds: number, opts: PasswordOptions = {}): Passwords {
  const queue = new PQueue({ concurrency: opts.concurrency ?? os.availableParallelism() });
  const maxWaitMs = opts.maxWaitMs ?? DEFAULT_PASSWORD_QUEUE_WAIT_MS;
  // Compared against when the nickname is unknown, at the same cost, so both cases take as long.
  let dummy: Promise<string> | undefined;

  /** `task` in its turn, unless the wait ran out or the client left before the turn came. */
  async function inTurn<T>(task: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    let state: 'waiting' | 'started' | 'dropped' = 'waiting';
    const turn = queue.add(async () => {
      if (state === 'dropped') return undefined;
      state = 'started';
      return task();
    });
    let timer: NodeJS.Timeout | undefined;
    let onAbort: (() => void) | undefined;
    const dropped = new Promise<never>((_resolve, reject) => {
      const drop = (abandoned: boolean) => {
        if (state !== 'waiting') return;
        state = 'dropped';
        work.inc({ outcome: abandoned ? 'abandoned' : 'shed' });
        reject(new PasswordsBusy(abandoned));
      };
      timer = setTimeout(() => drop(false), maxWaitMs);
      onAbort = () => drop(true);
      if (signal?.aborted) onAbort();
      else signal?.addEventListener('abort', onAbort, { once: true });
    });
    // Whichever loses the race below must not be an unhandled rejection.
    turn.catch(() => undefined);
    dropped.catch(() => undefined);
    try {
      const result = (await Promise.race([turn, dropped])) as T;
      work.inc({ outcome: 'done' });
      return result;
    } finally {
      clearTimeout(timer);
      if (onAbort) signal?.removeEventListener('abort', onAbort);
    }
  }

  return {
    hash: (password, signal) => inTurn(() => bcrypt.hash(password, rounds), signal),
    async verify(password, hash, signal) {
      // bcrypt stops at a NUL byte and after 72 bytes: such a password was never accepted.
      const impossible =
        Buffer.byteLength(password) > MAX_PASSWORD_BYTES || password.includes('\0');
      if (impossible || hash === undefined) {
        dummy ??= bcrypt.hash('not a password', rounds);
        const against = await dummy;
        await inTurn(() => bcrypt.compare(password, against), signal);
        return false;
      }
      return inTurn(() => bcrypt.compare(password, hash), signal);
    },
    get waiting() {
      return queue.size;
    },
  };
}
