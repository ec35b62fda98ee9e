// Redis Cluster key → hash slot, exactly as Redis computes it: CRC16-XMODEM of
// the first non-empty {hash tag} (or of the whole key), modulo 16384.

const TABLE = (() => {
  const table = new Uint16Array(256);
  for (let i = 0; i < 256; i++) {
    let crc = i << 8;
    for (let bit = 0; bit < 8; bit++) crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
    table[i] = crc;
  }
  return table;
})();

const encoder = new TextEncoder();

function crc16(bytes: Uint8Array, start: number, end: number): number {
  let crc = 0;
  for (let i = start; i < end; i++) crc = ((crc << 8) & 0xffff) ^ TABLE[((crc >> 8) ^ bytes[i]!) & 0xff]!;
  return crc;
}

const CLUSTER_SLOTS = 16_384;

export function clusterSlot(key: string): number {
  // '{' and '}' are ASCII, and UTF-8 never has their bytes inside a longer character: the tag found
  // in the string is the tag in the bytes. An ASCII tag (our keys') is hashed from the string itself.
  let start = 0;
  let end = key.length;
  const open = key.indexOf('{');
  if (open >= 0) {
    const close = key.indexOf('}', open + 1);
    if (close > open + 1) {
      start = open + 1;
      end = close;
    }
  }
  let crc = 0;
  for (let i = start; i < end; i++) {
    const code = key.charCodeAt(i);
    if (code >= 0x80) return slotOfBytes(encoder.encode(key));
    crc = ((crc << 8) & 0xffff) ^ TABLE[((crc >> 8) ^ code) & 0xff]!;
  }
  return crc % CLUSTER_SLOTS;
}

function slotOfBytes(bytes: Uint8Array): number {
  const open = bytes.indexOf(0x7b); // {
  if (open >= 0) {
    const close = bytes.indexOf(0x7d, open + 1); // }
    if (close > open + 1) return crc16(bytes, open + 1, close) % CLUSTER_SLOTS;
  }
  return crc16(bytes, 0, bytes.length) % CLUSTER_SLOTS;
}
