// One pino logger for the process; every line carries the service and instance it came from.
import pino from 'pino';

const identity: { service?: string; instance?: string } = {};

export const logger = pino({
  // The one read of the environment outside config: loggers exist before config is loaded.
  level: process.env.LOG_LEVEL ?? 'info',
  base: undefined,
  timestamp: pino.stdTimeFunctions.isoTime,
  // A mixin rather than bindings: modules create children at import, before the identity is known.
  mixin: () => ({ service: identity.service, instance: identity.instance }),
  redact: {
    paths: ['password', '*.password', 'token', '*.token', 'authorization', '*.authorization'],
    censor: '[redacted]',
  },
});

export function setLogIdentity(service: string, instance: string, level?: string): void {
  identity.service = service;
  identity.instance = instance;
  if (level) logger.level = level;
}
