// Building blocks of the request schemas: query parameters (strings, or arrays when repeated) and
// path ids. Built once at import; routes only parse with them.
import { z } from 'zod';

/** A repeated parameter arrives as an array: ambiguous, so refused. */
function onceOr(message: string) {
  return (issue: { input?: unknown }) =>
    Array.isArray(issue.input) ? 'must be given once' : message;
}

/**
 * A query parameter holding an integer from min to max, written in at most 15 digits (no sign when
 * min is 0 or more); parsed to a number.
 */
export function queryInteger(opts: {
  min: number;
  max: number;
  description: string;
  /** What a bad value is told (default: "must be an integer from <min> to <max>"). */
  message?: string;
}) {
  const { min, max } = opts;
  const message = opts.message ?? `must be an integer from ${min} to ${max}`;
  const digits = min >= 0 ? /^\d{1,15}$/ : /^-?\d{1,15}$/;
  return z
    .string({ error: onceOr(message) })
    .refine((v) => digits.test(v) && Number(v) >= min && Number(v) <= max, { error: message })
    .transform(Number)
    .meta({
      description: opts.description,
      // The wire form is a string; documented as the integer it stands for.
      override: { type: 'integer', minimum: min, maximum: max },
    });
}

/** A query flag: 1 or true, 0 or false. */
export function queryFlag(description: string) {
  const message = 'must be 0 or 1';
  return z
    .enum(['0', '1', 'true', 'false'], { error: onceOr(message) })
    .transform((v) => v === '1' || v === 'true')
    .meta({ description });
}

/** A path id: a positive integer without sign or leading zeros. */
export function pathId(description: string, maxDigits: number) {
  const pattern = new RegExp(`^[1-9][0-9]{0,${maxDigits - 1}}$`);
  return z
    .string()
    .regex(pattern)
    .transform(Number)
    .refine((n) => Number.isSafeInteger(n))
    .meta({ description, example: '1' });
}

/**
 * The query parameters of a route: each one known, each given once. A parameter the route does
 * not know (a misspelling, `user_id[]`) is refused rather than silently ignored, which would answer
 * something other than what was asked.
 */
export function queryParams<T extends z.core.$ZodLooseShape>(shape: T) {
  return z.strictObject(shape, {
    error: (issue) =>
      issue.code === 'unrecognized_keys'
        ? issue.keys.length === 1
          ? `parameter ${JSON.stringify(issue.keys[0])} is not known here`
          : `parameters ${issue.keys.map((k) => JSON.stringify(k)).join(', ')} are not known here`
        : undefined,
  });
}
