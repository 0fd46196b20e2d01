// Password hashing with bcrypt's async API, which runs in libuv's thread pool, off the event loop.
import bcrypt from 'bcrypt';
// bcrypt reads at most 72 bytes; longer passwords are refused (by the contract's Password schema)
// rather than silently truncated.
import { MAX_PASSWORD_BYTES } from '@microflack/common/api';

export interface Passwords {
  hash(password: string): Promise<string>;
  verify(password: string, hash: string | undefined): Promise<boolean>;
}

export function createPasswords(rounds: number): Passwords {
  // Compared against when the nickname is unknown, at the same cost, so both cases take as long.
  let dummy: Promise<string> | undefined;
  return {
    hash: (password) => bcrypt.hash(password, rounds),
    async verify(password, hash) {
      // bcrypt stops at a NUL byte and after 72 bytes: such a password was never accepted.
      const impossible =
        Buffer.byteLength(password) > MAX_PASSWORD_BYTES || password.includes('\0');
      if (impossible || hash === undefined) {
        await bcrypt.compare(password, await (dummy ??= bcrypt.hash('not a password', rounds)));
        return false;
      }
      return bcrypt.compare(password, hash);
    },
  };
}
