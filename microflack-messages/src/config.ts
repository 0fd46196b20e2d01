// The messages service's settings beyond the platform's own.
import { answerCacheConfig, onOff, rowCacheConfig } from '@microflack/common';
import { z } from 'zod';

/**
 * Bytes of messages' JSON kept by default (the list cache, ARCHITECTURE.md "List caches"): some
 * 60,000 typical messages, far more than a day's list.
 */
export const DEFAULT_ROW_CACHE_BYTES = 16 * 1024 * 1024;

export const messagesConfig = {
  ...answerCacheConfig,
  ...rowCacheConfig(DEFAULT_ROW_CACHE_BYTES),
  // Off in production: a link to an internal address must not make this service fetch it.
  LINK_PREVIEW_ALLOW_PRIVATE: z.enum(['0', '1']).default('0'),
  LINK_PREVIEW_ALLOW_ADDRESSES: z
    .string()
    .default('')
    .transform((s) =>
      s
        .split(',')
        .map((a) => a.trim())
        .filter(Boolean),
    ),
  LINK_PREVIEW_TIMEOUT_MS: z.coerce.number().int().min(100).max(30000).default(3000),
  // The default of the live setting `/config/messages/link_previews`.
  LINK_PREVIEWS: onOff.default(true),
};
