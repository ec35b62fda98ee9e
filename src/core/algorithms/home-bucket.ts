// A global limit's bucket in its home region (store/redis/global-limits.ts):
// a token bucket that refills only up to the burst less what the regions
// hold in unexpired leases (`outstanding`), so bucket plus leases never
// exceed the burst. The script reads the leases from the hash `<key>:l`.
import type { AlgorithmModule } from './algorithm.js';
import { tokenBucket } from './token-bucket.js';

export const homeBucket: AlgorithmModule = {
  ...tokenBucket,
  code: 'h',
  fromReply: (level, tsUs, outstanding) => (outstanding > 0 ? { level, tsUs, outstanding } : { level, tsUs }),
  // Grants change it too: no local copy can know it.
  mirrored: false,
};
