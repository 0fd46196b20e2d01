// What an express 5 app mounts: its router stack walked, mounted routers followed.
import type { Express } from 'express';
import { openApiPath, RESPONSE_CHECK } from '@microflack/common/api';

export interface MountedRoute {
  method: string;
  /** In OpenAPI form: `/api/users/{id}`. */
  path: string;
}

interface RouteLike {
  path: string | string[];
  methods: Record<string, boolean>;
}
interface LayerLike {
  rawPath?: string | string[] | RegExp;
  route?: RouteLike;
  handle?: { stack?: LayerLike[]; [RESPONSE_CHECK]?: boolean };
}

function paths(p: string | string[] | RegExp | undefined): string[] {
  if (p === undefined) return ['/'];
  if (p instanceof RegExp) throw new Error(`a route mounted at a regular expression: ${p}`);
  return Array.isArray(p) ? p : [p];
}

/**
 * Every method and path the app routes, mounted routers included; the response check's router
 * (NODE_ENV=test) is left out, and so are middleware that answer no particular route.
 */
export function mountedRoutes(app: Express): MountedRoute[] {
  const out: MountedRoute[] = [];
  const walk = (stack: LayerLike[], prefix: string) => {
    for (const layer of stack) {
      if (layer.route) {
        for (const path of paths(layer.route.path)) {
          for (const [method, on] of Object.entries(layer.route.methods)) {
            if (on && method !== '_all') {
              out.push({ method, path: openApiPath(prefix, path) || '/' });
            }
          }
        }
      } else if (layer.handle?.stack && !layer.handle[RESPONSE_CHECK]) {
        for (const mount of paths(layer.rawPath)) {
          walk(layer.handle.stack, mount === '/' ? prefix : prefix + mount);
        }
      }
    }
  };
  walk((app as unknown as { router: { stack: LayerLike[] } }).router.stack, '');
  return out;
}

/** Whether the app holds its answers to the contract (the response check is mounted). */
export function checksResponses(app: Express): boolean {
  const stack = (app as unknown as { router: { stack: LayerLike[] } }).router.stack;
  return stack.some((layer) => layer.handle?.[RESPONSE_CHECK] === true);
}
