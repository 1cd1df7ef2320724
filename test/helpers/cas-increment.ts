// A separate process incrementing a counter with compare-and-swap (see dir-store.test.ts).
import { DirectoryStore } from '../../src/local/dir-store.js';

const [root, times] = process.argv.slice(2);
const store = new DirectoryStore(root!);
for (let i = 0; i < Number(times); i++) {
  for (;;) {
    const current = (await store.get('counter'))!;
    const next = String(Number(current.body.toString()) + 1);
    if ((await store.replaceIf('counter', next, current.etag)) !== 'conflict') break;
  }
}
