// One pino logger for the process; every line carries the service and instance it came from.
import pino from 'pino';

const identity: { service?: string; instance?: string } = {};

// Children take their parent's level when they are made (at import, in every module); a level
// changed later (a live setting) must reach them too.
const children = new Set<WeakRef<pino.Logger>>();

export const logger = pino({
  onChild: (child) => void children.add(new WeakRef(child)),
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
  if (level) setLogLevel(level);
}

/** The level of the process's logger and of every child logger made from it. */
export function setLogLevel(level: string): void {
  logger.level = level;
  for (const ref of children) {
    const child = ref.deref();
    if (child) child.level = level;
    else children.delete(ref);
  }
}
