/**
 * The Executor port as local child processes: one process per FOV with the environment AWS
 * Batch gives a container, N at a time, then the merge. It keeps Batch's semantics where the
 * core depends on them (an array fails if a child fails; a job whose dependency failed fails
 * with "Dependent Job failed") and emits the same "Batch Job State Change" events.
 *
 * Every job is also recorded as it goes in STARFISH_HOME/jobs/<job-id>.json (written under a
 * temporary name, then renamed): its children's pids and end states, and the starfish command
 * (pid and start time) that runs it. A command describes a job it does not hold from that
 * record, so a job's state outlives the command that ran it: while that command lives, as
 * recorded; once it is gone, whatever had not ended is FAILED "interrupted: the starfish command
 * that ran it stopped (…)" and its leftover processes are killed, and a merge whose dependency
 * failed is FAILED "Dependent Job failed", as Batch reports a job whose instance went away. The
 * lifecycle then ends the run as it ends any failure (docs/local.md).
 *
 * The processes run in their own process group (a Ctrl-C at the terminal reaches the command,
 * which decides) beside a guard reading a pipe from the command on fd 3: when the command dies,
 * even by SIGKILL, the pipe closes and the guard kills the group.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { readdirSync, readFileSync, promises as fs, type WriteStream } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import pLimit, { type LimitFunction } from 'p-limit';
import { z } from 'zod';
import type { ArraySpec, BatchStatus, Executor, FailedChild, JobDescription, JobEventSink, StatusSummary, SubmitSpec, SubmittedJob, ContainerTimes } from '../ports.js';
import type { BatchJobEvent } from '../run/batch-event.js';
import { failureKind } from '../run/failure-kind.js';

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

export interface ProcessExecutorOptions {
  home: string;
  /** Python with numpy/scipy/scikit-image; Debian's /usr/bin/python3 by default. */
  python: string;
  concurrency?: number;
  sink: JobEventSink;
  processFovScript?: string;
  mergeScript?: string;
}

/** Why a job, or a child of one, ended without finishing: the command that ran it stopped. */
export function interruptedReason(how = 'Ctrl-C, kill or crash'): string {
  return `interrupted: the starfish command that ran it stopped (${how})`;
}

/** How long a process has after SIGTERM before it gets SIGKILL (Batch gives 30 s; a recipe needs less). */
const KILL_GRACE_MS = 5_000;

// ───────────────────────── processes, identified beyond their pid ─────────────────────────

/** A process, with when it started where the system tells (Linux), so that a reused pid is not taken for it. */
interface ProcessRef {
  pid: number;
  started?: string | undefined;
}

const BOOT_ID = (() => {
  try {
    return readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
  } catch {
    return '';
  }
})();

/** The boot and clock tick a process started at; 'ended' for a zombie; undefined where there is no /proc or no such process. */
function startOf(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return fields[0] === 'Z' || fields[0] === 'X' ? 'ended' : `${BOOT_ID}:${fields[19]}`;
  } catch {
    return undefined;
  }
}

const refOf = (pid: number): ProcessRef => ({ pid, started: startOf(pid) });

function alive(ref: ProcessRef): boolean {
  try {
    process.kill(ref.pid, 0);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  const started = startOf(ref.pid);
  if (started === 'ended') return false;
  // Where the system tells start times, a reference without one was not written by this
  // executor (a hand-edited or hostile record): never taken for a live process, never signalled.
  return started === undefined ? ref.started === undefined : started === ref.started;
}

/** Signals a child's whole process group (it leads one), or the child alone. */
function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(-pid, sig);
  } catch {
    try {
      process.kill(pid, sig);
    } catch {
      // Already gone.
    }
  }
}

/**
 * The processes that carry a job's id in their environment (AWS_BATCH_JOB_ID, inherited by
 * anything they start), where /proc tells: what a command that died left running, even a process
 * it started but had not recorded yet. Elsewhere only the recorded pids are known.
 */
