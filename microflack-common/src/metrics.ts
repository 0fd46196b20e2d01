// Prometheus metrics for the process: requests and latency per route and status, plus counters.
import type { RequestHandler } from 'express';
import client from 'prom-client';

export const registry = new client.Registry();
client.collectDefaultMetrics({ register: registry });

const requests = new client.Counter({
  name: 'http_requests_total',
  help: 'HTTP requests answered, by method, route and status',
  labelNames: ['method', 'route', 'status'] as const,
  registers: [registry],
});

const latency = new client.Histogram({
  name: 'http_request_duration_seconds',
  help: 'HTTP request latency, by method, route and status',
  labelNames: ['method', 'route', 'status'] as const,
  buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
  registers: [registry],
});

export const eventFailures = new client.Counter({
  name: 'events_emit_failures_total',
  help: 'updated_model events that could not be published to Redis',
  registers: [registry],
});

export function counter(name: string, help: string, labelNames: string[] = []): client.Counter {
  const existing = registry.getSingleMetric(name);
  if (existing) return existing as client.Counter;
  return new client.Counter({ name, help, labelNames, registers: [registry] });
}

/** The matched route pattern, so that ids do not explode the label space. */
export function routeOf(req: Parameters<RequestHandler>[0]): string {
  const route = (req as { route?: { path?: unknown } }).route?.path;
  return typeof route === 'string' ? req.baseUrl + route : 'unmatched';
}

export function observeRequest(
  method: string,
  route: string,
  status: number,
  seconds: number,
): void {
  const labels = { method, route, status: String(status) };
  requests.inc(labels);
  latency.observe(labels, seconds);
}

export const metricsHandler: RequestHandler = async (_req, res) => {
  res.set('Content-Type', registry.contentType);
  res.send(await registry.metrics());
};
