import type { LoadOptions } from './config/load.js';
import type { Settings } from './settings.js';
import { STORE_CAPABILITIES } from './store/capabilities.js';

/**
 * How the config is compiled under these settings: --merge-domains, and a
 * limit the chosen store cannot decide (sliding_window on Redis) is a config
 * problem: fatal at start-up, and a reload that needs it keeps the old config.
 */
export function loadOptionsOf(settings: Pick<Settings, 'mergeDomains' | 'store'>): LoadOptions {
  return { mergeDomains: settings.mergeDomains, store: STORE_CAPABILITIES[settings.store] };
}
