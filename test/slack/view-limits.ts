/**
 * Slack's documented limits for views and the blocks in them, checked over a whole view as sent
 * (views.open / views.publish bodies recorded by the stand-in). Sources:
 * https://docs.slack.dev/reference/views (modal title, submit and close 24 characters, 100 blocks,
 * private_metadata 3,000, callback_id 255; an input block needs a submit button),
 * https://docs.slack.dev/reference/block-kit/blocks (block_id 255 and unique, section text 3,000,
 * header 150, context 10 elements, actions 25 elements, input label and hint 2,000),
 * https://docs.slack.dev/reference/block-kit/block-elements (action_id 255, button text 75 and
 * value 2,000, select 100 options, checkboxes 10 options, placeholders 150, plain_text_input
 * max_length 1 to 3,000) and https://docs.slack.dev/reference/block-kit/composition-objects (option
 * text 75 and value 150; confirm title 100, text 300, buttons 30). Each number was checked against
 * those pages; @slack/types' comments still give an option value 75 characters, the reference 150.
 */
type Json = Record<string, unknown>;

const text = (o: unknown): string => (o && typeof o === 'object' && typeof (o as Json).text === 'string' ? ((o as Json).text as string) : '');

type Add = (problem: string) => void;

function tooLong(o: unknown, max: number, what: string, where: string, add: Add): void {
  if (text(o).length > max) add(`${where}: ${what} is ${text(o).length} characters (at most ${max})`);
}

function checkOptions(e: Json, where: string, add: Add): void {
  const options = Array.isArray(e.options) ? (e.options as Json[]) : [];
  if (e.type === 'static_select' && options.length > 100) add(`${where}: ${options.length} options (at most 100)`);
  if (e.type === 'checkboxes' && options.length > 10) add(`${where}: ${options.length} checkboxes (at most 10)`);
  if ((e.type === 'static_select' || e.type === 'checkboxes') && !options.length) add(`${where}: a menu with no options`);
  for (const o of options) {
    tooLong(o.text, 75, 'option text', where, add);
    if (typeof o.value !== 'string' || !o.value || o.value.length > 150) add(`${where}: option value ${JSON.stringify(o.value)} (1 to 150 characters)`);
  }
}

function checkConfirm(confirm: Json | undefined, where: string, add: Add): void {
  if (!confirm) return;
  tooLong(confirm.title, 100, 'confirm title', where, add);
  tooLong(confirm.text, 300, 'confirm text', where, add);
  tooLong(confirm.confirm, 30, 'confirm button', where, add);
  tooLong(confirm.deny, 30, 'deny button', where, add);
}

function checkElement(e: Json, where: string, add: Add): void {
  if (typeof e.action_id === 'string' && e.action_id.length > 255) add(`${where}: action_id longer than 255`);
  tooLong(e.placeholder, 150, 'placeholder', where, add);
  if (e.type === 'button') tooLong(e.text, 75, 'button text', where, add);
  if (e.type === 'button' && typeof e.value === 'string' && e.value.length > 2000) add(`${where}: button value longer than 2,000`);
  if (e.type === 'plain_text_input' && typeof e.max_length === 'number' && (e.max_length < 1 || e.max_length > 3000)) add(`${where}: max_length ${e.max_length} (1 to 3,000)`);
  checkOptions(e, where, add);
  checkConfirm(e.confirm as Json | undefined, where, add);
}

function checkBlock(b: Json, where: string, add: Add): void {
  if (b.type === 'section') tooLong(b.text, 3000, 'text', where, add);
  if (b.type === 'header') tooLong(b.text, 150, 'header', where, add);
  if (b.type === 'context' && (b.elements as unknown[]).length > 10) add(`${where}: more than 10 elements`);
  if (b.type === 'actions' && (b.elements as unknown[]).length > 25) add(`${where}: more than 25 elements`);
  if (b.type === 'input' && !text(b.label)) add(`${where}: an input needs a label`);
  if (b.type === 'input') tooLong(b.label, 2000, 'label', where, add);
  if (b.type === 'input') tooLong(b.hint, 2000, 'hint', where, add);
  const elements = [b.element, b.accessory, ...((b.type === 'actions' ? b.elements : []) as unknown[])].filter(Boolean) as Json[];
  for (const e of elements) checkElement(e, where, add);
}

/** Every limit the view breaks, as sentences; empty when it is within them all. */
export function viewLimitProblems(view: Json): string[] {
  const problems: string[] = [];
  const add = (p: string) => problems.push(p);
  const blocks = (view.blocks as Json[] | undefined) ?? [];
  if (blocks.length > 100) add(`${blocks.length} blocks (at most 100)`);
  if (view.type === 'modal') {
    for (const key of ['title', 'submit', 'close'] as const) if (text(view[key]).length > 24) add(`${key} "${text(view[key])}" is longer than 24 characters`);
    if (!text(view.title)) add('a modal needs a title');
    if (blocks.some((b) => b.type === 'input') && !view.submit) add('an input block needs a submit button');
  }
  if (typeof view.private_metadata === 'string' && view.private_metadata.length > 3000) add('private_metadata longer than 3,000');
  if (typeof view.callback_id === 'string' && view.callback_id.length > 255) add('callback_id longer than 255');
  const ids = new Set<string>();
  blocks.forEach((b, i) => {
    const where = `block ${i} (${String(b.type)})`;
    if (typeof b.block_id === 'string' && b.block_id.length > 255) add(`${where}: block_id longer than 255`);
    if (typeof b.block_id === 'string' && ids.has(b.block_id)) add(`${where}: block_id ${b.block_id} used twice`);
    if (typeof b.block_id === 'string') ids.add(b.block_id);
    checkBlock(b, where, add);
  });
  return problems;
}
