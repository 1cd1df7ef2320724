/** Help text, one topic per command; the examples are the grammar's own. */
import { EXAMPLES } from './grammar.js';
import type { Message } from '../messages/message.js';
import { noticeMessage } from '../messages/blocks.js';

const TOPICS: Record<string, string> = {
  run: `*run &lt;experiment.json&gt; [options]* — process every FOV of a SpaceTx experiment in Batch jobs (one FOV each, or a chunk once the recipe's time per FOV is known), then merge the results.
Options: \`recipe=URL\` the .py defining process_fov (fov_index, experiment_url or fov, codebook) · \`fovs=all|a-b,c\` which FOVs: all (default), or indices and ranges (\`fovs=2\` is FOV 2; \`fovs=0-3,7\`) · \`first=N\` the first N FOVs · \`queue=NAME\` · \`name=LABEL\` · \`dry-run\` (plan only).
Large runs may wait for an approver. In Slack, \`/starfish run\` alone opens a form with these fields (and the app's Home tab lists your runs). Example: \`${EXAMPLES.run}\``,
  status: `*status [run-id]* — the state of a run (your latest if no id). Example: \`${EXAMPLES.status}\``,
  list: `*list* — the recent runs. Example: \`${EXAMPLES.list}\``,
  cancel: `*cancel &lt;run-id&gt;* — terminate every job of a run. Example: \`${EXAMPLES.cancel}\``,
  retry: `*retry &lt;run-id&gt;* — rerun only the failed FOVs of a finished run with the recipe as it was at launch, and merge again (for an edited recipe, start a new run with fovs=…). Example: \`${EXAMPLES.retry}\``,
  stage: `*stage &lt;experiment.json URL&gt; [as=NAME]* — copy a whole experiment into the lab's store (the team bucket on AWS). Example: \`${EXAMPLES.stage}\``,
  approve: `*approve &lt;run-id&gt;* — the typed form of the Approve button. Example: \`${EXAMPLES.approve}\``,
  reject: `*reject &lt;run-id&gt; [reason]* — the typed form of the Reject button; the words after the run id tell the requester why. Example: \`${EXAMPLES.reject}\``,
  help: `*help [command]* — this text. Example: \`${EXAMPLES.help}\``,
};

export function helpMessage(topic?: string): Message {
  if (topic && TOPICS[topic]) return noticeMessage(TOPICS[topic]);
  const lines = ['run', 'status', 'list', 'cancel', 'retry', 'stage', 'approve', 'reject', 'help'].map((k) => TOPICS[k]);
  return noticeMessage(`*starfish* runs starfish pipelines from this channel.\n\n${lines.join('\n\n')}`);
}
