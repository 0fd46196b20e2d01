// @microflack/common/api: the REST API's contract (zod schemas of every request and response of
// users, tokens and messages), the parse helpers routes use, the response check, the OpenAPI document.
export * from './errors.js';
export * from './operations.js';
export * from './fields.js';
export * from './users.js';
export * from './tokens.js';
export * from './messages.js';
export * from './rooms.js';
export * from './openapi.js';
export * from './check.js';
