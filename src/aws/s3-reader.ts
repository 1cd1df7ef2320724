/**
 * The Reader port on AWS: s3:// objects (GetObject) and https:// URLs (under the URL policy,
 * src/run/url-policy.ts: public addresses only, pinned, no redirects), copies for staging
 * (server-side CopyObject between buckets), and the bucket allowlist. The deployment reads and
 * writes only its configured buckets; public dataset buckets may be allowed read-only, so that
 * `/starfish stage` can copy from them; every other bucket is refused. File paths and file://
 * URLs are refused: they name files on the Lambda's own machine.
 */
import { CopyObjectCommand, GetObjectCommand, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { httpsGet, type HttpsGetOptions } from '../run/https-get.js';
import { checkFetchable } from '../run/url-policy.js';
import type { GetOptions, Reader } from '../ports.js';
import { tooLarge } from '../run/locations.js';
import { passed, refuse, type Result } from '../result.js';
import { kindOf, parseS3 } from '../run/locations.js';
import { bodyBytes, contentTypeOf, isNotFound } from './s3-store.js';

export interface S3ReaderOptions {
  client: S3Client;
  /** Buckets this deployment reads and writes (the results bucket among them). */
  buckets: string[];
  /** Buckets it may only read, e.g. public datasets to stage from. */
  readOnlyBuckets?: string[];
  /** The URL policy's options for https inputs (the host allowlist; a resolver and CA in tests). */
  https?: HttpsGetOptions;
}

/** CopySource is "bucket/key" with the key URL-encoded (slashes kept). */
export function copySource(bucket: string, key: string): string {
  return `${bucket}/${key.split('/').map(encodeURIComponent).join('/')}`;
}

export class S3Reader implements Reader {
  private readonly client: S3Client;
  private readonly buckets: ReadonlySet<string>;
  private readonly readOnly: ReadonlySet<string>;
  private readonly https: HttpsGetOptions;

  constructor(options: S3ReaderOptions) {
    this.client = options.client;
    this.buckets = new Set(options.buckets);
    this.readOnly = new Set((options.readOnlyBuckets ?? []).filter((b) => !this.buckets.has(b)));
    this.https = options.https ?? {};
  }

  private allowedText(): string {
    const rw = [...this.buckets].map((b) => `s3://${b}`).join(', ') || '(none)';
    const ro = [...this.readOnly].map((b) => `s3://${b}`).join(', ');
    return `This deployment reads and writes only ${rw}${ro ? `, and reads ${ro} (read-only)` : ''}`;
  }

  checkReadable(url: string): Result<void> {
    switch (kindOf(url)) {
      case 'https': {
        const checked = checkFetchable(url, { ...this.https, files: false });
        return checked.ok ? passed : checked;
      }
      case 'path':
        return this.checkNotS3(url);
      case 's3': {
        let bucket: string;
        try {
          bucket = parseS3(url).bucket;
        } catch {
          return refuse(`${url} is not a valid s3:// URL. Example: s3://${[...this.buckets][0] ?? 'lab-data'}/iss/experiment.json`);
        }
        if (this.buckets.has(bucket) || this.readOnly.has(bucket)) return passed;
        return refuse(`${url} is in bucket "${bucket}", which this deployment may not read. ${this.allowedText()}. Ask an admin to add "${bucket}" to STARFISH_ALLOWED_BUCKETS (or STARFISH_READONLY_BUCKETS for a dataset to stage from).`);
      }
    }
  }

  /** A location that is neither s3:// nor https://: a path, file://, http:// or another scheme. */
  private checkNotS3(url: string): Result<void> {
    if (/^[a-z][a-z0-9+.-]+:/i.test(url)) {
      const checked = checkFetchable(url, { ...this.https, files: false });
      return checked.ok ? passed : checked;
    }
    return refuse(`${url} is a file path, which the AWS deployment cannot read. Use an s3:// or https:// URL, e.g. s3://${[...this.buckets][0] ?? 'lab-data'}/iss/experiment.json`);
  }

  /** Whether this deployment may write to the URL. */
  checkWritable(url: string): Result<void> {
    if (kindOf(url) !== 's3') return refuse(`${url} is not an s3:// URL; the AWS deployment writes only to its buckets. ${this.allowedText()}.`);
    const { bucket } = parseS3(url);
    if (this.buckets.has(bucket)) return passed;
    if (this.readOnly.has(bucket)) return refuse(`bucket "${bucket}" is read-only for this deployment; it does not write there. ${this.allowedText()}.`);
    return refuse(`bucket "${bucket}" is not one this deployment may write to. ${this.allowedText()}.`);
  }

  /**
   * Reads and copies refuse what checkReadable refuses, for the callers that did not ask first
   * (a file an experiment refers to, say); the sentence is the same.
   */
  private refuseRead(url: string): void {
    const readable = this.checkReadable(url);
    if (!readable.ok) throw new Error(readable.reason);
  }

  async read(url: string, options: GetOptions = {}): Promise<Buffer> {
    this.refuseRead(url);
    const { maxBytes } = options;
    if (kindOf(url) === 'https') {
      return httpsGet(url, { ...this.https, ...(maxBytes !== undefined ? { maxBytes } : {}) });
    }
    const { bucket, key } = parseS3(url);
    try {
      // One byte more than allowed tells a too-large object from one exactly at the limit.
      const range = maxBytes === undefined ? {} : { Range: `bytes=0-${maxBytes}` };
      const out = await this.client.send(new GetObjectCommand({ Bucket: bucket, Key: key, ...range }));
      const body = await bodyBytes(out.Body);
      if (maxBytes !== undefined && body.length > maxBytes) throw new Error(tooLarge(maxBytes));
      return body;
    } catch (error) {
      if (isNotFound(error)) throw new Error('no such object', { cause: error });
      const name = (error as Error).name;
      if (name === 'AccessDenied') throw new Error(`access denied to bucket ${bucket} (the deployment's role may not read it)`, { cause: error });
      throw error;
    }
  }

  async copy(fromUrl: string, toUrl: string): Promise<void> {
    this.refuseRead(fromUrl);
    const writable = this.checkWritable(toUrl);
    if (!writable.ok) throw new Error(writable.reason);
    const to = parseS3(toUrl);
    if (kindOf(fromUrl) === 's3') {
      const from = parseS3(fromUrl);
      try {
        await this.client.send(new CopyObjectCommand({ Bucket: to.bucket, Key: to.key, CopySource: copySource(from.bucket, from.key) }));
      } catch (error) {
        if (isNotFound(error)) throw new Error('no such object', { cause: error });
        throw error;
      }
      return;
    }
    const body = await this.read(fromUrl);
    await this.client.send(new PutObjectCommand({ Bucket: to.bucket, Key: to.key, Body: body, ContentType: contentTypeOf(to.key) }));
  }
}