function processesOf(jobId: string): number[] {
  let pids: string[];
  try {
    pids = readdirSync('/proc').filter((name) => /^\d+$/.test(name));
  } catch {
    return [];
  }
  const found: number[] = [];
  for (const pid of pids) {
    try {
      const env = readFileSync(`/proc/${pid}/environ`, 'latin1').split('\0');
      if (env.some((v) => v === `AWS_BATCH_JOB_ID=${jobId}` || v.startsWith(`AWS_BATCH_JOB_ID=${jobId}:`))) found.push(Number(pid));
    } catch {
      // Gone, or not ours to read.
    }
  }
  return found;
}

// ───────────────────────── job records ─────────────────────────

const STATUSES = ['SUBMITTED', 'PENDING', 'RUNNABLE', 'STARTING', 'RUNNING', 'SUCCEEDED', 'FAILED'] as const;
const processRefSchema = z.object({ pid: z.number().int().min(2), started: z.string().optional() });
const childRecordSchema = z.object({
  index: z.number().int().nonnegative(),
  status: z.enum(STATUSES),
  reason: z.string().optional(),
  process: processRefSchema.optional(),
  startedAt: z.number().optional(),
  stoppedAt: z.number().optional(),
  exitCode: z.number().optional(),
});
const jobRecordSchema = z.object({
  version: z.literal(1),
  jobId: z.string(),
  jobName: z.string(),
  queue: z.string(),
  kind: z.enum(['fov', 'merge']),
  size: z.number().int().positive(),
  dependsOn: z.array(z.string()),
  /** The starfish command running the job. */
  owner: processRefSchema,
  status: z.enum(STATUSES),
  statusReason: z.string().optional(),
  createdAt: z.number(),
  since: z.number(),
  /** The children that have left PENDING; the others are PENDING. */
  children: z.array(childRecordSchema),
});
type JobRecord = z.infer<typeof jobRecordSchema>;
type ChildRecord = z.infer<typeof childRecordSchema>;

const ended = (status: BatchStatus) => status === 'SUCCEEDED' || status === 'FAILED';
const JOB_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const errorText = (error: unknown) => (error as Error).message ?? String(error);

/** Writes under a temporary name, then renames: a reader sees the old record or the new one. */
async function writeAtomically(file: string, body: string): Promise<void> {
  await fs.mkdir(path.dirname(file), { recursive: true });
  const tmp = `${file}.${randomUUID()}.tmp`;
  try {
    await fs.writeFile(tmp, body);
    await fs.rename(tmp, file);
  } catch (error) {
    await fs.rm(tmp, { force: true }).catch(() => undefined);
    throw error;
  }
}

function summaryOf(size: number, children: Array<{ status: BatchStatus }>): StatusSummary {
  const s: StatusSummary = {};
  for (const c of children) s[c.status] = (s[c.status] ?? 0) + 1;
  const pending = size - children.filter((c) => c.status !== 'PENDING').length - (s.PENDING ?? 0);
  if (pending > 0) s.PENDING = (s.PENDING ?? 0) + pending;
  return s;
}

function describeRecord(r: JobRecord): JobDescription {
  const d: JobDescription = { jobId: r.jobId, jobName: r.jobName, status: r.status, since: r.since };
  if (r.statusReason) d.statusReason = r.statusReason;
  if (r.size > 1) {
    d.size = r.size;
    d.statusSummary = summaryOf(r.size, r.children);
  }
  return d;
}

/**
 * A record whose command is gone: what had not ended was interrupted, except a job that never
 * started because what it depends on failed, which Batch reports as "Dependent Job failed".
 */
/** A job whose record is corrupt: failed, with nothing else known of it. */
function unreadableRecord(jobId: string, reason: string): JobRecord {
  const now = Date.now();
  return { version: 1, jobId, jobName: '', queue: '', kind: 'fov', size: 1, dependsOn: [], owner: { pid: 0 }, status: 'FAILED', statusReason: reason, createdAt: now, since: now, children: [] };
}

