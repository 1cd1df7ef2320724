/**
 * Renders Block Kit messages as terminal text for the console channel. What comes out is safe to
 * write to a terminal: entities are decoded last (an escaped `<!channel>` is shown as typed, never
 * turned into markup), and terminal escape sequences, control and invisible format characters are
 * dropped (scrub), whatever a gene name or a failure reason carried.
 */
import type { ActionsBlockElement, ContextBlockElement, KnownBlock, SectionBlock, TextObject } from '@slack/types';
import { scrub, type Message } from './message.js';
import { ACTIONS } from './blocks.js';

const EMOJI: Record<string, string> = {
  warning: '⚠', x: '✗', white_check_mark: '✓', tada: '★', gear: '⚙', hourglass: '⌛', no_entry: '⛔',
  alarm_clock: '⏰', rocket: '🚀', memo: '📝', octagonal_sign: '⛔', twisted_rightwards_arrows: '⇄',
  inbox_tray: '📥',
};

/** The typed equivalent of each button, so the console takes button actions as commands. */
const TYPED: Record<string, string> = { [ACTIONS.approve]: 'approve', [ACTIONS.reject]: 'reject', [ACTIONS.cancel]: 'cancel', [ACTIONS.retry]: 'retry' };

function mrkdwnToText(text: string): string {
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

/** mrkdwn as the console shows it; plain text as written (Slack shows it literally too). */
const textToText = (t: TextObject): string => (t.type === 'mrkdwn' ? mrkdwnToText(t.text) : t.text);

function sectionToText(block: SectionBlock): string {
  return [...(block.text ? [block.text] : []), ...(block.fields ?? [])].map(textToText).join('\n');
}

function contextElementToText(e: ContextBlockElement): string {
  return e.type === 'image' ? `[image: ${e.alt_text ?? ''}]` : textToText(e);
}

/** A button as the command to type; other elements (the builders send none) by their kind. */
function actionToText(e: ActionsBlockElement): string {
  if (e.type !== 'button') return `[${e.type}]`;
  if (e.url) return `[${e.text.text}: ${e.url}]`;
  const action = e.action_id ?? '';
  return `[${e.text.text}: /starfish ${[TYPED[action] ?? action, e.value].filter(Boolean).join(' ')}]`;
}

function blockToText(block: KnownBlock): string | undefined {
  switch (block.type) {
    case 'header':
      return `── ${block.text.text} ──`;
    case 'section':
      return sectionToText(block);
    case 'context':
      return block.elements.map(contextElementToText).join('  ');
    case 'actions':
      return block.elements.map(actionToText).join('  ');
    case 'image':
      return `[image: ${block.alt_text}]`;
    case 'divider':
      return '─'.repeat(40);
    default:
      return `[${block.type}]`;
  }
}

export function renderText(message: Message): string {
  if (!message.blocks.length) return scrub(mrkdwnToText(message.text), true);
  return scrub(message.blocks.map(blockToText).filter((line): line is string => line !== undefined).join('\n'), true);
}
