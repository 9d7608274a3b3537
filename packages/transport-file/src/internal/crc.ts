/**
 * The CRC-32 of the record format (IEEE, zlib's `crc32`) by its linearity,
 * for checksumming many overlapping spans of a file without reading each
 * from its start. The register (zlib's value without its inversions before
 * and after) is linear over GF(2) in the register and the bytes: the
 * register after bytes `m` from register `s` is `shift(s, |m|) ^ advance(0, m)`,
 * where `shift(s, n)` is `s` after `n` zero bytes, a linear map of 32 bits
 * that `shift` applies from tables, a stride of `STRIDE` bytes at a time.
 *
 * @internal
 */
import * as Zlib from "node:zlib"

/** Bytes per stride: `shift` moves a register over whole strides of zero bytes. */
export const STRIDE = 256

/** All 32 bits: the inversion zlib applies to the register before and after. */
export const MASK = 0xffff_ffff

/** The register after `bytes` from the register `register` (zlib's `crc32` without its inversions). */
export const advance = (register: number, bytes: Uint8Array): number =>
  (Zlib.crc32(bytes, (register ^ MASK) >>> 0) ^ MASK) >>> 0

/** A linear map of 32-bit values as 4 tables of 256 entries, one per byte of the value (`apply`). */
type LinearMap = Uint32Array

/** The linear map sending bit `j` to `images[j]`: each entry is the sum (xor) of the images of its bits. */
const linearMap = (images: ReadonlyArray<number>): LinearMap => {
  const tables = new Uint32Array(4 * 256)
  for (let byte = 0; byte < 4; byte++) {
    for (let x = 1; x < 256; x++) {
      const low = x & -x
      tables[byte * 256 + x] = tables[byte * 256 + (x ^ low)]! ^ images[8 * byte + 31 - Math.clz32(low)]!
    }
  }
  return tables
}

/** The image of `value` under the linear map `map`. */
const apply = (map: LinearMap, value: number): number =>
  (map[value & 255]! ^ map[256 + ((value >>> 8) & 255)]! ^ map[512 + ((value >>> 16) & 255)]! ^
    map[768 + (value >>> 24)]!) >>> 0

/** The 32 single bits, the basis the maps are built on. */
const BITS: ReadonlyArray<number> = Array.from({ length: 32 }, (_, bit) => (1 << bit) >>> 0)

/**
 * Level `p`, digit `d` (1 to 15): the shift by `d * 16 ** p` strides. Built
 * as far as the largest shift asked for so far (`levelsFor`), then kept.
 */
const levels: Array<ReadonlyArray<LinearMap>> = []

/** The level after the last one built: its shifts by 1 to 15 times 16 times the last level's unit. */
const nextLevel = (): ReadonlyArray<LinearMap> => {
  const below = levels.at(-1)
  let images = below === undefined
    ? BITS.map((bit) => advance(bit, new Uint8Array(STRIDE)))
    : BITS.map((bit) => apply(below[1]!, apply(below[15]!, bit)))
  const one = linearMap(images)
  const level: Array<LinearMap> = [new Uint32Array(0), one]
  for (let digit = 2; digit < 16; digit++) {
    images = images.map((image) => apply(one, image))
    level.push(linearMap(images))
  }
  return level
}

/** Builds the levels that shifts by up to `strides` strides need. */
const levelsFor = (strides: number): void => {
  let count = 0
  for (let n = strides; n > 0; n = Math.floor(n / 16)) count++
  while (levels.length < count) levels.push(nextLevel())
}

/** The register `register` after `strides * STRIDE` zero bytes. */
export const shift = (register: number, strides: number): number => {
  levelsFor(strides)
  let out = register
  for (let level = 0, n = strides; n > 0; level++, n = Math.floor(n / 16)) {
    const digit = n % 16
    if (digit !== 0) out = apply(levels[level]![digit]!, out)
  }
  return out
}
