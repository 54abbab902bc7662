/** The panel says every server error code in plain words (with the code for support), none falls back to the generic line. */
import { describe, expect, it } from 'vitest';
import { describeError } from '../../extension/src/messages.js';
import { ERROR_CODES } from '../../server/src/errors.js';

describe('panel error messages', () => {
  it.each(Object.keys(ERROR_CODES))('%s has words of its own', (code) => {
    expect(describeError(code)).not.toBe(describeError('NO_SUCH_CODE'));
  });

  it('the network failure the panel detects itself has words too', () => {
    expect(describeError('NETWORK')).not.toBe(describeError('NO_SUCH_CODE'));
  });
});
