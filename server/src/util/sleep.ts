/**
 * Waits `ms`, or less when `signal` aborts (it resolves either way; callers check the signal). The
 * listener goes with the wait: a job's one signal sees every retry of every request it makes.
 */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener('abort', done, { once: true });
  });
}
