// The API's machine-readable description (GET /api/openapi.json) and its human-readable reference
// (GET /api/docs: Swagger UI, served from the swagger-ui-dist package, nothing from elsewhere). Both
// paths fall to the ui, the load balancer's default backend.
import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';
import { Router, type Response } from 'express';
import { openApiDocument } from '@microflack/common/api';
import { contentSecurityPolicy, UI_CSP } from './csp.js';

const require = createRequire(import.meta.url);
const SWAGGER_UI_DIR = path.dirname(require.resolve('swagger-ui-dist/package.json'));
const SWAGGER_UI_VERSION = (
  JSON.parse(fs.readFileSync(path.join(SWAGGER_UI_DIR, 'package.json'), 'utf8')) as {
    version: string;
  }
).version;

export const OPENAPI_PATH = '/api/openapi.json';
export const DOCS_PATH = '/api/docs';
// Versioned, so that the files can be cached for good and a new version is fetched anew.
const ASSETS_PATH = `${DOCS_PATH}/assets/${SWAGGER_UI_VERSION}`;
// Only what the page loads (and the maps a browser's developer tools ask for), nothing else of the package.
const ASSET_FILES = new Set([
  'swagger-ui.css',
  'swagger-ui.css.map',
  'swagger-ui-bundle.js',
  'swagger-ui-bundle.js.map',
  'favicon-32x32.png',
]);

// The ui's policy, narrowed: only the platform's own images (Swagger UI's icons are data: URLs).
const DOCS_CSP = contentSecurityPolicy({
  ...UI_CSP,
  'img-src': "'self' data:",
});
// The JSON is data, never a page.
const JSON_CSP = "default-src 'none'; frame-ancestors 'none'";

// Swagger UI's own setup, from the same origin (the policy allows no inline script). The topbar
// (which loads any URL typed into it) and the query-string config are left out, and so is the
// validator badge, which would fetch from outside the platform.
const INIT_SCRIPT = `window.ui = SwaggerUIBundle({
  url: ${JSON.stringify(OPENAPI_PATH)},
  dom_id: '#swagger-ui',
  deepLinking: true,
  queryConfigEnabled: false,
  validatorUrl: null,
  presets: [SwaggerUIBundle.presets.apis],
  layout: 'BaseLayout',
});
`;

const PAGE = `<!doctype html>
<html lang="en">
  <head>
    <meta charset="utf-8">
    <meta name="viewport" content="width=device-width, initial-scale=1">
    <title>MicroFlack API reference</title>
    <link rel="icon" type="image/png" href="${ASSETS_PATH}/favicon-32x32.png">
    <link rel="stylesheet" href="${ASSETS_PATH}/swagger-ui.css">
  </head>
  <body>
    <div id="swagger-ui"></div>
    <script src="${ASSETS_PATH}/swagger-ui-bundle.js"></script>
    <script src="${DOCS_PATH}/init.js"></script>
  </body>
</html>
`;

function securityHeaders(res: Response, csp: string): void {
  res.set({
    'Content-Security-Policy': csp,
    'X-Content-Type-Options': 'nosniff',
    'Referrer-Policy': 'same-origin',
  });
}

export function docsRouter(): Router {
  // Serialised once: the document is the same for the life of the process.
  const json = Buffer.from(JSON.stringify(openApiDocument()));
  const router = Router();

  router.get(OPENAPI_PATH, (_req, res) => {
    securityHeaders(res, JSON_CSP);
    res.set('Cache-Control', 'no-cache');
    res.type('application/json; charset=utf-8').send(json);
  });

  router.get(DOCS_PATH, (_req, res) => {
    securityHeaders(res, DOCS_CSP);
    res.set('Cache-Control', 'no-cache');
    res.type('html').send(PAGE);
  });

  router.get(`${DOCS_PATH}/init.js`, (_req, res) => {
    securityHeaders(res, JSON_CSP);
    res.set('Cache-Control', 'no-cache');
    res.type('text/javascript; charset=utf-8').send(INIT_SCRIPT);
  });

  router.get(`${ASSETS_PATH}/:file`, (req, res, next) => {
    const file = req.params.file as string;
    if (!ASSET_FILES.has(file)) return next();
    securityHeaders(res, JSON_CSP);
    res.sendFile(file, {
      root: SWAGGER_UI_DIR,
      immutable: true,
      maxAge: '365d',
      dotfiles: 'deny',
    });
  });

  return router;
}
