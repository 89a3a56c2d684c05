import { createHash } from 'node:crypto';
import { type Context, context, ROOT_CONTEXT, type Span, type SpanContext, SpanStatusCode, TraceFlags, trace } from '@opentelemetry/api';

/*
 * Tracing through @opentelemetry/api only: with no SDK registered every call is a no-op. One run is one trace,
 * across processes and days:
 * - the run's trace id is the caller's trace when the run was created inside a span (its traceparent is stored
 *   with the run's root), else derived from the run id (the first 16 bytes of SHA-256 of the id), so every
 *   process finds the same one with nothing stored;
 * - each child stores the traceparent of the step span that spawned it, so a step span's parent is its parent
 *   node's span; the root's step span, with no stored parent, has the run's derived span id as its parent (the
 *   next 8 bytes of that hash; no process exports a span with that id).
 * Traceparents are written and read here (W3C `00-<trace>-<span>-<flags>`), so rlm needs no propagator registered.
 */
const tracer = trace.getTracer('rlm');

const derived = new Map<string, { traceId: string; spanId: string }>();

function derive(runId: string): { traceId: string; spanId: string } {
  let ids = derived.get(runId);
  if (!ids) {
    const hex = createHash('sha256').update(runId).digest('hex');
    // All-zero ids are invalid; a hash gives one with probability 2^-128.
    ids = { traceId: hex.slice(0, 32), spanId: hex.slice(32, 48) };
    if (derived.size >= 1_024) derived.clear();
    derived.set(runId, ids);
  }
  return ids;
}

/** The trace id of a run created outside any span: derived from its id. */
export function runTraceId(runId: string): string {
  return derive(runId).traceId;
}

/** The span id a root step's span names as its parent: derived from the run id. */
export function runSpanId(runId: string): string {
  return derive(runId).spanId;
}

const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;

function format(span: SpanContext): string {
  return `00-${span.traceId}-${span.spanId}-${(span.traceFlags & 0xff).toString(16).padStart(2, '0')}`;
}

/** The W3C traceparent of the span active in a context, or null when there is none (or no SDK). */
export function traceparentOf(ctx: Context): string | null {
  const span = trace.getSpanContext(ctx);
  return span && trace.isSpanContextValid(span) ? format(span) : null;
}

/** The traceparent a span's children store. */
export function traceparentOfSpan(span: Span): string {
  return format(span.spanContext());
}

/** The trace id a stored traceparent names, or the run's derived one. */
export function traceIdOf(traceparent: string | null, runId: string): string {
  return traceparent?.slice(3, 35) ?? runTraceId(runId);
}

/** The parent context of a step span: the stored traceparent, or the run's derived trace for the root. */
export function contextFromTraceparent(traceparent: string | null, runId: string): Context {
  const match = traceparent ? TRACEPARENT.exec(traceparent) : null;
  const parent: SpanContext = match
    ? { traceId: match[1] as string, spanId: match[2] as string, traceFlags: Number.parseInt(match[3] as string, 16), isRemote: true }
    : { traceId: runTraceId(runId), spanId: runSpanId(runId), traceFlags: TraceFlags.SAMPLED, isRemote: true };
  return trace.setSpanContext(ROOT_CONTEXT, parent);
}

/** Whether an OpenTelemetry SDK is registered: without one, rlm skips span work on the hot path. */
export function tracingEnabled(): boolean {
  const provider = trace.getTracerProvider() as { getDelegate?: () => object };
  const delegate = provider.getDelegate?.() ?? provider;
  return delegate.constructor.name !== 'NoopTracerProvider';
}

export function startSpan(name: string, parent: Context, attributes: Record<string, string | number>): Span {
  return tracer.startSpan(name, { attributes }, parent);
}

export function endSpan(span: Span, error?: unknown): void {
  if (error !== undefined) {
    span.recordException(error instanceof Error ? error : String(error));
    span.setStatus({ code: SpanStatusCode.ERROR });
  }
  span.end();
}

export { trace, context };