function interrupted(r: JobRecord, dependencyFailed: boolean): JobRecord {
  const now = Date.now();
  const why = r.size === 1 && !r.children.length && dependencyFailed ? 'Dependent Job failed' : interruptedReason();
  const byIndex = new Map(r.children.map((c) => [c.index, c]));
  const children = Array.from({ length: r.size }, (_, index): ChildRecord => {
    const c = byIndex.get(index);
    return c && ended(c.status) ? c : { ...c, index, status: 'FAILED', reason: why, stoppedAt: now };
  });
  const failed = children.filter((c) => c.status === 'FAILED');
  if (!failed.length) return { ...r, status: 'SUCCEEDED', since: now, children };
  const statusReason = r.size === 1 ? failed[0]!.reason : failed.some((c) => c.reason === why) ? why : `${failed.length} of ${r.size} child jobs failed`;
  return { ...r, status: 'FAILED', ...(statusReason ? { statusReason } : {}), since: now, children };
}

// ───────────────────────── the executor ─────────────────────────

interface Child {
  index: number;
  status: BatchStatus;
  reason?: string;
  process?: ChildProcess;
  ref?: ProcessRef;
  startedAt?: number;
  stoppedAt?: number;
  exitCode?: number;
}

interface Job {
  jobId: string;
  jobName: string;
  queue: string;
  kind: 'fov' | 'merge';
  size: number;
  isArray: boolean;
  environment: Record<string, string>;
  status: BatchStatus;
  statusReason?: string;
  createdAt: number;
  since: number;
  children: Child[];
  dependsOn: string[];
  done: Promise<void>;
  finish: () => void;
  cancelled?: string;
  tags: Record<string, string>;
  /** Record writing: one write at a time, the latest state last. */
  saving?: Promise<void>;
  dirty?: boolean;
  /** Why the record could not be written, once it could not. */
  recordError?: string;
}

/** How a child's process ended: its exit code, and why it failed when it did. */
interface Ending {
  exitCode?: number;
  failure?: string;
  stream: string;
  startedAt: number;
  stoppedAt: number;
}

/**
 * Starts the interpreter in place of a shell (same pid, leader of its own process group) beside a
 * guard that reads fd 3, a pipe from this command: when the pipe closes (this command ended, even
 * by SIGKILL, or this command closes it once the interpreter has exited) the guard kills the
 * group, so nothing the job started outlives it. Any interpreter works, Python or a stand-in.
 */
const GUARD = '( cat <&3 >/dev/null 2>&1; kill -9 0 ) >/dev/null 2>&1 </dev/null & exec "$@" 3<&-';

export class ProcessExecutor implements Executor {
  private readonly jobs = new Map<string, Job>();
  private readonly pool: LimitFunction;
  private readonly running = new Set<Promise<unknown>>();
  private readonly owner = refOf(process.pid);
  private stopping: { how: string; reason: string } | undefined;

  constructor(private readonly options: ProcessExecutorOptions) {
    this.pool = pLimit(options.concurrency ?? os.availableParallelism());
  }

  logLink(logStreamName: string): string {
    return path.join(this.options.home, 'logs', `${logStreamName}.log`);
  }

  private recordFile(jobId: string): string {
    return path.join(this.options.home, 'jobs', `${jobId}.json`);
  }

  /** Where another command asks the one running a job to terminate it. */
  private cancelFile(jobId: string): string {
    return path.join(this.options.home, 'jobs', `${jobId}.cancel`);
  }

  async submitFovs(spec: SubmitSpec, array: ArraySpec): Promise<SubmittedJob> {
    const job = await this.create(spec, array.name, 'fov', array.size, array.environment, []);
    this.track(this.runArray(job));
    return { jobId: job.jobId, jobName: job.jobName };
  }

  async submitMerge(spec: SubmitSpec, merge: { name: string; environment: Record<string, string> }, dependsOn: string[]): Promise<SubmittedJob> {
    const job = await this.create(spec, merge.name, 'merge', 1, merge.environment, dependsOn);
    this.track(this.runMerge(job));
    return { jobId: job.jobId, jobName: job.jobName };
  }

  /** Jobs this command runs from memory; any other from its record (interrupted when its command is gone). */
  async describe(jobIds: string[]): Promise<JobDescription[]> {
    const out: JobDescription[] = [];
    for (const id of jobIds) {
      const job = this.jobs.get(id);
      if (job) out.push(this.describeJob(job));
      else {
        const record = await this.recorded(id);
        if (record) out.push(describeRecord(record));
      }
    }
    return out;
  }

