/**
 * The smallest SpaceTx documents planning reads, as the format specifies them (spacetx/starfish
 * starfish/spacetx_format/schema: experiment 5.0.0, fov_manifest 0.1.0, codebook 0.0.0 with r, c
 * and v in every codeword, which Codebook.open_json requires).
 */
export const CODEBOOK_JSON = JSON.stringify({ version: '0.0.0', mappings: [{ codeword: [{ r: 0, c: 0, v: 1 }], target: 'ACTB' }] });

export const experimentJson = () => JSON.stringify({ version: '5.0.0', images: { primary: 'primary_image.json' }, codebook: 'codebook.json', extras: {} });

/** A primary fov manifest listing FOVs fov_000 … of `fovs` (tile lists named, not written). */
export function primaryManifestJson(fovs: number): string {
  const contents = Object.fromEntries(Array.from({ length: fovs }, (_, i) => [`fov_${String(i).padStart(3, '0')}`, `primary-fov_${i}.json`]));
  return JSON.stringify({ version: '0.1.0', contents, extras: {} });
}
