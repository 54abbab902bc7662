/**
 * How the long-running commands (`worker`, `serve`, `start`) stop. The first SIGTERM or SIGINT starts
 * an orderly stop: no more jobs, the running ones handed back to the queue, connections closed. It
 * is bounded by LDFSAM_STOP_TIMEOUT_MS whatever Redis and the PACS do (a stop must not wait for
 * either to come back: supervisors escalate to SIGKILL, and a worker that ignores a stop blocks a
 * rolling restart); a second signal exits at once. Either way, one log line and the exit code say how
 * the process stopped (STOP_EXIT). A job that was not handed back is not lost: its queue takes it
 * back (the Redis queue's stalled-job check, the embedded queue at its next start).
 */
import { constants } from 'node:os';
import type { StopReport } from '../jobs/queue.js';
import type { Logger } from '../log.js';

/** Exit codes; a second signal exits with 128 + its number (130 SIGINT, 143 SIGTERM), as a shell reports it. */
export const STOP_EXIT = {
  /** Stopped; no job was interrupted. */
  clean: 0,
  /** Stopped; running jobs were interrupted and handed back to the queue (or left to its recovery). */
  handedBack: 75, // EX_TEMPFAIL: the work runs again elsewhere
  /** The bound ran out before the orderly stop ended; what was running is left to the queue's recovery. */
  forced: 124, // as timeout(1)
  /** The orderly stop itself failed. */
  failed: 1,
} as const;

/** The --help text of the commands that stop this way. */
export const STOP_HELP = `
Stopping: SIGTERM or SIGINT (Ctrl-C) stops taking jobs, interrupts the running ones after their
current slice batch and hands them back to the queue (with Redis unreachable they are left to
BullMQ's stalled-job recovery, which re-runs them once Redis is back), then exits, within
LDFSAM_STOP_TIMEOUT_MS (--stop-timeout, default 10000 ms) whatever the state of Redis and the PACS.
A second signal exits at once. Exit code: ${STOP_EXIT.clean} stopped cleanly (no job interrupted), ${STOP_EXIT.handedBack} jobs handed
back, ${STOP_EXIT.forced} forced at the timeout, 130/143 a second SIGINT/SIGTERM; one log line says the same.`;

export interface StopPlan {
  log: Logger;
  timeoutMs: number;
  /** The orderly stop; `why` names the signal. */
  stop(why: string): Promise<StopReport>;
  /** Last resort before exiting at the bound or on a second signal (e.g. SIGKILL to children). */
  kill?(): void;
  /** Something that ends the process without a signal (e.g. its PACS exited); it names the reason. */
  ended?: Promise<string>;
}

/** Waits for SIGTERM/SIGINT (or `ended`), stops as planned and exits the process; never returns. */
export async function runUntilStopped(plan: StopPlan): Promise<never> {
  const why = await firstOf(['SIGINT', 'SIGTERM'], plan.ended);
  const started = Date.now();
  const seconds = () => Number(((Date.now() - started) / 1000).toFixed(2));
  const exit = (code: number, level: 'info' | 'warn' | 'error', message: string, fields: Record<string, unknown> = {}): never => {
    plan.log[level](message, { why, seconds: seconds(), exitCode: code, ...fields });
    process.exit(code);
  };
  const interrupted = 'running jobs are left to the queue, which takes them back (Redis: once their lock expires)';
  const onSecond = (signal: NodeJS.Signals) => {
    plan.kill?.();
    exit(128 + constants.signals[signal], 'warn', `stopped at once by a second signal (${signal}); ${interrupted}`);
  };
  process.once('SIGINT', onSecond);
  process.once('SIGTERM', onSecond);
  setTimeout(() => {
    plan.kill?.();
    exit(STOP_EXIT.forced, 'warn', `stop forced after ${plan.timeoutMs / 1000} s (LDFSAM_STOP_TIMEOUT_MS); ${interrupted}`);
  }, plan.timeoutMs);
  plan.log.info('stopping', { why, timeoutMs: plan.timeoutMs });
  let report: StopReport;
  try {
    report = await plan.stop(why);
  } catch (err) {
    plan.kill?.();
    return exit(STOP_EXIT.failed, 'error', 'stop failed', { message: (err as Error).message });
  }
  if (report.handedBack.length + report.left.length === 0) return exit(STOP_EXIT.clean, 'info', 'stopped cleanly');
  const what = [
    report.handedBack.length ? `${report.handedBack.length} job(s) handed back to the queue` : '',
    report.left.length ? `${report.left.length} job(s) left to the queue's stalled-job recovery (Redis unreachable)` : '',
  ].filter(Boolean);
  return exit(STOP_EXIT.handedBack, 'warn', `stopped; ${what.join(', ')}`, { ...report });
}

function firstOf(signals: NodeJS.Signals[], ended?: Promise<string>): Promise<string> {
  return new Promise((resolve) => {
    const handlers = signals.map((s) => {
      const h = () => {
        signals.forEach((t, i) => process.off(t, handlers[i]!));
        resolve(s);
      };
      process.once(s, h);
      return h;
    });
    void ended?.then((reason) => {
      signals.forEach((t, i) => process.off(t, handlers[i]!));
      resolve(reason);
    });
  });
}
