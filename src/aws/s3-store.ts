/**
 * The Store port on S3: runs/<id>/… objects under one bucket (and an optional key prefix).
 * Conditional create is PutObject with If-None-Match: *, compare-and-swap is PutObject with
 * If-Match: <etag>; S3 answers 412 Precondition Failed when the condition does not hold.
 */
import {
  DeleteObjectCommand,
  GetObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  type S3Client,
} from '@aws-sdk/client-s3';
import type { GetOptions, Store, StoredObject } from '../ports.js';

/** S3 refuses presigned URLs that live longer than 7 days (SigV4). */
export const MAX_DOWNLOAD_EXPIRY_SECONDS = 604_800;
export const DEFAULT_DOWNLOAD_EXPIRY_SECONDS = 86_400;
/** "The object key name is a sequence of Unicode characters with UTF-8 encoding of up to 1,024 bytes long" (S3 User Guide, Naming Amazon S3 objects). */
const MAX_KEY_BYTES = 1_024;

export interface S3StoreOptions {
  client: S3Client;
  bucket: string;
  /** Key prefix inside the bucket, e.g. "starfish" → s3://bucket/starfish/runs/…; none by default. */
  prefix?: string;
  /** Lifetime of download links in seconds, 1 to 604,800 (7 days). */
  downloadExpirySeconds?: number;
  /** How many times a 409 ConditionalRequestConflict on a conditional create is retried. */
  conflictRetries?: number;
}

interface AwsError {
  name?: string;
  Code?: string;
  $metadata?: { httpStatusCode?: number };
}

/** The status and code of an SDK error, whichever of the two the service filled in. */
function awsErrorOf(error: unknown): { status?: number; code?: string } {
  const e = (error ?? {}) as AwsError;
  const out: { status?: number; code?: string } = {};
  if (e.$metadata?.httpStatusCode !== undefined) out.status = e.$metadata.httpStatusCode;
  const code = e.Code ?? e.name;
  if (code) out.code = code;
  return out;
}

const isPreconditionFailed = (error: unknown) => {
  const { status, code } = awsErrorOf(error);
  return status === 412 || code === 'PreconditionFailed';
};
const isConditionalConflict = (error: unknown) => {
  const { status, code } = awsErrorOf(error);
  return status === 409 || code === 'ConditionalRequestConflict';
};
export const isNotFound = (error: unknown) => {
  const { status, code } = awsErrorOf(error);
  return status === 404 || code === 'NoSuchKey' || code === 'NotFound';
};

const CONTENT_TYPES: Record<string, string> = {
  json: 'application/json',
  csv: 'text/csv',
  png: 'image/png',
  py: 'text/x-python',
  txt: 'text/plain',
};

export function contentTypeOf(key: string): string {
  return CONTENT_TYPES[key.split('.').pop()?.toLowerCase() ?? ''] ?? 'application/octet-stream';
}

function checkExpiry(seconds: number): number {
  if (!Number.isInteger(seconds) || seconds < 1 || seconds > MAX_DOWNLOAD_EXPIRY_SECONDS) {
    throw new Error(`download link expiry must be a whole number of seconds from 1 to ${MAX_DOWNLOAD_EXPIRY_SECONDS} (7 days, the most S3 allows), got ${seconds}`);
  }
  return seconds;
}

/** Reads a GetObject body (a stream with the SDK's transform helpers) into a Buffer. */
export async function bodyBytes(body: unknown): Promise<Buffer> {
  if (!body) return Buffer.alloc(0);
  const b = body as { transformToByteArray?: () => Promise<Uint8Array> };
  if (typeof b.transformToByteArray === 'function') return Buffer.from(await b.transformToByteArray());
  if (body instanceof Uint8Array) return Buffer.from(body);
  if (typeof body === 'string') return Buffer.from(body);
  const chunks: Buffer[] = [];
  for await (const chunk of body as AsyncIterable<Uint8Array | string>) chunks.push(Buffer.from(chunk));
  return Buffer.concat(chunks);
}

export class S3Store implements Store {
  readonly bucket: string;
  readonly prefix: string;
  readonly downloadExpirySeconds: number;
  private readonly client: S3Client;
  private readonly conflictRetries: number;

  constructor(options: S3StoreOptions) {
    this.client = options.client;
    this.bucket = options.bucket;
    const p = (options.prefix ?? '').replace(/^\/+|\/+$/g, '');
    this.prefix = p ? `${p}/` : '';
    this.downloadExpirySeconds = checkExpiry(options.downloadExpirySeconds ?? DEFAULT_DOWNLOAD_EXPIRY_SECONDS);
    this.conflictRetries = options.conflictRetries ?? 4;
  }

  private keyOf(key: string): string {
    if (!key || key.startsWith('/') || key.split('/').includes('..')) throw new Error(`not a store key: ${key}`);
    const full = `${this.prefix}${key}`;
    // S3 refuses a longer key (KeyTooLongError): said here, naming the key, before any request.
    const bytes = Buffer.byteLength(full, 'utf8');
    if (bytes > MAX_KEY_BYTES) {
      throw new Error(`s3://${this.bucket}/${full.slice(0, 80)}… would be a ${bytes.toLocaleString('en-US')}-byte key; S3 keys are at most 1,024 bytes (UTF-8). Use shorter file or folder names, e.g. ${this.prefix}experiments/iss/fov_000-r0.tiff`);
    }
    return full;
  }

