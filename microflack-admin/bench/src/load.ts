// One fixed-concurrency, fixed-duration load run with autocannon, reduced to the figures we print.
import autocannon from 'autocannon';

export interface LoadSpec {
  url: string;
  method?: 'GET' | 'POST';
  headers?: Record<string, string>;
  body?: string;
  connections: number;
  durationSeconds: number;
  /** Headers that change from request to request (e.g. rotating credentials). */
  headersFor?: () => Record<string, string>;
  /** The status a good answer has (default any 2xx): 304 for the conditional GET. */
  okStatus?: number;
}

export interface LoadResult {
  rps: number;
  p50Ms: number;
  p99Ms: number;
  requests: number;
  errors: number;
  bytesPerResponse: number;
  /** Count of each non-2xx status seen, to tell throttling from failure. */
  non2xxStatuses: Record<string, number>;
}

export async function runLoad(spec: LoadSpec): Promise<LoadResult> {
  const result = await autocannon({
    url: spec.url,
    method: spec.method ?? 'GET',
    headers: { 'content-type': 'application/json', ...spec.headers },
    body: spec.body,
    requests: spec.headersFor
      ? [
          {
            setupRequest: (req) => ({
              ...req,
              headers: { ...req.headers, ...spec.headersFor?.() },
            }),
          },
        ]
      : undefined,
    connections: spec.connections,
    duration: spec.durationSeconds,
    timeout: 10,
  });
  const answered = result['2xx'] + result.non2xx;
  const statuses = (result.statusCodeStats ?? {}) as Record<string, { count: number }>;
  const good =
    spec.okStatus === undefined ? result['2xx'] : (statuses[String(spec.okStatus)]?.count ?? 0);
  return {
    // Good answers only: a 503 given in a millisecond is not throughput.
    rps: Math.round((good / Math.max(0.001, result.duration)) * 10) / 10,
    p50Ms: result.latency.p50,
    p99Ms: result.latency.p99,
    requests: result.requests.total,
    // Anything but a good answer is an error here: a rejected request is not throughput.
    errors: result.errors + result.timeouts + (answered - good),
    bytesPerResponse: answered > 0 ? Math.round(result.throughput.total / answered) : 0,
    non2xxStatuses: Object.fromEntries(
      Object.entries(result.statusCodeStats ?? {})
        .filter(([code]) =>
          spec.okStatus === undefined ? !code.startsWith('2') : code !== String(spec.okStatus),
        )
        .map(([code, v]) => [code, (v as { count: number }).count]),
    ),
  };
}
