import t from 'tap';
import { startRedis, waitFor } from '../../helpers/redis.js';
import { storeContract } from '../../helpers/store-contract.js';
import { redisStoreFor } from './redis-helper.js';

const redis = await startRedis({ t });
// The default 50 ms deadline: the contract is about decisions, and they must not need more.
const { store } = redisStoreFor(t, { redis: redis.url });
await waitFor('redis store ready', () => store.health().ready);
await storeContract(t, store, { label: 'redis' });
