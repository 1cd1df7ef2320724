/**
 * What listing runs costs as a results bucket ages: the real S3 client (SDK v3) against the
 * recording AWS endpoint on loopback (test/aws/wire/endpoint.ts), a bucket holding `old` runs of
 * the last two years plus 100 of this week. For the newest 50 runs (`/starfish list`, the Home tab,
 * status) and a week's history (each run request): ListObjectsV2 requests and wall time, median of
 * `--runs` runs, with the window listing (listRuns) and with the whole-bucket listing it replaced
 * (`wholeBucketListingAlone`: only its ListObjectsV2 pages, before any manifest is read).
 * Loopback has no network latency, and the endpoint scans every key for each page (its times for
 * the whole-bucket listing grow faster than S3's would): the request counts are the figure that
 * carries over, at tens of milliseconds each on S3.
 *
 *   npx tsx bench/list-runs.bench.ts --runs 5
 */
import { listRuns } from '../src/run/manifest-store.js';
import { runKeys, RUNS_PREFIX } from '../src/run/layout.js';
import { runIdDay } from '../src/run/run-id.js';
import { S3Store } from '../src/aws/s3-store.js';
import { AwsEndpoint } from '../test/aws/wire/endpoint.js';
import { manifest } from '../test/messages/fixtures.js';
import { machine, median } from './machine.js';

// Without --runs, indexOf is -1 and argv[0] (node's path) is no number: the default applies.
const runsAt = process.argv.indexOf('--runs');
const RUNS = (runsAt >= 0 && Number(process.argv[runsAt + 1])) || 5;
const NOW = Date.now();
const DAY = 86_400_000;
const BUCKET = 'lab-starfish-results';

function fill(endpoint: AwsEndpoint, old: number): void {
  const put = (daysAgo: number, n: number) => {
    const at = NOW - daysAgo * DAY + n;
    const runId = `${runIdDay(new Date(at))}-${n.toString(36).padStart(4, '0')}`;
    endpoint.s3.put(`s3://${BUCKET}/${runKeys(runId).manifest}`, JSON.stringify(manifest({ runId, createdAt: new Date(at).toISOString() })));
  };
  for (let n = 0; n < old; n++) put(8 + (n % 720), n);
  for (let n = 0; n < 100; n++) put(n % 7, old + n);
}

async function measure(endpoint: AwsEndpoint, read: () => Promise<unknown>) {
  const times: number[] = [];
  let requests = 0;
  for (let i = 0; i < RUNS; i++) {
    endpoint.requests.length = 0;
    const t0 = performance.now();
    await read();
    times.push(performance.now() - t0);
    requests = endpoint.requests.filter((r) => r.operation === 'ListObjectsV2').length;
  }
  return { listRequests: requests, ms: Math.round(median(times)) };
}

const rows = [];
for (const old of [1_000, 10_000, 50_000]) {
  const endpoint = new AwsEndpoint();
  await endpoint.start();
  const { s3 } = endpoint.clients();
  const store = new S3Store({ client: s3, bucket: BUCKET });
  fill(endpoint, old);
  const week = runIdDay(new Date(NOW - 7 * DAY));
  rows.push({
    runsInBucket: old + 100,
    newest50: await measure(endpoint, () => listRuns(store, 50, undefined, NOW)),
    wholeBucketListingAlone: await measure(endpoint, () => store.listFolders(RUNS_PREFIX)),
    weekHistory: await measure(endpoint, () => listRuns(store, 0, week, NOW)),
  });
  s3.destroy();
  await endpoint.close();
}
console.log(JSON.stringify({ bench: 'list-runs', machine: machine(), runs: RUNS, rows }));
