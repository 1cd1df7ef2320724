/**
 * References inside SpaceTx files, resolved as slicedimage 4.1.1 resolves them (the version
 * starfish 0.2.2 and 0.4.0 pin): slicedimage/url/path.py get_absolute_url and
 * slicedimage/url/resolve.py, then the backend that reads the file (backends/_disk.py, _s3.py,
 * _http.py). The differences matter, so they are kept:
 *
 * - a reference with a scheme (`s3://…`, `https://…`, `file://…`) is absolute; anything else is
 *   joined to the referring file's folder with posixpath.join, so `/data/x.json` keeps the
 *   referring file's scheme and bucket or host, and `..` is not removed by the join;
 * - the file name (the last segment) is percent-decoded, the folder part is not: on disk the
 *   whole path is decoded (file URLs), on S3 the folder part is used as written (`my%20exp/` is
 *   a key with "%20" in it) and `..` is part of the key (S3 keys are literal).
 */
import path from 'node:path';
import { pathToFileURL } from 'node:url';

/** Where a SpaceTx file is, as slicedimage holds it: scheme, host or bucket, raw path. */
export interface SpxUrl {
  scheme: string;
  netloc: string;
  /** As written (percent-escapes kept), always starting with "/" for file and s3. */
  path: string;
}

const SCHEME = /^([A-Za-z][A-Za-z0-9+.-]*):/;

/** Python's urllib.parse.unquote: %XX sequences decoded as UTF-8, anything else kept. */
export function unquote(text: string): string {
  return text.replace(/(?:%[0-9a-fA-F]{2})+/g, (run) => Buffer.from(run.replace(/%/g, ''), 'hex').toString('utf8'));
}

/** urlparse's scheme, netloc and path of an absolute URL (query and fragment are refused earlier). */
function parseAbsolute(url: string): SpxUrl | undefined {
  const m = SCHEME.exec(url);
  if (!m) return undefined;
  const rest = url.slice(m[0].length);
  if (!rest.startsWith('//')) return { scheme: m[1]!.toLowerCase(), netloc: '', path: rest };
  const end = rest.indexOf('/', 2);
  return { scheme: m[1]!.toLowerCase(), netloc: end < 0 ? rest.slice(2) : rest.slice(2, end), path: end < 0 ? '' : rest.slice(end) };
}

const posixDirname = (p: string) => {
  const i = p.lastIndexOf('/') + 1;
  const head = p.slice(0, i);
  return head && head !== '/'.repeat(head.length) ? head.replace(/\/+$/, '') : head;
};
const posixBasename = (p: string) => p.slice(p.lastIndexOf('/') + 1);
/** posixpath.join of two parts: an absolute second part replaces the first. */
const posixJoin = (a: string, b: string) => (b.startsWith('/') ? b : a === '' || a.endsWith('/') ? a + b : `${a}/${b}`);

/**
 * Why slicedimage cannot follow this reference to the file it means, or undefined. `?` and `#`
 * start a URL's query and fragment; a reference starting with `//` names a host.
 */
export function referenceProblem(ref: string): string | undefined {
  if (ref === '') return 'it is empty';
  if (/[?#]/.test(ref)) return 'it contains "?" or "#", which slicedimage reads as the start of a URL query or fragment, not as part of the file name';
  if (!SCHEME.test(ref) && ref.startsWith('//')) return 'it starts with "//", which slicedimage reads as a host name';
  if (ref.endsWith('/')) return 'it ends with "/": it names a folder, not a file';
  return undefined;
}

/** slicedimage's get_absolute_url: `ref` as written in the file at `from`. */
export function resolveReference(from: SpxUrl, ref: string): SpxUrl {
  return parseAbsolute(ref) ?? { ...from, path: posixJoin(posixDirname(from.path), ref) };
}

/**
 * resolve_path_or_url for what a person typed: a URL as it is, a path as the file URL that
 * pathlib's as_uri() makes of it (percent-encoded).
 */
export function entryUrl(location: string): SpxUrl {
  const parsed = parseAbsolute(location);
  if (parsed) return parsed;
  return { scheme: 'file', netloc: '', path: pathToFileURL(path.resolve(location)).pathname };
}

/** The name slicedimage reads within the folder: the last segment, decoded. */
const nameOf = (u: SpxUrl) => posixBasename(unquote(u.path));

/** pathlib.PurePosixPath's normal form of an S3 folder: empty and "." segments dropped, ".." kept. */
const s3Folder = (raw: string) =>
  raw
    .split('/')
    .filter((s) => s !== '' && s !== '.')
    .join('/');

/**
 * The location this project's Reader reads for the file slicedimage would read: a decoded path
 * for file URLs, `s3://bucket/key` with the key S3Backend asks for, or an https URL as requests
 * sends it (spaces encoded, dot segments removed). Undefined for schemes slicedimage has no
 * backend for.
 */
export function readerLocation(u: SpxUrl): string | undefined {
  const name = nameOf(u);
  const folder = posixDirname(u.path);
  switch (u.scheme) {
    case 'file':
      return path.resolve(unquote(folder) || '/', name);
    case 's3': {
      const key = [s3Folder(folder), name].filter(Boolean).join('/');
      return `s3://${u.netloc}/${key}`;
    }
    case 'http':
    case 'https':
      try {
        return new URL(`${u.scheme}://${u.netloc}${posixJoin(folder, name.replace(/%/g, '%25'))}`).toString();
      } catch {
        return undefined;
      }
    default:
      return undefined;
  }
}

/**
 * The reference to write in a staged file at `fromKey` so that slicedimage reads `toKey` (both
 * keys relative to one store folder, with the real names). A name's "%" is written "%25" where
 * slicedimage decodes it (the file name everywhere, the folders on disk). S3 keys are literal, so
 * a reference that would need ".." on S3 is written as the copy's s3:// URL (`target`, where the
 * store keeps toKey): slicedimage reads it as it is, and the FOV jobs' URL policy takes it, where
 * it refuses a path from the bucket's root.
 */
export function referenceTo(fromKey: string, toKey: string, store: 'disk' | 's3', target: string): string {
  const relative = path.posix.relative(path.posix.dirname(fromKey), toKey);
  const escape = (segment: string) => segment.replace(/%/g, '%25');
  if (store === 'disk') return relative.split('/').map(escape).join('/');
  const written = relative.startsWith('../') ? target : relative;
  const cut = written.lastIndexOf('/') + 1;
  return written.slice(0, cut) + escape(written.slice(cut));
}