  private describeJob(job: Job): JobDescription {
    const d: JobDescription = { jobId: job.jobId, jobName: job.jobName, status: job.status, since: job.since };
    if (job.statusReason) d.statusReason = job.statusReason;
    if (job.isArray) {
      d.size = job.size;
      d.statusSummary = summaryOf(job.size, job.children);
    }
    return d;
  }

  async cancel(jobIds: string[], reason: string): Promise<void> {
    for (const id of jobIds) {
      const job = this.jobs.get(id);
      if (job) this.cancelHeld(job, reason);
      else await this.cancelElsewhere(id, reason);
    }
  }

  private cancelHeld(job: Job, reason: string): void {
    if (ended(job.status)) return;
    job.cancelled ??= reason;
    for (const child of job.children) {
      const pid = child.process?.pid;
      if (pid === undefined || child.process?.exitCode !== null || child.process.signalCode !== null) continue;
      signal(pid, 'SIGTERM');
      setTimeout(() => child.status === 'RUNNING' && signal(pid, 'SIGKILL'), KILL_GRACE_MS).unref();
    }
  }

  /**
   * A job another command runs: that command is asked (a file it reads before and after each
   * child) and the job's live processes are terminated; a job whose command is gone is settled
   * from its record.
   */
  private async cancelElsewhere(jobId: string, reason: string): Promise<void> {
    const record = await this.recorded(jobId);
    if (!record || ended(record.status)) return;
    await writeAtomically(this.cancelFile(jobId), JSON.stringify({ reason }));
    for (const c of record.children) if (!ended(c.status) && c.process && alive(c.process)) signal(c.process.pid, 'SIGTERM');
  }

  async failedChildren(arrayJobId: string): Promise<FailedChild[]> {
    const job = this.jobs.get(arrayJobId);
    const known = job ? { ...job, statusReason: job.cancelled } : await this.recorded(arrayJobId);
    if (!known) return [];
    const children: Array<{ index: number; status: BatchStatus; reason?: string | undefined; exitCode?: number | undefined }> = known.children;
    return children
      .filter((c) => c.status === 'FAILED')
      .map((c) => {
        const reason = c.reason ?? known.statusReason ?? 'failed';
        const kind = failureKind({ statusReason: reason, exitCode: c.exitCode });
        return { index: c.index, reason, kind, logStreamName: `${known.jobName}/${known.size > 1 ? c.index : 'job'}` };
      });
  }

  /** The start and stop the executor recorded for each child that ran. */
  async containerTimes(jobId: string): Promise<ContainerTimes> {
    const job = this.jobs.get(jobId) ?? (await this.recorded(jobId));
    const ran = (job?.children ?? []).filter((c) => c.startedAt !== undefined && c.stoppedAt !== undefined);
    return { containers: ran.length, seconds: ran.reduce((sum, c) => sum + Math.max(0, c.stoppedAt! - c.startedAt!) / 1000, 0) };
  }

  /** What this command is running: jobs not yet ended, and their runs. */
  active(): { jobs: number; runs: string[] } {
    const live = [...this.jobs.values()].filter((j) => !ended(j.status));
    return { jobs: live.length, runs: [...new Set(live.map((j) => j.tags['starfish:run-id']!))].sort() };
  }

  /**
   * Stops every job this command runs, as the command is about to end: nothing new starts, running
   * processes get SIGTERM (SIGKILL after a grace period), and what had not ended is recorded as
   * interrupted, `how` saying why. Resolves when every process has ended and every record is written.
   */
  async stop(how: string): Promise<void> {
    this.stopping ??= { how, reason: interruptedReason(how) };
    for (const job of this.jobs.values()) this.cancelHeld(job, this.stopping.reason);
    await this.idle();
  }

  /** Resolves when every submitted job has finished and its record is written (tests and `run --wait`). */
  async idle(): Promise<void> {
    while (this.running.size) await Promise.allSettled([...this.running]);
  }

  private track(p: Promise<unknown>): void {
    const tracked = p.catch(() => undefined).finally(() => this.running.delete(tracked));
    this.running.add(tracked);
  }

