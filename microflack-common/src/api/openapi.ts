// The OpenAPI 3.1 document of the users, tokens and messages APIs, generated from their operations.
import { z } from 'zod';
import {
  createDocument,
  type ZodOpenApiOperationObject,
  type ZodOpenApiPathsObject,
  type ZodOpenApiResponseObject,
} from 'zod-openapi';
import type { oas31 } from 'zod-openapi';
import type { Operation, ResponseSpec, Security } from './operations.js';
import { usersApi } from './users.js';
import { tokensApi } from './tokens.js';
import { messagesApi } from './messages.js';
import { roomsApi } from './rooms.js';

/** Every operation the users, tokens and messages services mount, in their mounting order (messages mounts rooms too). */
export const apiOperations: readonly Operation[] = [
  ...Object.values(usersApi),
  ...Object.values(tokensApi),
  ...Object.values(messagesApi),
  ...Object.values(roomsApi),
];

export const API_VERSION = '1.0.0';

const security: Record<Security, oas31.SecurityRequirementObject[]> = {
  none: [],
  bearer: [{ bearerAuth: [] }],
  // Anonymous, or a token (which must then be valid).
  optionalBearer: [{}, { bearerAuth: [] }],
  basic: [{ basicAuth: [] }],
};

function response(spec: ResponseSpec): ZodOpenApiResponseObject {
  const headers = Object.entries(spec.headers ?? {}).map(([name, h]) => {
    const schema = h.schema ?? z.string();
    const meta = {
      description: h.description,
      ...(h.example !== undefined ? { example: h.example } : {}),
    };
    return [name, h.required ? schema.meta(meta) : schema.optional().meta(meta)] as const;
  });
  return {
    description: spec.description,
    ...(headers.length > 0 ? { headers: z.object(Object.fromEntries(headers)) } : {}),
    ...(spec.schema
      ? {
          content: {
            'application/json': {
              schema: spec.schema,
              ...(spec.example !== undefined ? { example: spec.example } : {}),
            },
          },
        }
      : {}),
  };
}

function operation(op: Operation): ZodOpenApiOperationObject {
  return {
    operationId: op.operationId,
    summary: op.summary,
    ...(op.description ? { description: op.description } : {}),
    tags: [op.tag],
    security: security[op.security],
    ...(op.params || op.query || op.headers
      ? {
          requestParams: {
            ...(op.params ? { path: op.params } : {}),
            ...(op.query ? { query: op.query } : {}),
            ...(op.headers ? { header: op.headers } : {}),
          },
        }
      : {}),
    ...(op.body
      ? {
          requestBody: {
            required: true,
            content: {
              'application/json': {
                schema: op.body,
                ...(op.bodyExample !== undefined ? { example: op.bodyExample } : {}),
              },
            },
          },
        }
      : {}),
    responses: Object.fromEntries(
      Object.entries(op.responses).map(([status, spec]) => [status, response(spec)]),
    ),
  };
}

let built: oas31.OpenAPIObject | undefined;

/** The document (built on first use, then the same object). */
export function openApiDocument(): oas31.OpenAPIObject {
  if (built) return built;
  const paths: ZodOpenApiPathsObject = {};
  for (const op of apiOperations) {
    paths[op.path] = { ...paths[op.path], [op.method]: operation(op) };
  }
  built = createDocument({
    openapi: '3.1.0',
    info: {
      title: 'MicroFlack API',
      version: API_VERSION,
      description:
        'The REST API of MicroFlack, a chat platform: users, tokens (sign-in), messages and rooms, compatible with the original MicroFlack. Every refusal answers `{"error": "..."}`. Real-time updates come over Socket.IO at /socket.io, not described here.',
      license: { name: 'MIT', identifier: 'MIT' },
    },
    servers: [{ url: '/', description: 'The load balancer that served this document.' }],
    tags: [
      { name: 'users', description: 'Accounts and presence.' },
      { name: 'tokens', description: 'Sign in and out: JWTs for a nickname and password.' },
      { name: 'messages', description: 'The chat: Markdown messages with link previews.' },
      {
        name: 'rooms',
        description: 'Public and private rooms, direct messages, members, read markers.',
      },
    ],
    components: {
      securitySchemes: {
        bearerAuth: {
          type: 'http',
          scheme: 'bearer',
          bearerFormat: 'JWT',
          description: 'A token from POST /api/tokens.',
        },
        basicAuth: {
          type: 'http',
          scheme: 'basic',
          description: 'Nickname and password; only to get a token (and for GET /api/users/me).',
        },
      },
    },
    paths,
  });
  return built;
}
