/** Server error codes in words a radiologist understands; the code itself is always shown for support. */

const WORDS: Record<string, string> = {
  INVALID_INPUT: 'This series cannot be segmented with the chosen model.',
  UNAUTHORIZED: 'You are not signed in to the segmentation service, or your session has expired. Sign in again.',
  PAYLOAD_TOO_LARGE: 'The request was too large for the segmentation service. Segment fewer series at once.',
  HOST_NOT_ALLOWED:
    'The segmentation service does not answer to the address in your browser. Ask IT to add it (LDFSAM_ALLOWED_HOSTS).',
  ORIGIN_NOT_ALLOWED:
    'The segmentation service refused a request from this page. Ask IT to add its address (LDFSAM_ALLOWED_HOSTS).',
  NOT_FOUND: 'The series was not found in the PACS. It may have been deleted or moved.',
  PACS_UNAVAILABLE: 'The PACS is not reachable at the moment. Try again in a few minutes.',
  PACS_REJECTED: 'The PACS refused the request. Ask your PACS administrator.',
  PACS_NOT_INSTALLED: 'The segmentation service cannot start its PACS: it is not installed on the server. Ask IT.',
  NOT_READY: 'The segmentation service is not ready: it has no segmentation model loaded. Ask IT.',
  UNSUPPORTED_DICOM: 'The images of this series cannot be read for segmentation (see the details).',
  MODEL_REJECTED: 'The segmentation model failed its integrity check and was not used.',
  INFERENCE_FAILED: 'The segmentation model failed on this series. Nothing was stored.',
  SEG_INVALID: 'The segmentation result failed its checks and was not stored.',
  CANCELLED: 'The segmentation was cancelled. Nothing was stored.',
  STORAGE_FULL: "The segmentation service's disk is full, so the job was not accepted or its result not saved. Ask IT.",
  NETWORK: 'The segmentation service cannot be reached. Check your network or ask IT.',
  CONFIG_INVALID: 'The segmentation service is misconfigured. Ask IT.',
  INTERNAL: 'The segmentation service had an unexpected problem. Nothing was stored.',
  CONFLICT: 'This structure is already being carried through the series. Wait for it to finish, or cancel it.',
  LIMIT_REACHED:
    'Too many interactive segmentations are open on the segmentation service. Close one (or wait a few minutes) and try again.',
};

export function describeError(code: string): string {
  return WORDS[code] ?? 'The segmentation failed.';
}