  async get(key: string, options: GetOptions = {}): Promise<StoredObject | undefined> {
    const { maxBytes } = options;
    try {
      // One byte more than allowed tells a too-large object from one exactly at the limit.
      const range = maxBytes === undefined ? {} : { Range: `bytes=0-${maxBytes}` };
      const out = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: this.keyOf(key), ...range }));
      const body = await bodyBytes(out.Body);
      if (maxBytes !== undefined && body.length > maxBytes) return { body: body.subarray(0, maxBytes), etag: out.ETag ?? '', tooLarge: true };
      return { body, etag: out.ETag ?? '' };
    } catch (error) {
      if (isNotFound(error)) return undefined;
      throw error;
    }
  }

  private putInput(key: string, body: Buffer | string) {
    return { Bucket: this.bucket, Key: this.keyOf(key), Body: typeof body === 'string' ? Buffer.from(body) : body, ContentType: contentTypeOf(key) };
  }

  async put(key: string, body: Buffer | string): Promise<{ etag: string }> {
    const out = await this.client.send(new PutObjectCommand(this.putInput(key, body)));
    return { etag: out.ETag ?? '' };
  }

  async createIfAbsent(key: string, body: Buffer | string): Promise<{ etag: string } | 'exists'> {
    for (let attempt = 0; ; attempt++) {
      try {
        const out = await this.client.send(new PutObjectCommand({ ...this.putInput(key, body), IfNoneMatch: '*' }));
        return { etag: out.ETag ?? '' };
      } catch (error) {
        if (isPreconditionFailed(error)) return 'exists';
        // 409: another write to this key was in flight; S3 says retry. The retry then sees
        // 412 if that write created the object, or succeeds if it did not.
        if (isConditionalConflict(error) && attempt < this.conflictRetries) {
          await new Promise((r) => setTimeout(r, 20 * 2 ** attempt + Math.random() * 20));
          continue;
        }
        throw error;
      }
    }
  }

  async replaceIf(key: string, body: Buffer | string, etag: string): Promise<{ etag: string } | 'conflict'> {
    try {
      const out = await this.client.send(new PutObjectCommand({ ...this.putInput(key, body), IfMatch: etag }));
      return { etag: out.ETag ?? '' };
    } catch (error) {
      // 412: the etag no longer matches. 409: a concurrent write (S3 says re-read the etag and
      // retry, which is what a 'conflict' makes the caller do). 404: the object is gone.
      if (isPreconditionFailed(error) || isConditionalConflict(error) || isNotFound(error)) return 'conflict';
      throw error;
    }
  }

  async delete(key: string): Promise<void> {
    await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: this.keyOf(key) }));
  }

  async list(prefix: string): Promise<string[]> {
    const keys: string[] = [];
    let token: string | undefined;
    do {
      const out = await this.client.send(
        new ListObjectsV2Command({ Bucket: this.bucket, Prefix: `${this.prefix}${prefix}`, ...(token ? { ContinuationToken: token } : {}) }),
      );
      for (const o of out.Contents ?? []) if (o.Key) keys.push(o.Key.slice(this.prefix.length));
      token = out.IsTruncated ? out.NextContinuationToken : undefined;
    } while (token);
    return keys.sort();
  }

  async listFolders(prefix: string, startAfter?: string): Promise<string[]> {
    // Delimiter: one entry a run, not every per-FOV table of every run.
    const names: string[] = [];
    const base = `${this.prefix}${prefix}`;
    // S3 lists keys in UTF-8 binary order from StartAfter on: the pages before it are never read.
    const after = startAfter !== undefined ? { StartAfter: `${base}${startAfter}` } : {};
    let token: string | undefined;
    do {
      const out = await this.client.send(new ListObjectsV2Command({ Bucket: this.bucket, Prefix: base, Delimiter: '/', ...after, ...(token ? { ContinuationToken: token } : {}) }));
      for (const p of out.CommonPrefixes ?? []) if (p.Prefix) names.push(p.Prefix.slice(base.length).replace(/\/$/, ''));
      token = out.IsTruncated ? out.NextContinuationToken : undefined;
    } while (token);
    return names.sort();
  }

  locate(key: string): string {
    return `s3://${this.bucket}/${this.keyOf(key)}`;
  }

  async downloadLink(key: string): Promise<string> {
    // Loaded on first use: only the notifier posting results needs the presigner.
    const { getSignedUrl } = await import('@aws-sdk/s3-request-presigner');
    const filename = key.split('/').pop() ?? 'download';
    return getSignedUrl(
      this.client,
      new GetObjectCommand({ Bucket: this.bucket, Key: this.keyOf(key), ResponseContentDisposition: `attachment; filename="${filename.replace(/"/g, '')}"` }),
      { expiresIn: this.downloadExpirySeconds },
    );
  }
}
