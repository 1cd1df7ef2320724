/**
 * The Reject button asks why before it rejects: a modal with one optional reason (at most the
 * 300 characters `/starfish reject <run> <reason>` keeps), whose submission is the same reject
 * command, for the same run, from the same channel. The run and channel travel in
 * private_metadata (ours, returned by Slack with the submission; checked all the same).
 */
import type { ModalView } from '@slack/types';
import { z } from 'zod';
import { MAX_REASON_CHARS, RUN_ID } from '../command/grammar.js';
import { untrustedPlain } from '../messages/message.js';

export const REJECT_CALLBACK = 'starfish_reject';
export const REASON_BLOCK = 'reason';
const ACTION = 'value';

const metadataSchema = z.object({ runId: z.string().regex(RUN_ID), channel: z.string().min(1).max(40) });
const stateSchema = z.object({ [REASON_BLOCK]: z.object({ [ACTION]: z.object({ value: z.string().nullish() }) }) });

const plain = (text: string) => ({ type: 'plain_text' as const, text });

export function rejectModal(runId: string, channel: string): ModalView {
  return {
    type: 'modal',
    callback_id: REJECT_CALLBACK,
    title: plain('Reject this run'),
    submit: plain('Reject run'),
    close: plain('Keep it waiting'),
    private_metadata: JSON.stringify(metadataSchema.parse({ runId, channel })),
    blocks: [
      { type: 'section', text: plain(`Run ${untrustedPlain(runId, 40)} will not be submitted. Its requester is told, with your reason.`) },
      {
        type: 'input',
        block_id: REASON_BLOCK,
        optional: true,
        label: plain('Reason'),
        hint: plain('For example: use the spot queue for runs this size.'),
        element: { type: 'plain_text_input', action_id: ACTION, multiline: true, max_length: MAX_REASON_CHARS },
      },
    ],
  };
}

export type RejectForm = { ok: true; runId: string; channel: string; reason?: string } | { ok: false; error: string };

export function readRejectForm(privateMetadata: string | undefined, values: unknown): RejectForm {
  let meta: z.infer<typeof metadataSchema>;
  try {
    meta = metadataSchema.parse(JSON.parse(privateMetadata ?? ''));
  } catch {
    return { ok: false, error: 'This form lost track of its run; use /starfish reject <run id> <reason> instead.' };
  }
  const state = stateSchema.safeParse(values);
  const reason = (state.success ? (state.data[REASON_BLOCK][ACTION].value ?? '') : '').replace(/\s+/g, ' ').trim();
  if (reason.length > MAX_REASON_CHARS) return { ok: false, error: `The reason is ${reason.length} characters; at most ${MAX_REASON_CHARS} are kept.` };
  return { ok: true, runId: meta.runId, channel: meta.channel, ...(reason ? { reason } : {}) };
}
