// The ui service's app: the page (never cached) and the bundled client (cached for good).
import path from 'node:path';
import express, { type Express } from 'express';
import { createServiceApp } from '@microflack/common';
import type { Assets } from './assets.js';
import { renderPage, type ClientMode } from './page.js';
import { contentSecurityPolicy, UI_CSP } from './csp.js';
import { docsRouter } from './docs.js';

export interface AppDeps {
  assets: Assets;
  mode: ClientMode;
}

const CONTENT_SECURITY_POLICY = contentSecurityPolicy(UI_CSP);

export function createApp({ assets, mode }: AppDeps): Express {
  const page = renderPage(assets, mode);
  return createServiceApp({}, (app) => {
    // Hashed names change with the content, so a cached file is never stale.
    app.use(
      '/static',
      express.static(assets.dir, {
        immutable: true,
        maxAge: '365d',
        index: false,
        fallthrough: true,
        setHeaders: (res, file) => {
          if (path.basename(file) === 'manifest.json') res.set('Cache-Control', 'no-cache');
        },
      }),
    );
    app.get(['/', '/index.html'], (_req, res) => {
      // Revalidated every time, so a new deployment's asset names are picked up at once.
      res.set({
        'Cache-Control': 'no-cache',
        'Content-Security-Policy': CONTENT_SECURITY_POLICY,
        'X-Content-Type-Options': 'nosniff',
        'Referrer-Policy': 'same-origin',
      });
      res.type('html').send(page);
    });
    // The API's OpenAPI document and its reference, which the load balancer leaves to the ui.
    app.use(docsRouter());
  });
}
