import { DiagLogLevel, diag, trace } from '@opentelemetry/api';
import { ConfigError, UsageError } from '../engine/errors.js';
import type { Logger } from './logger.js';

/** A registered tracer provider exporting over OTLP/HTTP; `shutdown` flushes what is left. */
export interface OtlpExport {
  readonly url: string;
  shutdown(): Promise<void>;
}

const SDK_PACKAGES = '@opentelemetry/sdk-trace-base@2 @opentelemetry/exporter-trace-otlp-http@0.223 @opentelemetry/resources@2';

/** The traces endpoint of a collector: a URL with no path gets OTLP's `/v1/traces`. */
export function tracesUrl(text: string): string {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new UsageError(`Expected --otlp to be an http(s) URL of an OTLP collector, such as http://127.0.0.1:4318; got \`${text}\`.`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new UsageError(`Expected --otlp to be an http(s) URL (OTLP over HTTP); got \`${text}\`.`);
  if (url.pathname === '/' || url.pathname === '') url.pathname = '/v1/traces';
  return url.toString();
}

/**
 * Registers an OpenTelemetry SDK that exports every span over OTLP/HTTP (JSON) to `url`. The SDK packages are
 * optional dependencies of rlm, loaded only here: without `--otlp` nothing of them is imported.
 */
export async function startOtlp(text: string, logger: Logger, serviceName: string): Promise<OtlpExport> {
  const url = tracesUrl(text);
  let sdk: [typeof import('@opentelemetry/sdk-trace-base'), typeof import('@opentelemetry/exporter-trace-otlp-http'), typeof import('@opentelemetry/resources')];
  try {
    sdk = await Promise.all([import('@opentelemetry/sdk-trace-base'), import('@opentelemetry/exporter-trace-otlp-http'), import('@opentelemetry/resources')]);
  } catch (error) {
    throw new ConfigError(
      `--otlp needs the OpenTelemetry SDK packages, optional dependencies of rlm that are not installed here (${(error as Error).message}); install them with \`npm install ${SDK_PACKAGES}\`.`,
    );
  }
  const [base, otlp, resources] = sdk;
  diag.setLogger(
    {
      error: (message, ...args) => logger.warn({ args }, `OpenTelemetry: ${message}`),
      warn: (message, ...args) => logger.warn({ args }, `OpenTelemetry: ${message}`),
      info: () => undefined,
      debug: () => undefined,
      verbose: () => undefined,
    },
    DiagLogLevel.WARN,
  );
  const provider = new base.BasicTracerProvider({
    resource: resources.resourceFromAttributes({ 'service.name': process.env.OTEL_SERVICE_NAME ?? serviceName }),
    spanProcessors: [new base.BatchSpanProcessor(new otlp.OTLPTraceExporter({ url, timeoutMillis: 5_000 }), { exportTimeoutMillis: 5_000 })],
  });
  if (!trace.setGlobalTracerProvider(provider)) {
    throw new ConfigError('--otlp: another OpenTelemetry tracer provider is registered in this process already; drop --otlp and let it export the spans.');
  }
  return {
    url,
    async shutdown() {
      // A collector that does not answer must not hold the exit up for long.
      await Promise.race([provider.shutdown(), new Promise((resolve) => setTimeout(resolve, 6_000).unref())]);
    },
  };
}
