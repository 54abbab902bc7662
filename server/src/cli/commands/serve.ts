/** `ldfsam serve`, `ldfsam jobs`, `ldfsam batch`: the API server and its command-line clients. */
import type { Command } from 'commander';
import { loadConfig } from '../../config.js';
import { LdfsamError } from '../../errors.js';
import { startServer } from '../../http/server.js';
import { createLogger } from '../../log.js';
import { action, configFrom, printJson, STOP_TIMEOUT_OPTION, table, withPacsOptions, type CommonFlags } from '../context.js';
import { runUntilStopped, STOP_HELP } from '../stop.js';

export function registerServe(program: Command): void {
  withPacsOptions(program.command('serve'))
    .description(
      'run the HTTP API (jobs, batches, models); with the embedded job queue it runs the inference too, ' +
        'with the Redis queue (LDFSAM_QUEUE) `ldfsam worker` processes do (or this one, with --with-worker)',
    )
    .option('--host <address>', 'address to bind (env LDFSAM_HOST, default 127.0.0.1; others require authentication)')
    .option('--port <port>', 'port (env LDFSAM_PORT, default 5080; 0 = any free port)')
    .option(
      '--allowed-hosts <names>',
      'comma-separated host names (name or name:port) clients reach this server by, besides localhost, 127.0.0.1 and [::1] (env LDFSAM_ALLOWED_HOSTS)',
    )
    .option('--data-dir <dir>', 'data folder for the job store (env LDFSAM_DATA_DIR)')
    .option('--queue <url>', 'sqlite (embedded, default) or redis://host:port/db (env LDFSAM_QUEUE)')
    .option('--with-worker', 'with the Redis queue: also run an inference worker in this process')
    .option('--provider <provider>', 'onnxruntime execution provider: auto, cpu or cuda (env LDFSAM_PROVIDER, default auto)')
    .option(...STOP_TIMEOUT_OPTION)
    .addHelpText('after', STOP_HELP)
    .action(
      action(async (flags: ServeFlags) => {
        const config = configFrom({ ...flags }, { provider: flags.provider });
        const resolved = {
          ...config,
          ...(flags.host ? { host: flags.host } : {}),
          ...(flags.port !== undefined ? { port: Number(flags.port) } : {}),
          ...(flags.queue ? { queue: loadConfig({ flags: { queue: flags.queue } }).queue } : {}),
          ...(flags.allowedHosts !== undefined
            ? { allowedHosts: loadConfig({ flags: { allowedHosts: flags.allowedHosts } }).allowedHosts }
            : {}),
        };
        const log = createLogger({ service: 'ldfsam' });
        const server = await startServer(resolved, log, { withWorker: flags.withWorker });
        const inference =
          resolved.queue === 'sqlite'
            ? 'embedded queue'
            : `Redis queue, ${flags.withWorker ? 'a worker here too' : 'inference in ldfsam worker'}`;
        process.stdout.write(`LDFSAM API at ${server.url}/api (PACS ${config.dicomwebUrl}; ${inference}); Ctrl-C stops\n`);
        process.stdout.write(
          'missing' in server.viewer ? `Viewer not served: ${server.viewer.missing}\n` : `Viewer at ${server.viewer.url}\n`,
        );
        await runUntilStopped({ log, timeoutMs: resolved.stopTimeoutMs, stop: (why) => server.close(why) });
      }),
    );

  program
    .command('jobs')
    .description('list recent jobs of a running server')
    .option('--server <url>', 'server URL (env LDFSAM_SERVER_URL, default http://127.0.0.1:5080)')
    .option('--limit <n>', 'how many', '20')
    .option('--watch [seconds]', 'redraw every few seconds (default 2) with the queue counts and workers; Ctrl-C stops')
    .option('--json', 'print JSON')
    .action(
      action(async (flags: { server?: string; limit: string; watch?: string | boolean; json?: boolean }) => {
        const path = `/api/jobs?limit=${Number(flags.limit) || 20}`;
        if (!flags.watch) {
          const { jobs } = (await api(flags.server, path)) as { jobs: JobView[] };
          if (flags.json) return printJson({ jobs });
          process.stdout.write(`${jobsTable(jobs)}\n`);
          return;
        }
        const every = (typeof flags.watch === 'string' ? Number(flags.watch) : 2) || 2;
        let stopped = false;
        process.once('SIGINT', () => (stopped = true));
        while (!stopped) {
          const [queue, { jobs }] = (await Promise.all([api(flags.server, '/api/queue'), api(flags.server, path)])) as [
            QueueView,
            { jobs: JobView[] },
          ];
          const frame = flags.json ? JSON.stringify({ queue, jobs }) : `${queueText(queue)}\n\n${jobsTable(jobs)}`;
          // On a terminal the view is redrawn in place; piped, frames follow each other.
          process.stdout.write(process.stdout.isTTY && !flags.json ? `\x1b[H\x1b[2J${frame}\n` : `${frame}\n\n`);
          for (let t = 0; t < every * 10 && !stopped; t++) await new Promise((r) => setTimeout(r, 100));
        }
      }),
    );

  withPacsOptions(program.command('batch'))
    .description(
      'submit a batch (studies or a QIDO-RS filter) to a running server, or run it here with --local, and follow it to the end',
    )
    .option('--studies <uids...>', 'Study Instance UIDs')
    .option(
      '--query <key=value...>',
      'QIDO-RS filter: ModalitiesInStudy, StudyDate (YYYYMMDD or range), PatientID, AccessionNumber',
    )
    .option('--model <name>', 'registered model (default: per modality)')
    .option('--force', 're-run series that already have a result')
    .option('--output-format <seg|rtstruct|both>', 'results to write: DICOM SEG (default), RT Structure Set, or both')
    .option('--server <url>', 'server URL (env LDFSAM_SERVER_URL, default http://127.0.0.1:5080)')
    .option('--local', 'run the batch in this process (job store in the data folder), no server needed')
    .option('--data-dir <dir>', 'with --local: data folder (env LDFSAM_DATA_DIR)')
    .option('--json', 'print the final batch as JSON')
    .action(
      action(async (flags: BatchFlags) => {
        if (!flags.studies === !flags.query) throw new LdfsamError('INVALID_INPUT', 'give either --studies or --query');
        let local: Awaited<ReturnType<typeof startServer>> | undefined;
        if (flags.local) {
          const config = configFrom(flags);
          // "In this process": the embedded queue, whatever LDFSAM_QUEUE says.
          local = await startServer(
            { ...config, host: '127.0.0.1', port: 0, queue: 'sqlite' },
            createLogger({ service: 'ldfsam' }, () => undefined),
          );
        }
        try {
          await followBatch({ ...flags, server: local?.url ?? flags.server });
        } finally {
          await local?.close();
        }
      }),
    );
}

