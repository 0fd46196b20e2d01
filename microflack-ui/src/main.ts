// The ui service process: serves the client at `/`, the load balancer's default backend.
import { createEtcd, loadConfig, runService } from '@microflack/common';
import { createApp } from './app.js';
import { loadAssets } from './assets.js';
import { uiConfig } from './config.js';

const config = loadConfig(uiConfig);
const polling =
  config.NO_SOCKETIO !== undefined && !['0', 'false', 'no'].includes(config.NO_SOCKETIO);

await runService({
  name: 'ui',
  config,
  app: createApp({ assets: loadAssets(), mode: polling ? 'polling' : 'socketio' }),
  etcd: createEtcd(config.ETCD),
  location: '/',
});
