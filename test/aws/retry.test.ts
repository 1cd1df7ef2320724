/**
 * Throttling is retried by the SDK's retry middleware, configured in src/aws/clients.ts.
 * aws-sdk-client-mock replaces Client#send, so a mocked client never runs that middleware:
 * a throttling error from a mock reaches the caller unretried (shown below). These tests
 * therefore run the real clients, with the real retry configuration, over a fake HTTP handler.
 */
import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { mockClient } from 'aws-sdk-client-mock';
import { HttpResponse } from '@smithy/core/protocols';
import { BatchClient, SubmitJobCommand } from '@aws-sdk/client-batch';
import { EventBridgeClient } from '@aws-sdk/client-eventbridge';
import { S3Client } from '@aws-sdk/client-s3';
import { MAX_ATTEMPTS, clientConfig } from '../../src/aws/clients.js';
import { BatchExecutor } from '../../src/aws/batch-executor.js';
import { EventBridgeBus } from '../../src/aws/eventbridge-bus.js';
import { S3Store } from '../../src/aws/s3-store.js';
import { CREDENTIALS, QUEUES, REGION } from './helpers.js';

interface Canned {
  status: number;
  headers?: Record<string, string>;
  body: string;
}

/** An HTTP handler that answers from a script and records the requests. */
function scripted(responses: Canned[]) {
  const requests: Array<{ method: string; path: string; headers: Record<string, string> }> = [];
  const handler = {
    metadata: { handlerProtocol: 'http/1.1' },
    async handle(request: { method: string; path: string; headers: Record<string, string> }) {
      requests.push({ method: request.method, path: request.path, headers: { ...request.headers } });
      const next = responses.shift();
      if (!next) throw new Error('no more scripted responses');
      return { response: new HttpResponse({ statusCode: next.status, headers: { 'content-type': 'application/json', ...next.headers }, body: Readable.from([Buffer.from(next.body)]) }) };
    },
    updateHttpClientConfig() {},
    httpHandlerConfigs: () => ({}),
    destroy() {},
  };
  return { handler, requests };
}

const spec = { runId: '261125-k3f9', requester: 'U1', queue: 'spot' };

describe('SDK retries through the clients configuration', () => {

  it("uses retryMode 'standard' with MAX_ATTEMPTS attempts", () => {
    expect(clientConfig('eu-west-1')).toEqual({ region: 'eu-west-1', retryMode: 'standard', maxAttempts: MAX_ATTEMPTS });
    expect(MAX_ATTEMPTS).toBeGreaterThanOrEqual(3);
  });

  it('Batch SubmitJob: a 429 TooManyRequestsException is retried, then succeeds', async () => {
    const { handler, requests } = scripted([
      { status: 429, headers: { 'x-amzn-errortype': 'TooManyRequestsException' }, body: JSON.stringify({ message: 'Too Many Requests' }) },
      { status: 200, body: JSON.stringify({ jobId: 'job-1', jobName: 'starfish-261125-k3f9-fov', jobArn: 'arn:aws:batch:us-east-1:1:job/job-1' }) },
    ]);
    const client = new BatchClient({ ...clientConfig(REGION), credentials: CREDENTIALS, requestHandler: handler });
    const ex = new BatchExecutor({ client, queues: QUEUES, fovJobDefinition: 'fov', mergeJobDefinition: 'merge', region: REGION });
    const job = await ex.submitFovs(spec, { name: 'starfish-261125-k3f9-fov', size: 2, environment: {} });
    expect(job.jobId).toBe('job-1');
    expect(requests).toHaveLength(2);
    expect(requests.every((r) => r.path === '/v1/submitjob')).toBe(true);
    // The retry is the SDK's: the second attempt carries amz-sdk-request attempt=2.
    expect(requests[1]!.headers['amz-sdk-request']).toMatch(/attempt=2/);
  }, 20_000);

  it('EventBridge PutEvents: a ThrottlingException is retried, then succeeds', async () => {
    const { handler, requests } = scripted([
      { status: 400, headers: { 'content-type': 'application/x-amz-json-1.1' }, body: JSON.stringify({ __type: 'ThrottlingException', message: 'Rate exceeded' }) },
      { status: 200, headers: { 'content-type': 'application/x-amz-json-1.1' }, body: JSON.stringify({ FailedEntryCount: 0, Entries: [{ EventId: 'e1' }] }) },
    ]);
    const client = new EventBridgeClient({ ...clientConfig(REGION), credentials: CREDENTIALS, requestHandler: handler });
    await new EventBridgeBus({ client, busName: 'starfish' }).publish({ type: 'RunCancelled', userId: 'U1', channel: 'C1', runId: '261125-k3f9' });
    expect(requests).toHaveLength(2);
  }, 20_000);

  it('S3: a 503 SlowDown is retried, then succeeds', async () => {
    const { handler, requests } = scripted([
      { status: 503, headers: { 'content-type': 'application/xml' }, body: '<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>' },
      { status: 200, headers: { etag: '"abc"' }, body: '' },
    ]);
    const client = new S3Client({ ...clientConfig(REGION), credentials: CREDENTIALS, requestHandler: handler });
    expect(await new S3Store({ client, bucket: 'results' }).put('runs/x/run.json', '{}')).toEqual({ etag: '"abc"' });
    expect(requests).toHaveLength(2);
  }, 20_000);

  it('gives up after maxAttempts throttled attempts and passes the error on', async () => {
    const throttled = (): Canned => ({ status: 429, headers: { 'x-amzn-errortype': 'TooManyRequestsException' }, body: JSON.stringify({ message: 'Too Many Requests' }) });
    const { handler, requests } = scripted(Array.from({ length: MAX_ATTEMPTS }, throttled));
    // Same configuration, fewer attempts, so the test stays quick.
    const client = new BatchClient({ ...clientConfig(REGION), maxAttempts: 2, credentials: CREDENTIALS, requestHandler: handler });
    await expect(client.send(new SubmitJobCommand({ jobName: 'n', jobQueue: 'q', jobDefinition: 'd' }))).rejects.toMatchObject({ $metadata: { httpStatusCode: 429, attempts: 2 } });
    expect(requests).toHaveLength(2);
  }, 20_000);

  it('with aws-sdk-client-mock, send() is replaced above the retry middleware: no retry happens there', async () => {
    const mock = mockClient(BatchClient);
    try {
      const error = Object.assign(new Error('Too Many Requests'), { name: 'TooManyRequestsException', $metadata: { httpStatusCode: 429 } });
      mock.on(SubmitJobCommand).rejectsOnce(error).resolves({ jobId: 'j', jobName: 'n' });
      const client = new BatchClient({ ...clientConfig(REGION), credentials: CREDENTIALS });
      await expect(client.send(new SubmitJobCommand({ jobName: 'n', jobQueue: 'q', jobDefinition: 'd' }))).rejects.toThrow('Too Many Requests');
      expect(mock.commandCalls(SubmitJobCommand)).toHaveLength(1);
    } finally {
      mock.restore();
    }
  });
});
