import t from 'tap';
import { createRedisStore } from '../../src/store/redis-store.js';
import { startRedis, waitFor } from '../helpers/redis.js';
import { storeContract } from './contract.js';

const redis = await startRedis({ t });
const store = createRedisStore({ url: redis.url, timeoutMs: 1_000 });
t.teardown(() => store.close());
await waitFor('redis store ready', () => store.health().ready);
await storeContract(t, store, { label: 'redis' });
