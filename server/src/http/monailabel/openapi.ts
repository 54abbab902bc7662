/** The MONAI Label API's paths for the server's OpenAPI description (see router.ts; paths take an optional trailing slash). */
const error = { $ref: '#/components/schemas/Error' };
const errors = {
  '400': { description: 'invalid input', content: { 'application/json': { schema: error } } },
  '401': { description: 'authentication required', content: { 'application/json': { schema: error } } },
  '404': { description: 'not found', content: { 'application/json': { schema: error } } },
};
const tag = ['MONAI Label (3D Slicer)'];
const query = (name: string, description: string, required = false) => ({
  name,
  in: 'query',
  required,
  description,
  schema: { type: 'string' },
});
const path = (name: string) => ({ name, in: 'path', required: true, schema: { type: 'string' } });
const form = (fields: Record<string, object>) => ({
  required: false,
  content: { 'multipart/form-data': { schema: { type: 'object', properties: fields } } },
});
const params = { type: 'string', description: 'JSON object' };
const file = { type: 'string', format: 'binary' };
const ok = (description: string) => ({ '200': { description }, ...errors });
const training = {
  summary: 'training does not run here (404 with the reason; train with the models CLI)',
  tags: tag,
  responses: errors,
};

export const monaiLabelPaths = {
  '/monailabel/auth': {
    get: {
      summary: 'whether authentication is on: {enabled, client_id, realm}',
      tags: tag,
      security: [],
      responses: ok('auth state'),
    },
  },
  '/monailabel/auth/token': {
    post: {
      summary: 'log in: form username + password (an API token, or the OIDC password grant) -> {access_token, token_type}',
      tags: tag,
      security: [],
      requestBody: {
        content: {
          'application/x-www-form-urlencoded': {
            schema: { type: 'object', properties: { username: { type: 'string' }, password: { type: 'string' } } },
          },
        },
      },
      responses: ok('token'),
    },
  },
  '/monailabel/auth/token/valid': { get: { summary: '200 when the bearer token is valid', tags: tag, responses: ok('valid') } },
  '/monailabel/info': {
    get: {
      summary: 'name, version, labels, models (segmentation / deepgrow), strategies, datastore counts',
      tags: tag,
      responses: ok('info'),
    },
  },
  '/monailabel/train': { get: training, post: training, delete: training },
  '/monailabel/train/{model}': { post: { ...training, parameters: [path('model')] } },
  '/monailabel/datastore': {
    get: {
      summary: 'the local datastore: output=stats (default), all or train',
      tags: tag,
      parameters: [query('output', 'stats | all | train')],
      responses: ok('datastore'),
    },
    put: {
      summary: 'upload a volume (NIfTI .nii/.nii.gz or NRRD) as image ID; refused whole when damaged, 4-D or too large',
      tags: tag,
      parameters: [query('image', 'the id to store it under', false)],
      requestBody: form({ params, file }),
      responses: { ...ok('{image}'), '413': { description: 'too large' } },
    },
  },
  '/monailabel/datastore/image': {
    get: {
      summary: 'an uploaded volume, or a PACS series (image = SeriesInstanceUID) as NRRD in LPS',
      tags: tag,
      parameters: [query('image', 'datastore id or SeriesInstanceUID', true)],
      responses: ok('the volume file'),
    },
    put: {
      summary: 'upload a volume (as PUT /datastore)',
      tags: tag,
      parameters: [query('image', 'the id to store it under')],
      requestBody: form({ params, file }),
      responses: { ...ok('{image}'), '413': { description: 'too large' } },
    },
  },
  '/monailabel/datastore/label': {
    get: {
      summary: 'a saved label',
      tags: tag,
      parameters: [query('label', 'image id', true), query('tag', 'label tag')],
      responses: ok('the label file'),
    },
    put: {
      summary: 'save a label for an uploaded volume (tag final by default)',
      tags: tag,
      parameters: [query('image', 'image id', true), query('tag', 'label tag')],
      requestBody: form({ params, label: file }),
      responses: ok('{image, label, tag}'),
    },
  },
  '/monailabel/session': {
    put: {
      summary: 'upload a volume as a session: {session_id, session_info}',
      tags: tag,
      requestBody: form({ files: file }),
      responses: ok('session'),
    },
  },
  '/monailabel/session/{id}': {
    get: { summary: 'a session', tags: tag, parameters: [path('id')], responses: ok('session') },
    delete: { summary: 'remove a session', tags: tag, parameters: [path('id')], responses: ok('session') },
  },
  '/monailabel/infer/{model}': {
    post: {
      summary:
        'segment image ID (datastore id or SeriesInstanceUID) or session_id: automatic models on the whole volume, promptable ones with ' +
        'params foreground/background ([[i, j, k]]) and roi ([i0, i1, j0, j1, k0, k1]); answers multipart params + label NRRD (uint8, ' +
        'the image grid), or output=image (the NRRD), json (params), dicom_seg (PACS series: also stored as DICOM SEG, UIDs in params)',
      tags: tag,
      parameters: [
        path('model'),
        query('image', 'datastore id or SeriesInstanceUID'),
        query('session_id', 'a session'),
        query('output', 'image | json | all | dicom_seg'),
      ],
      requestBody: form({ params }),
      responses: {
        ...ok('multipart/form-data: params (JSON) + the label file'),
        '422': { description: 'a series no voxel grid holds' },
      },
    },
  },
  '/monailabel/activelearning/{strategy}': {
    post: {
      summary:
        'the next PACS series a model accepts with no LDFSAM SEG yet (first | random): {id, name, PatientID, ...}, {} when none',
      tags: tag,
      parameters: [path('strategy')],
      requestBody: { content: { 'application/json': { schema: { type: 'object', properties: { model: { type: 'string' } } } } } },
      responses: ok('sample'),
    },
  },
} as const;
