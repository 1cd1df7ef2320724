/**
 * References resolved as slicedimage 4.1.1 resolves them (slicedimage/url/path.py, resolve.py and
 * the disk, S3 and HTTP backends), and the references staging writes so that it reads them back.
 * The first rows are slicedimage's own tests (tests/io_/test_resolve_url.py).
 */
import { describe, expect, it } from 'vitest';
import { entryUrl, readerLocation, referenceProblem, referenceTo, resolveReference } from '../../src/spacetx/url.js';

const read = (from: string, ref: string) => readerLocation(resolveReference(entryUrl(from), ref));

describe('resolving a reference as slicedimage does', () => {
  it.each([
    // slicedimage's tests: a full URL ignores the base; a relative one joins the base's folder.
    ['https://github.io/x.json', 'https://github.com/abc/def', 'https://github.com/abc/def'],
    ['https://github.com/abc/x.json', 'def', 'https://github.com/abc/def'],
    ['https://github.com/x.json', 'abc/def', 'https://github.com/abc/def'],
    // Disk: the whole path is decoded (file URLs), .. is the folder above.
    ['/data/iss/experiment.json', 'primary_images.json', '/data/iss/primary_images.json'],
    ['/data/iss/experiment.json', '../other/primary.json', '/data/other/primary.json'],
    ['/data/iss/experiment.json', 'tiles%20a/fov%200.tiff', '/data/iss/tiles a/fov 0.tiff'],
    ['/data/my exp/experiment.json', 'fov 0.tiff', '/data/my exp/fov 0.tiff'],
    ['/data/iss/experiment.json', '/elsewhere/codebook.json', '/elsewhere/codebook.json'],
    ['/data/iss/experiment.json', 'file:///elsewhere/my%20codebook.json', '/elsewhere/my codebook.json'],
    // S3: the file name is decoded, the folder part is the key as written, .. is part of the key,
    // and an absolute path stays in the bucket.
    ['s3://lab/iss/experiment.json', 'fov%200.tiff', 's3://lab/iss/fov 0.tiff'],
    ['s3://lab/iss/experiment.json', 'my%20dir/fov.tiff', 's3://lab/iss/my%20dir/fov.tiff'],
    ['s3://lab/iss/experiment.json', 'my dir/fov 0.tiff', 's3://lab/iss/my dir/fov 0.tiff'],
    ['s3://lab/iss/experiment.json', '../other/x.json', 's3://lab/iss/../other/x.json'],
    ['s3://lab/iss/experiment.json', './x.json', 's3://lab/iss/x.json'],
    ['s3://lab/iss/experiment.json', '/shared/codebook.json', 's3://lab/shared/codebook.json'],
    ['s3://lab/iss/experiment.json', 's3://public/cb.json', 's3://public/cb.json'],
    // HTTP: requests sends spaces encoded and urllib3 removes dot segments.
    ['https://data.org/iss/experiment.json', 'fov 0.tiff', 'https://data.org/iss/fov%200.tiff'],
    ['https://data.org/iss/experiment.json', '../x.json', 'https://data.org/x.json'],
  ])('from %s, "%s" is %s', (from, ref, expected) => {
    expect(read(from, ref)).toBe(expected);
  });

  it('has no location for a scheme slicedimage has no backend for', () => {
    expect(read('/data/iss/experiment.json', 'ftp://example.org/x.json')).toBeUndefined();
    expect(read('/data/iss/experiment.json', 'gs://bucket/x.json')).toBeUndefined();
  });

  it('names what slicedimage would misread: a query or fragment, a host, a folder', () => {
    expect(referenceProblem('fov_000#r0.tiff')).toMatch(/"\?" or "#", which slicedimage reads as the start of a URL query or fragment/);
    expect(referenceProblem('//host/x.json')).toMatch(/starts with "\/\/", which slicedimage reads as a host name/);
    expect(referenceProblem('tiles/')).toMatch(/names a folder/);
    expect(referenceProblem('fov 0.tiff')).toBeUndefined();
  });
});

describe('the references staging writes', () => {
  it.each([
    ['experiment.json', 'other/primary.json', 'disk', 'other/primary.json'],
    ['fovs/fov_000.json', 'tiles/t.tiff', 'disk', '../tiles/t.tiff'],
    // "%" is a file name's own character: written %25, which slicedimage decodes back.
    ['experiment.json', 'dir 50%/t 100%.tiff', 'disk', 'dir 50%25/t 100%25.tiff'],
    ['experiment.json', 'dir 50%/t 100%.tiff', 's3', 'dir 50%/t 100%25.tiff'],
    // On S3 .. would be part of the key: written as the copy's s3:// URL instead.
    ['fovs/fov_000.json', 'tiles/t 100%.tiff', 's3', 's3://results/starfish/experiments/x/tiles/t 100%25.tiff'],
  ] as const)('from %s to %s on %s: "%s"', (fromKey, toKey, store, expected) => {
    const root = store === 'disk' ? '/home/staged/x' : 's3://results/starfish/experiments/x';
    const written = referenceTo(fromKey, toKey, store, `${root}/${toKey}`);
    expect(written).toBe(expected);
    // ...and slicedimage reads it back as that file.
    expect(read(`${root}/${fromKey}`, written)).toBe(`${root}/${toKey}`);
  });
});
