/** What people ask for, carried on the bus from the chat side to the launcher. */
import { z } from 'zod';
import { runRequestSchema } from './manifest.js';

const who = { userId: z.string().min(1), channel: z.string().min(1), responseUrl: z.string().url().optional() };

export const runEventSchema = z.discriminatedUnion('type', [
  z.object({ type: z.literal('RunRequested'), ...who, request: runRequestSchema, requestId: z.string().uuid().optional() }),
  z.object({ type: z.literal('RunApproved'), ...who, runId: z.string() }),
  z.object({ type: z.literal('RunRejected'), ...who, runId: z.string(), reason: z.string().max(300).optional() }),
  z.object({ type: z.literal('RunCancelled'), ...who, runId: z.string() }),
  z.object({ type: z.literal('RunRetryRequested'), ...who, runId: z.string() }),
  z.object({
    type: z.literal('StageRequested'),
    ...who,
    source: z.string(),
    name: z.string(),
  }),
]);

export type RunEvent = z.infer<typeof runEventSchema>;
export type RunEventOf<T extends RunEvent['type']> = Extract<RunEvent, { type: T }>;
