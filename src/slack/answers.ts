/** How the listeners answer a person: an ephemeral body for Slack, and the "try again" for a bus that did not take the work. */
import type { RespondArguments } from '@slack/bolt';
import type { Message } from '../messages/message.js';
import { errorMessage } from '../messages/blocks.js';

/** An ephemeral slash-command response carrying one of our messages. */
export function ephemeralResponse(message: Message): RespondArguments {
  return { response_type: 'ephemeral', text: message.text, blocks: message.blocks };
}

export const handOverFailed = (what: string) =>
  errorMessage(`starfish could not take ${what} right now (the request did not reach its queue). Nothing was started; try again in a minute.`);
