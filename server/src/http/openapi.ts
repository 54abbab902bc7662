import { monaiLabelPaths } from './monailabel/openapi.js';

/** The OpenAPI 3 description of every route, served at /api/openapi.json (a test checks it against the routes). */
const error = { $ref: '#/components/schemas/Error' };
const json = (schema: object) => ({ content: { 'application/json': { schema } } });
const uid = { type: 'string', pattern: '^(0|[1-9][0-9]*)(\\.(0|[1-9][0-9]*))*$', maxLength: 64 };
const outputs = {
  enum: ['seg', 'rtstruct', 'both'],
  default: 'seg',
  description:
    'the results to write: DICOM SEG, RT Structure Set (needs a series with patient coordinates: refused for ultrasound and photographs), or both (then a series without patient coordinates gets the SEG only, and a note says why)',
};
const idParam = { name: 'id', in: 'path', required: true, schema: { type: 'string', format: 'uuid' } };
const sessionParam = { ...idParam, description: 'the interactive session (its creator only; others get 404)' };
const coded = {
  type: 'object',
  additionalProperties: false,
  required: ['scheme', 'code', 'meaning'],
  properties: {
    scheme: {
      type: 'string',
      pattern: '^(SCT|DCM|99[A-Z0-9_]{1,14})$',
      description: 'SNOMED CT, DICOM, or a local scheme (99…)',
    },
    code: { type: 'string', maxLength: 16 },
    meaning: { type: 'string', maxLength: 64 },
  },
};
const mask = {
  type: 'object',
  required: ['rows', 'columns', 'bits'],
  properties: {
    rows: { type: 'integer' },
    columns: { type: 'integer' },
    bits: {
      type: 'string',
      format: 'byte',
      description:
        'base64 of the mask over the whole slice: row-major, 8 pixels a byte, least significant bit first (as DICOM SEG packs Pixel Data)',
    },
  },
};
const providerSchema = { type: 'string', enum: ['cpu', 'cuda'], nullable: true };
const errors = {
  '400': { description: 'invalid input', ...json(error) },
  '401': { description: 'authentication required', ...json(error) },
  '403': { description: 'ORIGIN_NOT_ALLOWED: a POST/PUT/DELETE from a page of another origin', ...json(error) },
  '404': { description: 'not found', ...json(error) },
  '421': { description: 'HOST_NOT_ALLOWED: a Host header this server does not answer to', ...json(error) },
};