  private async create(spec: SubmitSpec, name: string, kind: Job['kind'], size: number, environment: Record<string, string>, dependsOn: string[]): Promise<Job> {
    // Submitted jobs would be interrupted at once: refused, so that the run says it never started.
    if (this.stopping) throw new Error(`the starfish command stopped (${this.stopping.how}) before the job could start`);
    let finish!: () => void;
    const done = new Promise<void>((resolve) => (finish = resolve));
    const now = Date.now();
    const job: Job = {
      jobId: randomUUID(),
      jobName: name,
      queue: spec.queue,
      kind,
      size,
      isArray: size > 1,
      environment,
      status: 'SUBMITTED',
      createdAt: now,
      since: now,
      children: Array.from({ length: size }, (_, index) => ({ index, status: 'PENDING' as BatchStatus })),
      dependsOn,
      done,
      finish,
      tags: { 'starfish:run-id': spec.runId, 'starfish:requester': spec.requester },
    };
    // Recorded before its id is handed out: a job the control plane knows of always has a record.
    try {
      await writeAtomically(this.recordFile(job.jobId), JSON.stringify(this.recordOf(job)));
    } catch (error) {
      throw new Error(`could not record the job in ${this.recordFile(job.jobId)}: ${errorText(error)}`, { cause: error });
    }
    this.jobs.set(job.jobId, job);
    this.emit(job);
    return job;
  }

  private recordOf(job: Job): JobRecord {
    const children = job.children
      .filter((c) => c.status !== 'PENDING')
      .map((c): ChildRecord => ({
        index: c.index,
        status: c.status,
        ...(c.reason ? { reason: c.reason } : {}),
        ...(c.ref ? { process: c.ref } : {}),
        ...(c.startedAt ? { startedAt: c.startedAt } : {}),
        ...(c.stoppedAt ? { stoppedAt: c.stoppedAt } : {}),
        ...(c.exitCode !== undefined ? { exitCode: c.exitCode } : {}),
      }));
    return {
      version: 1,
      jobId: job.jobId,
      jobName: job.jobName,
      queue: job.queue,
      kind: job.kind,
      size: job.size,
      dependsOn: job.dependsOn,
      owner: this.owner,
      status: job.status,
      ...(job.statusReason ? { statusReason: job.statusReason } : {}),
      createdAt: job.createdAt,
      since: job.since,
      children,
    };
  }

  /** Writes the job's record after a change; changes during a write are written next, together. */
  private save(job: Job): void {
    job.dirty = true;
    if (job.saving) return;
    job.saving = (async () => {
      try {
        while (job.dirty) {
          job.dirty = false;
          await writeAtomically(this.recordFile(job.jobId), JSON.stringify(this.recordOf(job)));
        }
      } catch (error) {
        job.recordError ??= `starfish could not record the job's state in ${this.recordFile(job.jobId)}: ${errorText(error)}`;
        this.recordFailed(job, job.recordError);
      } finally {
        job.saving = undefined;
      }
    })();
    this.track(job.saving);
  }

  /**
   * Waits until the job's record holds every change made so far. Called before a process starts,
   * so that whatever a process can be seen doing, the record already says what came before it
   * (a FOV that ended, the arrays a merge follows), even if this command is killed next.
   */
  private async flush(job: Job): Promise<void> {
    while (job.saving) await job.saving;
  }

  /**
   * A job whose state cannot be recorded (disk full, permissions) could not be told apart from an
   * interrupted one if this command stopped: it is terminated now, failing with the reason.
   */
  private recordFailed(job: Job, reason: string): void {
    if (ended(job.status) || job.cancelled) return;
    this.cancelHeld(job, reason);
  }

  /** The record of a job another command ran, settled as interrupted once that command is gone. */
  private async recorded(jobId: string, depth = 0): Promise<JobRecord | undefined> {
    if (!JOB_ID.test(jobId)) return undefined;
    const record = await this.readRecord(jobId);
    if (!record || ended(record.status) || alive(record.owner)) return record;
    for (const c of record.children) if (!ended(c.status) && c.process && alive(c.process)) signal(c.process.pid, 'SIGKILL');
    for (const pid of processesOf(jobId)) signal(pid, 'SIGKILL');
    const dependencies = depth > 0 ? [] : await Promise.all(record.dependsOn.map((id) => this.recorded(id, depth + 1)));
    const settled = interrupted(record, dependencies.some((d) => d?.status !== 'SUCCEEDED'));
    // Every reader settles it the same way; writing it keeps the answer once the processes are gone.
    await writeAtomically(this.recordFile(jobId), JSON.stringify(settled)).catch(() => undefined);
    return settled;
  }

