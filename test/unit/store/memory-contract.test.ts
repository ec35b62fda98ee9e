import t from 'tap';
import { MemoryStore } from '../../../src/store/memory-store.js';
import { storeContract } from '../../helpers/store-contract.js';

const store = new MemoryStore({ maxKeys: 1_000_000, sweep: false });
t.teardown(() => store.close());
await storeContract(t, store, { label: 'memory' });
