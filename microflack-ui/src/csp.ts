// Content-Security-Policy directives, written once and narrowed per page.
export type CspDirectives = Record<string, string>;

// Only what the client needs: its own scripts and styles, and the same origin for the API and
// Socket.IO. Images may come from anywhere, as message previews link them; scripts never do.
export const UI_CSP: CspDirectives = {
  'default-src': "'self'",
  'script-src': "'self'",
  'style-src': "'self'",
  'img-src': "'self' data: https: http:",
  'connect-src': "'self'",
  'object-src': "'none'",
  'base-uri': "'none'",
  'form-action': "'self'",
  'frame-ancestors': "'none'",
};

export function contentSecurityPolicy(directives: CspDirectives): string {
  return Object.entries(directives)
    .map(([name, value]) => `${name} ${value}`)
    .join('; ');
}