  private async readRecord(jobId: string): Promise<JobRecord | undefined> {
    let body: string;
    try {
      body = await fs.readFile(this.recordFile(jobId), 'utf8');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw error;
    }
    try {
      return jobRecordSchema.parse(JSON.parse(body));
    } catch (error) {
      // That job's problem only: it is failed with the reason, so its run ends instead of waiting.
      return unreadableRecord(jobId, `its record ${this.recordFile(jobId)} cannot be read (${errorText(error).slice(0, 200)})`);
    }
  }

  /** A request from another command to terminate this job, read before and after each child. */
  private async cancelRequested(job: Job): Promise<void> {
    if (job.cancelled) return;
    try {
      const { reason } = JSON.parse(await fs.readFile(this.cancelFile(job.jobId), 'utf8')) as { reason?: unknown };
      this.cancelHeld(job, typeof reason === 'string' ? reason : 'terminated by another starfish command');
    } catch {
      // No request.
    }
  }

  private setStatus(job: Job, status: BatchStatus, reason?: string): void {
    job.status = status;
    job.since = Date.now();
    if (reason) job.statusReason = reason;
    this.emit(job);
  }

  private event(job: Job, detail: Partial<BatchJobEvent['detail']>): BatchJobEvent {
    return {
      version: '0',
      id: randomUUID(),
      'detail-type': 'Batch Job State Change',
      source: 'aws.batch',
      account: '000000000000',
      time: new Date().toISOString(),
      region: 'local',
      resources: [`local:job/${job.jobId}`],
      detail: {
        jobName: job.jobName,
        jobId: job.jobId,
        jobQueue: `local:job-queue/${job.queue}`,
        status: job.status,
        createdAt: job.createdAt,
        dependsOn: job.dependsOn.map((jobId) => ({ jobId })),
        tags: job.tags,
        ...(job.statusReason ? { statusReason: job.statusReason } : {}),
        ...(job.isArray ? { arrayProperties: { size: job.size, statusSummary: summaryOf(job.size, job.children) } } : {}),
        ...detail,
      },
    } as BatchJobEvent;
  }

  /** Every change is an event and a record write. */
  private emit(job: Job, detail: Partial<BatchJobEvent['detail']> = {}): void {
    void this.options.sink([this.event(job, detail)]);
    this.save(job);
  }

  private async runArray(job: Job): Promise<void> {
    this.setStatus(job, 'PENDING');
    this.setStatus(job, 'RUNNABLE');
    await Promise.all(job.children.map((child) => this.pool(() => this.runChild(job, child))));
    const failed = job.children.filter((c) => c.status === 'FAILED').length;
    // A plain job reported its own end in finishChild, as Batch reports one event per job.
    if (!job.isArray) {
      if (job.cancelled && job.status !== 'FAILED') await this.end(job, 'FAILED', job.cancelled);
    } else if (job.cancelled) await this.end(job, 'FAILED', job.cancelled);
    else if (failed) await this.end(job, 'FAILED', `${failed} of ${job.size} child jobs failed`);
    else await this.end(job, 'SUCCEEDED');
    job.finish();
  }

  private async runMerge(job: Job): Promise<void> {
    this.setStatus(job, 'PENDING');
    const deps = await Promise.all(job.dependsOn.map((id) => this.dependency(id)));
    await Promise.all(job.dependsOn.map((id) => this.jobs.get(id)).map((d) => d && this.flush(d)));
    if (deps.some((status) => status !== 'SUCCEEDED')) {
      job.children[0]!.status = 'FAILED';
      await this.end(job, 'FAILED', 'Dependent Job failed');
      return job.finish();
    }
    this.setStatus(job, 'RUNNABLE');
    await this.pool(() => this.runChild(job, job.children[0]!));
    // Terminated before it started: a plain job reports its own end.
    if (!ended(job.status)) await this.end(job, 'FAILED', job.cancelled ?? 'failed');
    job.finish();
  }

