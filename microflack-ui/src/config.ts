// The ui service's settings beyond the platform's own.
import { z } from 'zod';

export const uiConfig = {
  // As in the original: when set, browsers poll the REST API every second instead of Socket.IO.
  NO_SOCKETIO: z.string().optional(),
};
