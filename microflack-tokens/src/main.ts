// The tokens service process: config, platform clients, then listen and register. No database.
import { connectPlatform, loadConfig, runService } from '@microflack/common';
import { createApp } from './app.js';

const config = loadConfig();
const platform = await connectPlatform(config);
await runService({
  name: 'tokens',
  config,
  app: createApp({ auth: platform.auth, lb: platform.lb, health: platform.health }),
  etcd: platform.etcd,
  location: '/api/tokens',
  close: [() => platform.close()],
});