interface ServeFlags extends CommonFlags {
  host?: string;
  allowedHosts?: string;
  port?: string;
  queue?: string;
  withWorker?: boolean;
  provider?: string;
}

interface BatchFlags extends CommonFlags {
  studies?: string[];
  query?: string[];
  model?: string;
  force?: boolean;
  outputFormat?: string;
  server?: string;
  local?: boolean;
}

async function followBatch(flags: BatchFlags): Promise<void> {
  const query = flags.query ? Object.fromEntries(flags.query.map((kv) => kv.split('=', 2) as [string, string])) : undefined;
  const body = {
    ...(flags.studies ? { studies: flags.studies } : { query }),
    ...(flags.model ? { model: flags.model } : {}),
    ...(flags.force ? { force: true } : {}),
    ...(flags.outputFormat ? { outputs: flags.outputFormat } : {}),
  };
  const accepted = (await api(flags.server, '/api/batches', { method: 'POST', body })) as {
    batchId: string;
    jobs: number;
    skippedAlreadyDone: number;
  };
  if (!flags.json)
    process.stdout.write(
      `batch ${accepted.batchId}: ${accepted.jobs} job(s), ${accepted.skippedAlreadyDone} series already done\n`,
    );
  let batch: BatchView;
  let drawn = 0;
  const seen = new Map<string, string>();
  for (;;) {
    batch = (await api(flags.server, `/api/batches/${accepted.batchId}`)) as BatchView;
    if (!flags.json && process.stdout.isTTY) {
      // One live line per job, redrawn in place, and the counts.
      const lines = batch.jobs.map(
        (j) => `${j.request.seriesInstanceUID.slice(-24).padStart(24)}  ${stateText(j).padEnd(13)} ${progressText(j)}`,
      );
      lines.push(
        Object.entries(batch.counts)
          .map(([k, v]) => `${k} ${v}`)
          .join('  '),
      );
      process.stdout.write(`${drawn ? `\x1b[${drawn}A` : ''}${lines.map((l) => `\x1b[2K${l}`).join('\n')}\n`);
      drawn = lines.length;
    } else if (!flags.json) {
      for (const j of batch.jobs) {
        if (seen.get(j.id) !== j.state) process.stdout.write(`${j.request.seriesInstanceUID}: ${stateText(j)}\n`);
        seen.set(j.id, j.state);
      }
    }
    if (batch.done) break;
    await new Promise((r) => setTimeout(r, 500));
  }
  if (flags.json) return printJson(batch);
  const rows = [['SERIES', 'STATE', 'FOUND', 'FRAMES', 'SECONDS', 'SEG SERIES / ERROR']];
  for (const j of batch.jobs) {
    const seconds = j.result ? (Object.values(j.result.timingsMs).reduce((a, b) => a + b, 0) / 1000).toFixed(1) : '';
    rows.push([
      j.request.seriesInstanceUID,
      stateText(j),
      j.result ? `${j.result.slicesFound ?? (j.result.frames > 0 ? '?' : 0)}/${j.result.slices}` : '',
      String(j.result?.frames ?? ''),
      seconds,
      j.error ? `[${j.error.code}] ${j.error.message}` : (j.result?.segSeriesInstanceUID ?? j.result?.message ?? ''),
    ]);
  }
  // Nothing found is a result, not a failure: counted apart from the failed jobs (and within succeeded).
  process.stdout.write(
    `\n${table(rows)}\n${Object.entries(batch.counts)
      .map(([k, v]) => `${k}: ${v}`)
      .join(', ')}; nothing found: ${batch.nothingFound ?? 0}\n`,
  );
  if ((batch.counts.failed ?? 0) > 0) process.exitCode = 1;
}

interface JobView {
  id: string;
  state: string;
  request: { seriesInstanceUID: string; model: string };
  progress: { stage: string; done: number; total: number } | null;
  result: {
    status: string;
    segSeriesInstanceUID: string | null;
    frames: number;
    slices: number;
    slicesFound?: number;
    message?: string;
    timingsMs: Record<string, number>;
  } | null;
  error: { code: string; message: string } | null;
}
interface BatchView {
  counts: Record<string, number>;
  nothingFound?: number;
  done: boolean;
  jobs: JobView[];
}

interface QueueView {
  backend: string;
  counts: Record<string, number>;
  workers: { id: string; provider: string; device: number | null; concurrency: number; active: string[]; processed: number }[];
  pacs: { maxJobs: number; inUse: number };
}

function jobsTable(jobs: JobView[]): string {
  const rows = [['JOB', 'STATE', 'PROGRESS', 'SERIES', 'MODEL', 'RESULT']];
  for (const j of jobs)
    rows.push([
      j.id,
      stateText(j),
      progressText(j),
      j.request.seriesInstanceUID,
      j.request.model,
      j.error ? `[${j.error.code}] ${j.error.message}` : (j.result?.segSeriesInstanceUID ?? j.result?.message ?? ''),
    ]);
  return table(rows);
}

function queueText(q: QueueView): string {
  const counts = Object.entries(q.counts)
    .map(([k, v]) => `${k} ${v}`)
    .join('  ');
  const pacs = `PACS jobs ${q.pacs.inUse}${q.pacs.maxJobs ? `/${q.pacs.maxJobs}` : ''}`;
  const rows = [['WORKER', 'PROVIDER', 'DEVICE', 'CONCURRENCY', 'ACTIVE', 'PROCESSED']];
  for (const w of q.workers)
    rows.push([
      w.id,
      w.provider,
      w.device === null ? '' : String(w.device),
      String(w.concurrency),
      String(w.active.length),
      String(w.processed),
    ]);
  return `queue (${q.backend}): ${counts}  ${pacs}  [${new Date().toISOString().slice(11, 19)}]\n${table(rows)}`;
}

/** The state, with "nothing found" for a succeeded job that stored nothing because nothing was found. */
function stateText(j: JobView): string {
  return j.state === 'succeeded' && (j.result?.status === 'not-found' || j.result?.status === 'empty')
    ? 'nothing found'
    : j.state;
}

function progressText(j: JobView): string {
  if (!j.progress) return '';
  const width = 20;
  const filled = j.progress.total ? Math.round((j.progress.done / j.progress.total) * width) : 0;
  return `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${j.progress.done}/${j.progress.total} ${j.progress.stage}`;
}

/** A call to a running server; errors come back as the server's coded errors. */
async function api(server: string | undefined, path: string, init: { method?: string; body?: unknown } = {}): Promise<unknown> {
  const base = (server ?? process.env.LDFSAM_SERVER_URL ?? 'http://127.0.0.1:5080').replace(/\/+$/, '');
  const token = process.env.LDFSAM_API_TOKEN;
  let res: Response;
  try {
    res = await fetch(`${base}${path}`, {
      method: init.method ?? 'GET',
      headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
      body: init.body === undefined ? undefined : JSON.stringify(init.body),
    });
  } catch (err) {
    throw new LdfsamError(
      'PACS_UNAVAILABLE',
      `cannot reach the LDFSAM server at ${base}: ${(err as { cause?: { code?: string } }).cause?.code ?? (err as Error).message} (start it with ldfsam serve)`,
    );
  }
  const body = (await res.json().catch(() => ({}))) as { error?: { code: string; message: string } };
  if (!res.ok)
    throw new LdfsamError((body.error?.code as 'INTERNAL') ?? 'INTERNAL', body.error?.message ?? `server answered ${res.status}`);
  return body;
}
