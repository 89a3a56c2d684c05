import { type Context, context, propagation, type Span, SpanStatusCode, trace } from '@opentelemetry/api';

/*
 * Tracing through @opentelemetry/api only: with no SDK registered every call is a no-op. Each node stores its
 * parent's `traceparent`, so one run is one trace across processes and days.
 */
const tracer = trace.getTracer('rlm');

/** The W3C traceparent of a context, or null without an active SDK. */
export function traceparentOf(ctx: Context): string | null {
  const carrier: Record<string, string> = {};
  propagation.inject(ctx, carrier);
  return carrier.traceparent ?? null;
}

/** The context a stored traceparent describes (the root context when there is none). */
export function contextFromTraceparent(traceparent: string | null): Context {
  if (!traceparent) return context.active();
  return propagation.extract(context.active(), { traceparent });
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
