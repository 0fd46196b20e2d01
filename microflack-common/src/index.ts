// The public surface of @microflack/common.
export * from './config.js';
export * from './log.js';
export * from './errors.js';
export * from './etcd.js';
export * from './revocation.js';
export * from './auth.js';
export * from './registry.js';
export * from './lb-client.js';
export * from './metrics.js';
export * from './events.js';
export * from './db.js';
export * from './service.js';
export * from './platform.js';
export * from './json-cache.js';
export * from './live-config.js';
export * from './contract/index.js';
export * from './retry.js';
