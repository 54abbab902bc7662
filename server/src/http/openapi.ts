/** The OpenAPI 3 description of every route, served at /api/openapi.json (a test checks it against the routes). */
const error = { $ref: '#/components/schemas/Error' };
const json = (schema: object) => ({ content: { 'application/json': { schema } } });
const uid = { type: 'string', pattern: '^(0|[1-9][0-9]*)(\\.(0|[1-9][0-9]*))*$', maxLength: 64 };
const idParam = { name: 'id', in: 'path', required: true, schema: { type: 'string', format: 'uuid' } };
const errors = {
  '400': { description: 'invalid input', ...json(error) },
  '401': { description: 'authentication required', ...json(error) },
  '404': { description: 'not found', ...json(error) },
};

export const openapi = {
  openapi: '3.0.3',
  info: {
    title: 'LDFSAM server API',
    version: '1',
    description: 'Auto-segmentation jobs: a series in the PACS in, a DICOM SEG stored in the PACS out.',
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
          result: { type: 'object', nullable: true },
          error: { type: 'object', nullable: true },
          attempts: { type: 'integer' },
          worker: { type: 'string', nullable: true, description: 'the worker that ran it last (Redis queue)' },
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
        },
      },
    },
  },
  security: [{ bearer: [] }],
  paths: {
    '/health': { get: { summary: 'liveness', security: [], responses: { '200': { description: 'alive' } } } },
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
        summary: 'registered models: name, version, modes (auto, promptable), modalities, segments, metrics',
        responses: { '200': { description: 'models' } },
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
    '/api/batches/{id}': {
      get: {
        summary: 'counts per state and every job',
        parameters: [idParam],
        responses: { '200': { description: 'batch' }, ...errors },
      },
      delete: {
        summary: 'cancel what has not finished',
        parameters: [idParam],
        responses: { '200': { description: 'batch' }, ...errors },
      },
    },
  },
} as const;