  /** How a dependency ended: one of this command's jobs when it finishes, another's from its record. */
  private async dependency(jobId: string): Promise<BatchStatus | undefined> {
    const held = this.jobs.get(jobId);
    if (held) {
      await held.done;
      return held.status;
    }
    return (await this.recorded(jobId).catch(() => undefined))?.status;
  }

  private async runChild(job: Job, child: Child): Promise<void> {
    await this.cancelRequested(job);
    if (job.cancelled) return this.skipCancelled(job, child);
    const stream = `${job.jobName}/${job.isArray ? child.index : 'job'}`;
    const logFile = this.logLink(stream);
    const startedAt = Date.now();
    let log: WriteStream;
    try {
      await fs.mkdir(path.dirname(logFile), { recursive: true });
      log = (await fs.open(logFile, 'w')).createWriteStream();
    } catch (error) {
      // Not started: the job fails with why, as Batch reports a container that could not start.
      return this.finishChild(job, child, { failure: `starfish could not write the job's log ${logFile}: ${errorText(error)}`, stream, startedAt, stoppedAt: Date.now() });
    }
    await this.flush(job);
    this.markRunning(job, child, startedAt);
    const exit = await this.runPython(job, child, log, logFile);
    await this.cancelRequested(job);
    await this.finishChild(job, child, { ...exit, stream, startedAt, stoppedAt: Date.now() });
  }

  /** A child of a cancelled job never starts; Batch reports each such child of an array as failed. */
  private skipCancelled(job: Job, child: Child): void {
    child.status = 'FAILED';
    child.reason = job.cancelled;
    if (job.isArray) this.emit(job, { status: 'FAILED', statusReason: job.cancelled, jobId: `${job.jobId}:${child.index}`, arrayProperties: { index: child.index } });
    else this.save(job);
  }

  private scriptOf(job: Job): string {
    if (job.kind === 'fov') return this.options.processFovScript ?? path.join(REPO_ROOT, 'containers/process-fov/process_fov.py');
    return this.options.mergeScript ?? path.join(REPO_ROOT, 'containers/merge-results/merge_results.py');
  }

  /** The variables Batch sets in a container, over the job's own environment. */
  private environmentOf(job: Job, child: Child): Record<string, string> {
    const env: Record<string, string> = {
      ...(process.env as Record<string, string>),
      ...job.environment,
      AWS_BATCH_JOB_ID: job.isArray ? `${job.jobId}:${child.index}` : job.jobId,
      AWS_BATCH_JOB_ATTEMPT: '1',
      AWS_BATCH_JQ_NAME: job.queue,
      AWS_BATCH_CE_NAME: 'local',
      PYTHONUNBUFFERED: '1',
    };
    // A plain job has no array index, even if this process inherited one.
    if (job.isArray) env.AWS_BATCH_JOB_ARRAY_INDEX = String(child.index);
    else delete env.AWS_BATCH_JOB_ARRAY_INDEX;
    return env;
  }

  /** The first child to start moves the job to RUNNING; later children of an array report their own start. */
  private markRunning(job: Job, child: Child, startedAt: number): void {
    child.status = 'RUNNING';
    child.startedAt = startedAt;
    if (job.status !== 'RUNNING') this.setStatus(job, 'RUNNING');
    else if (job.isArray) this.emit(job, { status: 'RUNNING', jobId: `${job.jobId}:${child.index}`, arrayProperties: { index: child.index }, startedAt });
  }