export const openapi = {
  openapi: '3.0.3',
  info: {
    title: 'LDFSAM server API',
    version: '1',
    description:
      'Auto-segmentation jobs: a series in the PACS in; a DICOM SEG and/or an RT Structure Set out, stored in the PACS by STOW-RS ' +
      'and/or sent to a configured DICOM node by C-STORE (LDFSAM_STORE_VIA). Interactive segmentation: box and point prompts ' +
      'on any slice of a series, propagation through the series, the structure stored as DICOM SEG. ' +
      'Every request (this API, /health, the viewer, /dicom-web) must name the server by a Host it answers to ' +
      '(localhost, 127.0.0.1 or [::1] with its port, or LDFSAM_ALLOWED_HOSTS), else 421 HOST_NOT_ALLOWED; ' +
      'POST, PUT and DELETE with an Origin header that is not one of those are 403 ORIGIN_NOT_ALLOWED.',
  },
  components: {
    securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } },
    schemas: {
      Error: {
        type: 'object',
        required: ['error'],
        properties: {
          error: {
            type: 'object',
            required: ['code', 'message'],
            properties: { code: { type: 'string' }, message: { type: 'string' } },
          },
        },
      },
      JobRequest: {
        type: 'object',
        additionalProperties: false,
        required: ['studyInstanceUID'],
        properties: {
          studyInstanceUID: uid,
          seriesInstanceUID: uid,
          model: { type: 'string' },
          force: { type: 'boolean' },
          priority: { enum: ['interactive', 'batch'] },
          outputs,
        },
      },
      Job: {
        type: 'object',
        properties: {
          id: { type: 'string' },
          batchId: { type: 'string', nullable: true },
          state: { enum: ['queued', 'running', 'succeeded', 'failed', 'cancelled'] },
          request: { type: 'object' },
          progress: {
            type: 'object',
            nullable: true,
            properties: { stage: { type: 'string' }, done: { type: 'integer' }, total: { type: 'integer' } },
          },
          result: { $ref: '#/components/schemas/JobResult' },
          error: { type: 'object', nullable: true },
          attempts: { type: 'integer' },
          worker: { type: 'string', nullable: true, description: 'the worker that ran it last (Redis queue)' },
        },
      },
      JobResult: {
        type: 'object',
        nullable: true,
        description:
          'a succeeded job: what was stored. A model with a presence gate (model.json postprocessing.presence) puts no frame on a slice scoring below its threshold; when no slice passes, the job still succeeds, with status not-found, slicesFound 0, no SEG and a message saying so',
        properties: {
          status: {
            enum: ['stored', 'empty', 'not-found'],
            description:
              'stored: a SEG is in the PACS; empty: the model segmented nothing; not-found: no slice passed the presence gate',
          },
          segSeriesInstanceUID: { type: 'string', nullable: true },
          segSopInstanceUID: { type: 'string', nullable: true },
          rtstructSeriesInstanceUID: { type: 'string', nullable: true },
          rtstructSopInstanceUID: { type: 'string', nullable: true },
          storedIn: { type: 'array', items: { type: 'string' }, description: "'stow' and/or 'dimse:AET@host:port'" },
          notes: {
            type: 'array',
            items: { type: 'string' },
            description: 'what the user should know (e.g. why no RTSTRUCT was written)',
          },
          frames: { type: 'integer', description: 'frames in the SEG' },
          slices: { type: 'integer' },
          slicesFound: { type: 'integer', description: 'slices with a frame in the SEG ("found on N of M slices")' },
          scores: {
            type: 'array',
            nullable: true,
            items: { type: 'number' },
            description:
              "per slice, in the series' order, the presence score in [0, 1] (4 decimals); null without a presence gate",
          },
          presenceThreshold: { type: 'number', nullable: true },
          confidence: { type: 'number', nullable: true, description: 'mean presence score of the slices found' },
          slicesUnlikeTraining: {
            type: 'integer',
            description:
              "slices scored 0 for lying beyond the presence gate's featureMax: unlike every image the model was trained on",
          },
          message: { type: 'string', description: 'the outcome in plain words' },
          timingsMs: { type: 'object', additionalProperties: { type: 'number' } },
        },
      },
      Queue: {
        type: 'object',
        properties: {
          backend: { enum: ['sqlite', 'redis'] },
          counts: {
            type: 'object',
            properties: Object.fromEntries(
              ['waiting', 'delayed', 'active', 'completed', 'failed'].map((k) => [k, { type: 'integer' }]),
            ),
          },
          workers: {
            type: 'array',
            items: {
              type: 'object',
              properties: {
                id: { type: 'string' },
                host: { type: 'string' },
                pid: { type: 'integer' },
                provider: { type: 'string' },
                device: { type: 'integer', nullable: true },
                concurrency: { type: 'integer' },
                active: { type: 'array', items: { type: 'string' } },
                processed: { type: 'integer' },
                startedAt: { type: 'string' },
                seenAt: { type: 'string' },
              },
            },
          },
          pacs: { type: 'object', properties: { maxJobs: { type: 'integer' }, inUse: { type: 'integer' } } },
        },
      },
      SessionRequest: {
        type: 'object',
        additionalProperties: false,
        required: ['studyInstanceUID', 'seriesInstanceUID'],
        properties: {
          studyInstanceUID: uid,
          seriesInstanceUID: uid,
          model: {
            type: 'string',
            description: 'a promptable model; default: the first for the modality (trained ones before catch-alls)',
          },
        },
      },
      Session: {
        type: 'object',
        properties: {
          sessionId: { type: 'string', format: 'uuid' },
          model: { type: 'object', properties: { name: { type: 'string' }, version: { type: 'string' } } },
          studyInstanceUID: uid,
          seriesInstanceUID: uid,
          modality: { type: 'string' },
          rows: { type: 'integer' },
          columns: { type: 'integer' },
          slices: {
            type: 'array',
            description:
              'the planned order (by position along the slice normal; 2D images by instance and frame number): a slice index is a place here',
            items: { type: 'object', properties: { sopInstanceUID: uid, frameNumber: { type: 'integer' } } },
          },
          maxPoints: { type: 'integer' },
          idleTimeoutMs: { type: 'integer' },
          propagation: {
            type: 'object',
            properties: { minIou: { type: 'number' }, useMask: { type: 'boolean' }, maxSlices: { type: 'integer' } },
          },
          masks: {
            type: 'array',
            items: { type: 'object', properties: { slice: { type: 'integer' }, iou: { type: 'number', nullable: true } } },
          },
          encodedSlices: {
            type: 'array',
            items: { type: 'integer' },
            description: 'slices whose encoder outputs are cached: a prompt there runs only the decoder',
          },
          propagating: { type: 'boolean' },
        },
      },
      PromptRequest: {
        type: 'object',
        additionalProperties: false,
        required: ['slice'],
        description: 'slice pixel coordinates: x = column, y = row; a box or at least one point',
        properties: {
          slice: { type: 'integer', minimum: 0 },
          box: {
            type: 'array',
            items: { type: 'number' },
            minItems: 4,
            maxItems: 4,
            description: '[x0, y0, x1, y1], inclusive pixel indices, inside the image, x1 > x0 and y1 > y0',
          },
          points: {
            type: 'array',
            items: {
              type: 'object',
              additionalProperties: false,
              required: ['x', 'y', 'positive'],
              properties: { x: { type: 'number' }, y: { type: 'number' }, positive: { type: 'boolean' } },
            },
          },
          usePreviousMask: { type: 'boolean', description: "feed this slice's previous logits to the decoder as its mask input" },
        },
      },
      SliceMask: {
        type: 'object',
        properties: {
          slice: { type: 'integer' },
          iou: { type: 'number', nullable: true, description: "the model's predicted IoU" },
          cached: { type: 'boolean', description: "the slice's image embedding was cached: only the decoder ran" },
          usedPreviousMask: { type: 'boolean' },
          mask,
          timingsMs: {
            type: 'object',
            additionalProperties: { type: 'number' },
            description:
              'fetch, preprocess and encode (when the slice was not cached), decode (of which decoderRun inside the inference worker), postprocess; a prompt answer adds server (all)',
          },
        },
      },
      PropagateRequest: {
        type: 'object',
        additionalProperties: false,
        required: ['fromSlice'],
        properties: {
          fromSlice: { type: 'integer', minimum: 0, description: 'a slice with a mask in this session (prompted first)' },
          direction: {
            enum: ['both', 'up', 'down'],
            description: 'up: higher slice indices (along the slice normal); default both',
          },
          minIou: {
            type: 'number',
            minimum: 0,
            maximum: 1,
            description: 'stop below this predicted IoU (default LDFSAM_INTERACTIVE_MIN_IOU)',
          },
          useMask: {
            type: 'boolean',
            description: "feed the previous slice's logits as mask input (default LDFSAM_INTERACTIVE_PROPAGATION_MASK_INPUT)",
          },
          maxSlices: { type: 'integer', minimum: 1 },
        },
      },
      AcceptRequest: {
        type: 'object',
        additionalProperties: false,
        required: ['label', 'slices'],
        properties: {
          label: { type: 'string', maxLength: 64 },
          category: { ...coded, description: 'default SCT 91723000 Anatomical Structure' },
          type: {
            ...coded,
            description: "default: a local code of the label (scheme 99LDFSAM, code L + 10 hex digits of the label's SHA-256)",
          },
          color: { type: 'array', items: { type: 'integer', minimum: 0, maximum: 255 }, minItems: 3, maxItems: 3 },
          slices: {
            type: 'array',
            minItems: 1,
            items: {
              type: 'object',
              additionalProperties: false,
              required: ['slice'],
              properties: {
                slice: { type: 'integer' },
                bits: {
                  type: 'string',
                  format: 'byte',
                  description: "an edited mask (packed as the prompt answers), else the session's own",
                },
              },
            },
          },
        },
      },
      Accepted: {
        type: 'object',
        properties: {
          segSeriesInstanceUID: uid,
          segSopInstanceUID: uid,
          instanceNumber: { type: 'integer' },
          frames: { type: 'integer' },
          slices: { type: 'array', items: { type: 'integer' } },
          timingsMs: { type: 'object', additionalProperties: { type: 'number' } },
        },
      },
      BatchRequest: {
        type: 'object',
        additionalProperties: false,
        properties: {
          studies: { type: 'array', items: uid },
          query: {
            type: 'object',
            additionalProperties: false,
            properties: {
              ModalitiesInStudy: { type: 'string' },
              StudyDate: { type: 'string' },
              PatientID: { type: 'string' },
              AccessionNumber: { type: 'string' },
            },
          },
          model: { type: 'string' },
          force: { type: 'boolean' },
          outputs,
        },
      },
    },
  },
  security: [{ bearer: [] }],
  paths: {
    '/health': {
      get: {
        summary: 'liveness, and the execution provider of the inference in this process',
        security: [],
        responses: {
          '200': {
            description: 'alive',
            ...json({
              type: 'object',
              properties: {
                status: { enum: ['ok'] },
                provider: { ...providerSchema, description: 'cpu or cuda; null when this process runs no inference' },
              },
            }),
          },
        },
      },
    },
    '/api/ready': {
      get: {
        summary: 'PACS reachable and models loaded',
        responses: {
          '200': { description: 'ready' },
          '503': {
            description:
              'not ready: PACS_UNAVAILABLE when the PACS does not answer, else NOT_READY (no model loaded); the message lists every reason',
            ...json(error),
          },
        },
      },
    },
    '/api/metrics': {
      get: { summary: 'Prometheus metrics', responses: { '200': { description: 'text/plain; version=0.0.4' } } },
    },
    '/api/queue': {
      get: {
        summary:
          'the job queue: backend, counts (waiting, delayed, active, completed, failed), workers seen and their devices, PACS slots',
        responses: { '200': { description: 'queue', ...json({ $ref: '#/components/schemas/Queue' }) } },
      },
    },
    '/api/openapi.json': { get: { summary: 'this document', responses: { '200': { description: 'OpenAPI 3' } } } },
    '/api/models': {
      get: {
        summary:
          'registered models: name, version, modes (auto, promptable), modalities, segments, metrics; the execution provider they run on',
        responses: {
          '200': {
            description: 'models',
            ...json({
              type: 'object',
              properties: {
                provider: providerSchema,
                device: { type: 'integer', nullable: true, description: 'the GPU (CUDA) or null' },
                providerFallback: {
                  type: 'string',
                  description: 'why CUDA is not used, when LDFSAM_PROVIDER=auto fell back to the CPU',
                },
                models: { type: 'array', items: { type: 'object' } },
              },
            }),
          },
        },
      },
    },
    '/api/jobs': {
      get: {
        summary: 'recent jobs, newest first',
        parameters: [
          {
            name: 'limit',
            in: 'query',
            required: false,
            description: 'how many (default 50); anything but an integer 1..500 is 400',
            schema: { type: 'integer', minimum: 1, maximum: 500 },
          },
        ],
        responses: { '200': { description: 'jobs' }, ...errors },
      },
      post: {
        summary: 'segment a series (or every accepted series of a study); idempotent while queued or running',
        requestBody: { required: true, ...json({ $ref: '#/components/schemas/JobRequest' }) },
        responses: { '202': { description: '{jobId} or {jobIds}', ...json({ type: 'object' }) }, ...errors },
      },
    },
    '/api/jobs/{id}': {
      get: {
        summary: 'state, progress, result or error',
        parameters: [idParam],
        responses: { '200': { description: 'job', ...json({ $ref: '#/components/schemas/Job' }) }, ...errors },
      },
      delete: {
        summary: 'cancel; a cancelled job stores nothing',
        parameters: [idParam],
        responses: { '200': { description: 'job' }, ...errors },
      },
    },
    '/api/jobs/{id}/events': {
      get: {
        summary: 'Server-Sent Events: progress, ending with the final state',
        parameters: [idParam],
        responses: { '200': { description: 'text/event-stream' }, ...errors },
      },
    },
    '/api/batches': {
      post: {
        summary: 'segment a list of studies or the studies matching a QIDO-RS filter',
        requestBody: { required: true, ...json({ $ref: '#/components/schemas/BatchRequest' }) },
        responses: { '202': { description: '{batchId, jobs}' }, ...errors },
      },
    },
    '/api/interactive': {
      post: {
        summary:
          'open an interactive session on a series: planned (order, geometry) from its metadata; slices are fetched when prompted',
        requestBody: { required: true, ...json({ $ref: '#/components/schemas/SessionRequest' }) },
        responses: {
          '201': { description: 'session', ...json({ $ref: '#/components/schemas/Session' }) },
          ...errors,
          '429': { description: 'LIMIT_REACHED: too many sessions open (per user or in all)', ...json(error) },
        },
      },
    },
    '/api/interactive/{id}': {
      get: {
        summary: 'the session: series, slices, the slices holding a mask, the slices encoded',
        parameters: [sessionParam],
        responses: { '200': { description: 'session', ...json({ $ref: '#/components/schemas/Session' }) }, ...errors },
      },
      delete: {
        summary: 'close the session (its masks are forgotten)',
        parameters: [sessionParam],
        responses: { '200': { description: 'closed' }, ...errors },
      },
    },
    '/api/interactive/{id}/prompt': {
      post: {
        summary:
          "a box and/or points on one slice -> that slice's mask; the slice is encoded once (then cached), each prompt runs the decoder",
        parameters: [sessionParam],
        requestBody: { required: true, ...json({ $ref: '#/components/schemas/PromptRequest' }) },
        responses: { '200': { description: 'mask', ...json({ $ref: '#/components/schemas/SliceMask' }) }, ...errors },
      },
    },
    '/api/interactive/{id}/encode': {
      post: {
        summary:
          "encode one slice ahead of its first prompt (the viewer sends the slice the user stopped on while a tool is active); answers once the slice's encoder outputs are cached, `cached: true` when they already were. A prompt sent meanwhile waits on the same encoder pass",
        parameters: [sessionParam],
        requestBody: {
          required: true,
          ...json({
            type: 'object',
            additionalProperties: false,
            required: ['slice'],
            properties: { slice: { type: 'integer', minimum: 0 } },
          }),
        },
        responses: {
          '200': {
            description: 'encoded',
            ...json({
              type: 'object',
              properties: {
                slice: { type: 'integer' },
                cached: { type: 'boolean' },
                timingsMs: { type: 'object', additionalProperties: { type: 'number' } },
              },
            }),
          },
          ...errors,
        },
      },
    },
    '/api/interactive/{id}/propagate': {
      post: {
        summary:
          "Server-Sent Events: carry a slice's mask through the series (each next slice prompted with the previous mask's box + 10%); " +
          'events `slice` (a SliceMask with direction, done, total), `stopped` (direction, reason: empty | low-iou | end-of-series | limit | cancelled), then `final` or `error`; closing the stream cancels (from the first slice on, before any event)',
        parameters: [sessionParam],
        requestBody: { required: true, ...json({ $ref: '#/components/schemas/PropagateRequest' }) },
        responses: {
          '200': { description: 'text/event-stream' },
          ...errors,
          '409': { description: 'CONFLICT: already propagating', ...json(error) },
        },
      },
      delete: {
        summary: 'cancel the running propagation (masks already sent are kept)',
        parameters: [sessionParam],
        responses: { '200': { description: '{cancelled}' }, ...errors },
      },
    },
    '/api/interactive/{id}/accept': {
      post: {
        summary:
          'store the chosen slices\' masks as one DICOM SEG instance (one segment, SEMIAUTOMATIC, the model as algorithm) in the series "LDFSAM interactive" of the source series; STOW-RS, then read back. The same masks, label, codes and colour accepted again are the same instance (a PACS keeps it once); any change is a new instance',
        parameters: [sessionParam],
        requestBody: { required: true, ...json({ $ref: '#/components/schemas/AcceptRequest' }) },
        responses: { '201': { description: 'stored', ...json({ $ref: '#/components/schemas/Accepted' }) }, ...errors },
      },
    },
    '/api/batches/{id}': {
      get: {
        summary:
          'counts per state, nothingFound (succeeded jobs that stored nothing because the model found nothing), and every job',
        parameters: [idParam],
        responses: { '200': { description: 'batch' }, ...errors },
      },
      delete: {
        summary: 'cancel what has not finished',
        parameters: [idParam],
        responses: { '200': { description: 'batch' }, ...errors },
      },
    },
    ...monaiLabelPaths,
  },
} as const;
