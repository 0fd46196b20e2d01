// The load-balancer configurator process: `node microflack-admin/lb/dist/main.js`, configured by the environment.
import { logger, setLogIdentity } from '@microflack/common';
import { loadLbConfig } from './config.js';
import { Configurator } from './configurator.js';

const log = logger.child({ module: 'lb' });

const config = loadLbConfig();
setLogIdentity('lb', `lb-${process.pid}`, config.logLevel);
if (!config.statsPassword) log.warn('no LB_STATS_PASSWORD: the /stats page is disabled');

const configurator = new Configurator(config);
try {
  await configurator.start();
} catch (err) {
  log.fatal({ err }, 'load balancer did not start');
  await configurator.stop().catch(() => undefined);
  process.exit(1);
}
log.info(
  {
    port: config.port,
    bind: config.bind,
    cfg: config.cfgFile,
    pid: configurator.haproxy.masterPid,
  },
  'load balancer ready',
);

for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  process.once(signal, () => {
    log.info({ signal, haproxy: config.stopHaproxyOnExit ? 'stop' : 'keep' }, 'shutting down');
    configurator.stop().then(
      () => process.exit(0),
      (err) => {
        log.error({ err }, 'shutdown failed');
        process.exit(1);
      },
    );
  });
}
