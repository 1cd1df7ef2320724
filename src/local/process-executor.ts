/**
 * The Executor port as local child processes: one process per FOV with the environment AWS
 * Batch gives a container, N at a time, then the merge. It keeps Batch's semantics where the
 * core depends on them (an array fails if a child fails; a job whose dependency failed fails
 * with "Dependent Job failed") and emits the same "Batch Job State Change" events.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { createWriteStream, promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import pLimit, { type LimitFunction } from 'p-limit';
import type { ArraySpec, BatchStatus, Executor, FailedChild, JobDescription, JobEventSink, StatusSummary, SubmitSpec, SubmittedJob } from '../ports.js';
import type { BatchJobEvent } from '../run/batch-event.js';

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

interface Child {
  index: number;
  status: BatchStatus;
  reason?: string;
  process?: ChildProcess;
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
  since: number;
  children: Child[];
  dependsOn: string[];
  done: Promise<void>;
  finish: () => void;
  cancelled?: string;
  tags: Record<string, string>;
}

export class ProcessExecutor implements Executor {
  private readonly jobs = new Map<string, Job>();
  private readonly pool: LimitFunction;
  private readonly running = new Set<Promise<unknown>>();

  constructor(private readonly options: ProcessExecutorOptions) {
    this.pool = pLimit(options.concurrency ?? os.availableParallelism());
  }

  logLink(logStreamName: string): string {
    return path.join(this.options.home, 'logs', `${logStreamName}.log`);
  }

  async submitFovs(spec: SubmitSpec, array: ArraySpec): Promise<SubmittedJob> {
    const job = this.create(spec, array.name, 'fov', array.size, array.environment, []);
    this.track(this.runArray(job));
    return { jobId: job.jobId, jobName: job.jobName };
  }

  async submitMerge(spec: SubmitSpec, merge: { name: string; environment: Record<string, string> }, dependsOn: string[]): Promise<SubmittedJob> {
    const job = this.create(spec, merge.name, 'merge', 1, merge.environment, dependsOn);
    this.track(this.runMerge(job));
    return { jobId: job.jobId, jobName: job.jobName };
  }

  async describe(jobIds: string[]): Promise<JobDescription[]> {
    return jobIds.flatMap((id) => {
      const job = this.jobs.get(id);
      if (!job) return [];
      const d: JobDescription = { jobId: job.jobId, jobName: job.jobName, status: job.status, since: job.since };
      if (job.statusReason) d.statusReason = job.statusReason;
      if (job.isArray) {
        d.size = job.size;
        d.statusSummary = this.summary(job);
      }
      return [d];
    });
  }

  async cancel(jobIds: string[], reason: string): Promise<void> {
    for (const id of jobIds) {
      const job = this.jobs.get(id);
      if (!job || job.status === 'SUCCEEDED' || job.status === 'FAILED') continue;
      job.cancelled = reason;
      for (const child of job.children) child.process?.kill('SIGTERM');
    }
  }

  async failedChildren(arrayJobId: string): Promise<FailedChild[]> {
    const job = this.jobs.get(arrayJobId);
    if (!job) return [];
    return job.children
      .filter((c) => c.status === 'FAILED')
      .map((c) => ({ index: c.index, reason: c.reason ?? job.cancelled ?? 'failed', logStreamName: `${job.jobName}/${job.isArray ? c.index : 'job'}` }));
  }

  /** Resolves when every submitted job has finished (tests and `run --wait`). */
  async idle(): Promise<void> {
    while (this.running.size) await Promise.allSettled([...this.running]);
  }

  private track(p: Promise<unknown>): void {
    const tracked = p.catch(() => undefined).finally(() => this.running.delete(tracked));
    this.running.add(tracked);
  }

  private create(spec: SubmitSpec, name: string, kind: Job['kind'], size: number, environment: Record<string, string>, dependsOn: string[]): Job {
    let finish!: () => void;
    const done = new Promise<void>((resolve) => (finish = resolve));
    const job: Job = {
      jobId: randomUUID(),
      jobName: name,
      queue: spec.queue,
      kind,
      size,
      isArray: size > 1,
      environment,
      status: 'SUBMITTED',
      since: Date.now(),
      children: Array.from({ length: size }, (_, index) => ({ index, status: 'PENDING' as BatchStatus })),
      dependsOn,
      done,
      finish,
      tags: { 'starfish:run-id': spec.runId, 'starfish:requester': spec.requester },
    };
    this.jobs.set(job.jobId, job);
    this.emit(job);
    return job;
  }

  private summary(job: Job): StatusSummary {
    const s: StatusSummary = {};
    for (const c of job.children) s[c.status] = (s[c.status] ?? 0) + 1;
    return s;
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
        createdAt: job.since,
        dependsOn: job.dependsOn.map((jobId) => ({ jobId })),
        tags: job.tags,
        ...(job.statusReason ? { statusReason: job.statusReason } : {}),
        ...(job.isArray ? { arrayProperties: { size: job.size, statusSummary: this.summary(job) } } : {}),
        ...detail,
      },
    } as BatchJobEvent;
  }

  private emit(job: Job, detail: Partial<BatchJobEvent['detail']> = {}): void {
    void this.options.sink([this.event(job, detail)]);
  }

  private async runArray(job: Job): Promise<void> {
    this.setStatus(job, 'PENDING');
    this.setStatus(job, 'RUNNABLE');
    await Promise.all(job.children.map((child) => this.pool(() => this.runChild(job, child))));
    const failed = job.children.filter((c) => c.status === 'FAILED').length;
    // A plain job reported its own end in runChild, as Batch reports one event per job.
    if (!job.isArray) {
      if (job.cancelled && job.status !== 'FAILED') this.setStatus(job, 'FAILED', job.cancelled);
    } else if (job.cancelled) this.setStatus(job, 'FAILED', job.cancelled);
    else if (failed) this.setStatus(job, 'FAILED', `${failed} of ${job.size} child jobs failed`);
    else this.setStatus(job, 'SUCCEEDED');
    job.finish();
  }

  private async runMerge(job: Job): Promise<void> {
    this.setStatus(job, 'PENDING');
    const deps = job.dependsOn.map((id) => this.jobs.get(id)).filter((j): j is Job => j !== undefined);
    await Promise.all(deps.map((d) => d.done));
    if (deps.some((d) => d.status === 'FAILED')) {
      job.children[0]!.status = 'FAILED';
      this.setStatus(job, 'FAILED', 'Dependent Job failed');
      return job.finish();
    }
    this.setStatus(job, 'RUNNABLE');
    await this.pool(() => this.runChild(job, job.children[0]!));
    job.finish();
  }

  private async runChild(job: Job, child: Child): Promise<void> {
    if (job.cancelled) return this.skipCancelled(job, child);
    const stream = `${job.jobName}/${job.isArray ? child.index : 'job'}`;
    const logFile = this.logLink(stream);
    await fs.mkdir(path.dirname(logFile), { recursive: true });
    const startedAt = Date.now();
    this.markRunning(job, child, startedAt);
    const exit = await this.runPython(this.scriptOf(job), this.environmentOf(job, child), child, logFile);
    this.finishChild(job, child, { ...exit, stream, startedAt, stoppedAt: Date.now() });
  }

  /** A child of a cancelled job never starts; Batch reports each such child of an array as failed. */
  private skipCancelled(job: Job, child: Child): void {
    child.status = 'FAILED';
    if (job.isArray) this.emit(job, { status: 'FAILED', statusReason: job.cancelled, jobId: `${job.jobId}:${child.index}`, arrayProperties: { index: child.index } });
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
    if (job.status !== 'RUNNING') this.setStatus(job, 'RUNNING');
    else if (job.isArray) this.emit(job, { status: 'RUNNING', jobId: `${job.jobId}:${child.index}`, arrayProperties: { index: child.index }, startedAt });
  }

  /** Runs the script with both streams in the log file; the last stderr line becomes the failure reason. */
  private async runPython(script: string, env: Record<string, string>, child: Child, logFile: string): Promise<{ exitCode: number; lastErrorLine: string }> {
    const log = createWriteStream(logFile);
    let lastErrorLine = '';
    const exitCode = await new Promise<number>((resolve) => {
      const proc = spawn(this.options.python, [script], { env, stdio: ['ignore', 'pipe', 'pipe'] });
      child.process = proc;
      proc.stdout.pipe(log, { end: false });
      proc.stderr.on('data', (chunk: Buffer) => {
        log.write(chunk);
        const lines = chunk.toString('utf8').split('\n').map((l) => l.trim()).filter(Boolean);
        if (lines.length) lastErrorLine = lines.at(-1)!;
      });
      proc.on('error', (error) => {
        lastErrorLine = `could not start ${this.options.python}: ${error.message}`;
        resolve(127);
      });
      // Killed by a signal (cancel sends SIGTERM): the shell's 128 + 15.
      proc.on('close', (code, signal) => resolve(code ?? (signal ? 128 + 15 : 1)));
    });
    await new Promise<void>((resolve) => log.end(resolve));
    return { exitCode, lastErrorLine };
  }

  /** Records the child's end and reports it as Batch would: per child for an array, as the job's own end for a plain job. */
  private finishChild(job: Job, child: Child, run: { exitCode: number; lastErrorLine: string; stream: string; startedAt: number; stoppedAt: number }): void {
    const { exitCode, startedAt, stoppedAt } = run;
    child.status = exitCode === 0 ? 'SUCCEEDED' : 'FAILED';
    const reason = job.cancelled ?? (exitCode === 0 ? undefined : run.lastErrorLine || `exit code ${exitCode}`);
    if (reason) child.reason = reason;
    const attempt = {
      container: { exitCode, logStreamName: run.stream, ...(reason ? { reason } : {}) },
      startedAt,
      stoppedAt,
      statusReason: exitCode === 0 ? 'Essential container in task exited' : (reason ?? ''),
    };
    const ended = { attempts: [attempt], container: attempt.container, startedAt, stoppedAt };
    if (job.isArray) {
      this.emit(job, { status: child.status, jobId: `${job.jobId}:${child.index}`, arrayProperties: { index: child.index }, ...ended, ...(reason ? { statusReason: reason } : {}) });
      return;
    }
    job.status = child.status;
    job.since = stoppedAt;
    if (reason) job.statusReason = reason;
    this.emit(job, ended);
  }
}
