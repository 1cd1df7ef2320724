/** Renders Block Kit messages as terminal text for the console channel. */
import type { Block, Message } from './message.js';
import { ACTIONS } from './blocks.js';

const EMOJI: Record<string, string> = {
  warning: '⚠', x: '✗', white_check_mark: '✓', tada: '★', gear: '⚙', hourglass: '⌛', no_entry: '⛔',
  alarm_clock: '⏰', rocket: '🚀', memo: '📝', octagonal_sign: '⛔', twisted_rightwards_arrows: '⇄',
  inbox_tray: '📥',
};

/** The typed equivalent of each button, so the console takes button actions as commands. */
const TYPED: Record<string, string> = { [ACTIONS.approve]: 'approve', [ACTIONS.reject]: 'reject', [ACTIONS.cancel]: 'cancel' };

export function mrkdwnToText(text: string): string {
  return text
    .replace(/<@([A-Za-z0-9._-]+)>/g, '@$1')
    .replace(/<([^|>]+)\|([^>]+)>/g, '$2 ($1)')
    .replace(/<([^>]+)>/g, '$1')
    .replace(/:([a-z_]+):/g, (whole, name: string) => EMOJI[name] ?? whole)
    .replace(/(^|\s)\*([^*\n]+)\*/g, '$1$2')
    .replace(/`([^`]*)`/g, '$1')
    .replace(/&lt;/g, '<')
    .replace(/&gt;/g, '>')
    .replace(/&amp;/g, '&');
}

function blockToText(block: Block): string | undefined {
  switch (block.type) {
    case 'header':
      return `── ${block.text.text} ──`;
    case 'section':
      return mrkdwnToText(block.text.text);
    case 'context':
      return block.elements.map((e) => mrkdwnToText(e.text)).join('  ');
    case 'actions':
      return block.elements.map((b) => `[${b.text.text}: /starfish ${TYPED[b.action_id] ?? b.action_id} ${b.value}]`).join('  ');
    case 'image':
      return `[image: ${block.alt_text}]`;
    case 'divider':
      return '─'.repeat(40);
  }
}

export function renderText(message: Message): string {
  if (!message.blocks.length) return mrkdwnToText(message.text);
  return message.blocks.map(blockToText).filter((line): line is string => line !== undefined).join('\n');
}