  /**
   * Runs the script with both streams in the log file; the last stderr line becomes the failure
   * reason. A log that cannot be written fails the child with why, even when the script exited 0.
   */
  private async runPython(job: Job, child: Child, log: WriteStream, logFile: string): Promise<{ exitCode: number; failure?: string }> {
    let lastErrorLine = '';
    let logError: string | undefined;
    const logFailed = (error: Error) => (logError ??= `starfish could not write the job's log ${logFile}: ${errorText(error)}`);
    log.on('error', logFailed);
    const write = (chunk: Buffer) => {
      if (!logError) log.write(chunk);
    };
    const exitCode = await new Promise<number>((resolve) => {
      const proc = spawn('/bin/sh', ['-c', GUARD, 'starfish-job', this.options.python, this.scriptOf(job)], { env: this.environmentOf(job, child), stdio: ['ignore', 'pipe', 'pipe', 'pipe'], detached: true });
      child.process = proc;
      if (proc.pid !== undefined) {
        child.ref = refOf(proc.pid);
        this.save(job);
      }
      proc.stdout!.on('data', write);
      proc.stderr!.on('data', (chunk: Buffer) => {
        write(chunk);
        const lines = chunk.toString('utf8').split('\n').map((l) => l.trim()).filter(Boolean);
        if (lines.length) lastErrorLine = lines.at(-1)!;
      });
      // fd 3 is only ever closed: once the interpreter has exited, so that the guard ends its group.
      proc.stdio[3]?.on('error', () => undefined);
      proc.on('exit', () => proc.stdio[3]?.destroy());
      proc.on('error', (error) => {
        lastErrorLine = `could not start ${this.options.python}: ${error.message}`;
        resolve(127);
      });
      // Killed by a signal (cancel sends SIGTERM): the shell's 128 + 15.
      proc.on('close', (code, sig) => resolve(code ?? (sig ? 128 + 15 : 1)));
    });
    await new Promise<void>((resolve) => {
      if (log.destroyed) return resolve();
      log.once('error', () => resolve());
      log.end(() => resolve());
    });
    // end()'s callback may run before the 'error' event (a write failing as the stream ends): the
    // stream's own record of its error is read, so a full disk is never missed under load.
    if (log.errored) logFailed(log.errored);
    // The shell could not run the interpreter (missing, not executable): said as such.
    if (exitCode === 127 && /^starfish-job: .*exec: /.test(lastErrorLine)) return { exitCode, failure: `could not start ${this.options.python}: ${lastErrorLine.replace(/^starfish-job: .*exec: /, '').replace(`${this.options.python}: `, '')}` };
    if (exitCode !== 0) return { exitCode, failure: lastErrorLine || `exit code ${exitCode}` };
    return logError ? { exitCode, failure: logError } : { exitCode };
  }

  /** Records the child's end and reports it as Batch would: per child for an array, as the job's own end for a plain job. */
  private async finishChild(job: Job, child: Child, run: Ending): Promise<void> {
    const { exitCode, startedAt, stoppedAt } = run;
    child.status = exitCode === 0 && !run.failure ? 'SUCCEEDED' : 'FAILED';
    child.stoppedAt = stoppedAt;
    if (exitCode !== undefined) child.exitCode = exitCode;
    const reason = job.cancelled ?? run.failure;
    if (reason) child.reason = reason;
    const container = { ...(exitCode !== undefined ? { exitCode } : {}), logStreamName: run.stream, ...(reason ? { reason } : {}) };
    const attempt = { container, startedAt, stoppedAt, statusReason: child.status === 'SUCCEEDED' ? 'Essential container in task exited' : (reason ?? '') };
    const endedAt = { attempts: [attempt], container: attempt.container, startedAt, stoppedAt };
    if (job.isArray) {
      this.emit(job, { status: child.status, jobId: `${job.jobId}:${child.index}`, arrayProperties: { index: child.index }, ...endedAt, ...(reason ? { statusReason: reason } : {}) });
      return;
    }
    await this.end(job, child.status, reason, endedAt);
  }

  /**
   * A job's end, reported once its record holds it, as Batch reports what it stored: a job whose
   * record cannot be written fails with why, whatever its processes did.
   */
  private async end(job: Job, status: 'SUCCEEDED' | 'FAILED', reason?: string, detail: Partial<BatchJobEvent['detail']> = {}): Promise<void> {
    job.status = status;
    job.since = Date.now();
    if (reason) job.statusReason = reason;
    this.save(job);
    await this.flush(job);
    if (job.recordError && job.status === 'SUCCEEDED') {
      job.status = 'FAILED';
      job.statusReason = job.recordError;
      if (!job.isArray) Object.assign(job.children[0]!, { status: 'FAILED', reason: job.recordError });
    }
    void this.options.sink([this.event(job, detail)]);
  }
}
