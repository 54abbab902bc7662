/** A real HTTP proxy in front of the test PACS that can inject faults (a reset connection, a status, or a delay). */
import { createServer, request, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export type Fault = (method: string, url: string, n: number) => 'reset' | number | { delayMs: number } | undefined;

export async function startFaultProxy(
  dicomwebUrl: string,
  fault: Fault,
): Promise<{ dicomwebUrl: string; close(): Promise<void>; closedEarly(): string[] }> {
  const target = new URL(dicomwebUrl);
  let n = 0;
  const early: string[] = [];
  const server: Server = createServer((req, res) => {
    // The requests whose client went before the answer was complete (an aborted fetch).
    res.on('close', () => !res.writableEnded && early.push(req.url ?? ''));
    const verdict = fault(req.method ?? 'GET', req.url ?? '', n++);
    if (verdict === 'reset') return void req.socket.destroy();
    if (typeof verdict === 'number') {
      res.writeHead(verdict, { 'content-type': 'text/plain' });
      return void res.end('injected fault');
    }
    const delay = typeof verdict === 'object' ? verdict.delayMs : 0;
    setTimeout(() => forward(req, res), delay);
  });
  const forward = (req: IncomingMessage, res: ServerResponse) => {
    const upstream = request(
      // The PACS's own name as Host: the embedded Orthanc refuses any other (DNS-rebinding guard).
      {
        host: target.hostname,
        port: target.port,
        path: req.url,
        method: req.method,
        headers: { ...req.headers, host: target.host },
      },
      (up) => {
        res.writeHead(up.statusCode ?? 502, up.headers);
        up.pipe(res);
      },
    );
    req.pipe(upstream);
  };
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    dicomwebUrl: `http://127.0.0.1:${(server.address() as AddressInfo).port}${target.pathname}`,
    close: () => new Promise((r) => server.close(() => r())),
    closedEarly: () => [...early],
  };
}
