/** DICOM JSON Model (PS3.18 F.2): one data set, keyed by 8-hex-digit tags. */
export interface DicomJsonElement {
  vr: string;
  Value?: unknown[];
  BulkDataURI?: string;
  InlineBinary?: string;
}
export type DicomJson = Record<string, DicomJsonElement>;

/** One frame as the PACS sent it: the transfer syntax is the one the PACS says it used. */
export interface RetrievedFrame {
  frameNumber: number;
  transferSyntaxUID: string;
  contentType: string;
  bytes: Buffer;
}

export interface StoreResult {
  stored: { sopClassUID: string; sopInstanceUID: string; retrieveURL?: string }[];
  failed: { sopClassUID: string; sopInstanceUID: string; failureReason: number }[];
  /** Warning Reason (0008,1196) or other non-failure remarks of the PACS. */
  warnings: string[];
}
