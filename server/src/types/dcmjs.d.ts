declare module 'dcmjs' {
  const dcmjs: {
    log: { getLogger(name: string): { setLevel(level: 'silent' | 'error' | 'warn' | 'info' | 'debug'): void } };
    data: {
      DicomMessage: {
        readFile(
          buffer: ArrayBuffer,
          options?: { untilTag?: string; includeUntilTagValue?: boolean; ignoreErrors?: boolean; noCopy?: boolean },
        ): { meta: Record<string, unknown>; dict: Record<string, unknown> };
      };
      DicomDict: new (meta: Record<string, unknown>) => { dict: Record<string, unknown>; write(): ArrayBuffer };
      DicomMetaDictionary: {
        naturalizeDataset(dict: Record<string, unknown>): Record<string, unknown>;
      };
    };
  };
  export default dcmjs;
}
