// The one shape of every refusal, and how a failed parse becomes its message.
import { z } from 'zod';
import { HttpError } from '../errors.js';

export const ErrorBody = z
  .strictObject({
    error: z.string().meta({ description: 'What was wrong, naming the field when one was.' }),
  })
  .meta({ id: 'Error', description: 'Every refusal and failure answers this.' });
export type ErrorBody = z.infer<typeof ErrorBody>;

/**
 * "<field> <problem>", as the API has always worded it (e.g. "limit must be an integer from 1 to
 * 1000"): the field is the issue's path, or `whole` (body, query) when the whole value was wrong.
 */
export function issueMessage(issue: z.core.$ZodIssue, whole: string): string {
  const field = issue.path.length > 0 ? issue.path.map(String).join('.') : whole;
  return `${field} ${issue.message}`;
}

function parseOr<S extends z.ZodType>(
  schema: S,
  input: unknown,
  refuse: (issue: z.core.$ZodIssue) => HttpError,
): z.output<S> {
  const result = schema.safeParse(input);
  if (result.success) return result.data;
  // The first problem only, as the hand-written checks reported it.
  throw refuse(result.error.issues[0] as z.core.$ZodIssue);
}

/** A JSON body, parsed; 400 naming the field otherwise. */
export function parseBody<S extends z.ZodType>(schema: S, body: unknown): z.output<S> {
  return parseOr(schema, body, (issue) => new HttpError(400, issueMessage(issue, 'body')));
}

/** The query string's parameters, parsed; 400 naming the parameter otherwise. */
export function parseQuery<S extends z.ZodType>(schema: S, query: unknown): z.output<S> {
  return parseOr(schema, query, (issue) => new HttpError(400, issueMessage(issue, 'query')));
}

/** Path parameters, parsed; a malformed id names nothing that exists, so 404 with `notFound`. */
export function parseParams<S extends z.ZodType>(
  schema: S,
  params: unknown,
  notFound: string,
): z.output<S> {
  return parseOr(schema, params, () => new HttpError(404, notFound));
}
