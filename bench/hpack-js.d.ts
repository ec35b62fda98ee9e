// The part of hpack.js (no types of its own) that raw-h2.ts uses: a
// decompressor fed whole header blocks, read synchronously.
declare module 'hpack.js' {
  interface HeaderField {
    readonly name: string;
    readonly value: string;
  }
  interface Decompressor {
    write(block: Buffer): boolean;
    /** Decodes what was written; a malformed block emits 'error'. */
    execute(): void;
    read(): HeaderField | null;
    on(event: 'error', listener: (error: Error) => void): this;
  }
  const hpack: { decompressor: { create(options: { table: { size: number } }): Decompressor } };
  export default hpack;
}
