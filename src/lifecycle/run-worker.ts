/**
 * The I/O around the lifecycle: read the manifest, decide, compare-and-swap, then perform the
 * effects the stored manifest claims. An effect that fails gives its claim (and the claims of
 * the effects after it) back and the error propagates, so the fact is redelivered and sent then.
 */
import type { CoreDeps } from '../core.js';
import type { MessageRef } from '../ports.js';
import { updateManifest } from '../run/manifest-store.js';
import { readClaim } from '../run/claims.js';
import { runKeys } from '../run/layout.js';
import type { RunManifest } from '../run/manifest.js';
import { escapeMrkdwn } from '../messages/message.js';
import { errorMessage, failedRunMessage, failureDigest, noticeMessage, resultsMessage, rootMessage } from '../messages/blocks.js';
import { decide } from './decide.js';
import { giveBack } from './observe.js';
import { roundClaimKey, submitRound, submitSalvage } from './submit.js';
import { DELIVERIES, type Decision, type Effect, type Fact } from './types.js';

/** The largest picture uploaded to the chat; a larger one is linked only. */
const MAX_PICTURE_BYTES = 64 * 2 ** 20;

/** Whoever brought a fact by a command or a click, for the answers meant for them only. */
export interface Asker {
  channel: string;
  userId: string;
  responseUrl?: string | undefined;
}

const CLAIMED: ReadonlySet<Effect['type']> = new Set(['update-root', 'digest', 'results', 'failed-run', 'picture', 'stuck-warning']);

export class RunWorker {
  constructor(private readonly deps: CoreDeps) {}

  /** Applies one fact to a run and performs what it calls for; returns the stored manifest. */
  async apply(runId: string, fact: Fact, asker?: Asker): Promise<RunManifest> {
    const now = this.deps.clock.now();
    let decision: Decision = { next: undefined, effects: [] };
    const { after } = await updateManifest(this.deps.store, runId, (current) => {
      decision = decide(current, fact, { now, settings: this.deps.settings });
      return decision.next;
    });
    await this.perform(after, decision.effects, asker);
    if (decision.effects.some((e) => DELIVERIES.has(e.type))) {
      return this.apply(runId, { type: 'delivered', since: now });
    }
    return after;
  }

  private async perform(m: RunManifest, effects: Effect[], asker: Asker | undefined): Promise<void> {
    for (const [i, effect] of effects.entries()) {
      try {
        await this.performOne(m, effect, asker);
      } catch (error) {
        const unsent = effects.slice(i).filter((e) => CLAIMED.has(e.type));
        if (unsent.length) await updateManifest(this.deps.store, m.runId, (cur) => unsent.reduce(giveBack, cur));
        throw error;
      }
    }
  }

  private async performOne(m: RunManifest, effect: Effect, asker: Asker | undefined): Promise<void> {
    switch (effect.type) {
      case 'submit-round': {
        const fact = await submitRound(this.deps, m, effect.round, effect.fovs);
        if (fact) await this.apply(m.runId, fact, asker);
        return;
      }
      case 'submit-salvage': {
        const fact = await submitSalvage(this.deps, m, effect.round);
        if (fact) await this.apply(m.runId, fact, asker);
        return;
      }
      case 'terminate':
        return this.terminate(m, effect);
      case 'answer':
        if (asker) await this.deps.chat.ephemeral(asker.channel, asker.userId, (effect.refusal ? errorMessage : noticeMessage)(effect.text), asker.responseUrl);
        return;
      default:
        return this.post(m, effect);
    }
  }

  private async terminate(m: RunManifest, effect: Extract<Effect, { type: 'terminate' }>): Promise<void> {
    const jobs = [...effect.jobIds];
    if (effect.pendingRound !== undefined) jobs.push(...((await readClaim(this.deps.store, roundClaimKey(m.runId, effect.pendingRound)))?.jobs ?? []));
    if (jobs.length) await this.deps.executor.cancel([...new Set(jobs)], effect.reason);
  }

  /** Effects that go to the run's message or its thread. */
  private async post(m: RunManifest, effect: Effect): Promise<void> {
    const { chat } = this.deps;
    const ref = m.message;
    if (!ref) return;
    switch (effect.type) {
      case 'update-root':
        return chat.update(ref, rootMessage(m));
      case 'digest':
        return void (await chat.reply(ref, failureDigest(m, effect.failures, effect.roundFailed)));
      case 'results':
        await chat.reply(ref, resultsMessage(m, effect.summary, await this.resultLinks(m.runId)));
        if (effect.problem) await chat.reply(ref, noticeMessage(`:warning: The merge of run ${m.runId} succeeded but its summary cannot be shown: ${escapeMrkdwn(effect.problem)}. The files are linked above.`));
        return;
      case 'failed-run':
        return void (await chat.reply(ref, failedRunMessage(m.runId, effect.reason, effect.logLink)));
      case 'picture': {
        // The whole experiment at its stage positions first (newer merges), then the FOV panels.
        const keys = runKeys(m.runId);
        await this.uploadPicture(ref, m.runId, 'overview.png', keys.optionalResults['overview.png'], `Overview of the experiment, run ${m.runId}`);
        await this.uploadPicture(ref, m.runId, 'spots.png', keys.spotsPng, `Decoded spots, run ${m.runId}`);
        return;
      }
      case 'notice':
        return void (await chat.reply(ref, effect.tone === 'error' ? errorMessage(effect.text) : noticeMessage(effect.text)));
      case 'stuck-warning':
        return void (await chat.reply(ref, noticeMessage(effect.text)));
      default:
        return;
    }
  }

  /**
   * Uploads a picture the merge job wrote, read with a size cap: a job-written file, read whole
   * into a 1 GB notifier, would fail its invocation and every redelivery of it. One too large is
   * said so; the results message links it.
   */
  private async uploadPicture(ref: MessageRef, runId: string, name: string, key: string, title: string): Promise<void> {
    const { chat, store } = this.deps;
    const object = await store.get(key, { maxBytes: MAX_PICTURE_BYTES });
    if (!object) return;
    if (object.tooLarge) {
      await chat.reply(ref, noticeMessage(`${name} of run ${runId} is larger than ${MAX_PICTURE_BYTES / 2 ** 20} MiB, so it is not shown here; download it from the results above.`));
      return;
    }
    await chat.upload(ref, { filename: `${runId}-${name}`, title, bytes: object.body });
  }

  private async resultLinks(runId: string) {
    const keys = runKeys(runId);
    const link = async (key: string) => ({ url: this.deps.store.locate(key), download: await this.deps.store.downloadLink(key) });
    const more = [];
    for (const [name, key] of Object.entries(keys.optionalResults)) if (await this.deps.store.get(key, { maxBytes: 1 })) more.push({ name, ...(await link(key)) });
    // A run of more than PANEL_FOVS FOVs has no spots.png (its picture is overview.png): no dead link.
    const spotsPngWritten = (await this.deps.store.get(keys.spotsPng, { maxBytes: 1 })) !== undefined;
    return { spotsCsv: await link(keys.spotsCsv), summaryJson: await link(keys.summaryJson), spotsPng: await link(keys.spotsPng), spotsPngWritten, more };
  }
}
