package io.vhostd.master.metrics;

import io.micrometer.core.instrument.binder.MeterBinder;
import io.micrometer.core.instrument.binder.jvm.ClassLoaderMetrics;
import io.micrometer.core.instrument.binder.jvm.JvmGcMetrics;
import io.micrometer.core.instrument.binder.jvm.JvmMemoryMetrics;
import io.micrometer.core.instrument.binder.jvm.JvmThreadMetrics;
import io.micrometer.core.instrument.binder.system.FileDescriptorMetrics;
import io.micrometer.core.instrument.binder.system.ProcessorMetrics;
import io.micrometer.core.instrument.binder.system.UptimeMetrics;
import io.micrometer.prometheusmetrics.PrometheusConfig;
import io.micrometer.prometheusmetrics.PrometheusMeterRegistry;
import io.vertx.core.Future;
import io.vertx.core.Vertx;
import io.vertx.core.http.HttpMethod;
import io.vertx.core.http.HttpServer;
import io.vertx.core.http.HttpServerRequest;
import java.util.List;
import java.util.Objects;

/**
 * The Prometheus endpoint: {@code GET /metrics} (and {@code HEAD}) over plain HTTP on the address of the
 * configuration key {@code prometheus.listen}, answered from a {@link PrometheusMeterRegistry} that holds the per-bdev
 * counters, gauges and latency histograms of {@link BdevMetrics} and the master's JVM and process metrics ({@code
 * jvm_*}, {@code process_*}, {@code system_*}). Metric names: docs/observability.md.
 *
 * <p>Content: the Prometheus text format 0.0.4, or OpenMetrics 1.0 when the request's {@code Accept} asks for {@code
 * application/openmetrics-text}. Other paths answer 404, other methods 405. Each scrape runs on a Vert.x worker thread
 * (it reads the stats regions and formats text; the event loop only moves bytes). The endpoint has no authentication:
 * bind it to a loopback or management address.
 */
public final class MetricsServer implements AutoCloseable {
    /** The only path served. */
    public static final String PATH = "/metrics";

    /** The Prometheus text format's content type (prometheus-metrics' {@code PrometheusTextFormatWriter}). */
    public static final String CONTENT_TYPE_TEXT = "text/plain; version=0.0.4; charset=utf-8";

    /** OpenMetrics 1.0's content type ({@code OpenMetricsTextFormatWriter}). */
    public static final String CONTENT_TYPE_OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8";

    private static final System.Logger LOG = System.getLogger(MetricsServer.class.getName());

    private final Vertx vertx;
    private final PrometheusMeterRegistry registry;
    private final BdevMetrics bdevMetrics;
    private final JvmGcMetrics gcMetrics = new JvmGcMetrics();
    private HttpServer server;

    /**
     * A registry with the bdev metrics of {@code source} and the JVM/process metrics; serves nothing until {@link
     * #start}.
     */
    public MetricsServer(Vertx vertx, StatsSource source) {
        this.vertx = Objects.requireNonNull(vertx, "vertx");
        this.registry = new PrometheusMeterRegistry(PrometheusConfig.DEFAULT);
        this.bdevMetrics = new BdevMetrics(registry, Objects.requireNonNull(source, "source"));
        registry.getPrometheusRegistry().register(bdevMetrics);
        for (MeterBinder binder : List.of(
                new JvmMemoryMetrics(),
                gcMetrics,
                new JvmThreadMetrics(),
                new ClassLoaderMetrics(),
                new ProcessorMetrics(),
                new UptimeMetrics(),
                new FileDescriptorMetrics())) {
            binder.bindTo(registry);
        }
    }

    /**
     * Listens on {@code host:port}.
     *
     * @param port 0 for any free port ({@link #port()} tells which)
     * @return completes when the socket listens; fails with Vert.x's bind error
     */
    public Future<MetricsServer> start(String host, int port) {
        server = vertx.createHttpServer().requestHandler(this::handle);
        return server.listen(port, host).map(s -> {
            LOG.log(
                    System.Logger.Level.INFO,
                    "Prometheus endpoint: http://" + hostText(host) + ":" + s.actualPort() + PATH);
            return this;
        });
    }

    /** The port listened on (after {@link #start} completed). */
    public int port() {
        return server.actualPort();
    }

    /** The registry, for meters of other parts of the master (every error is counted: STYLE.md rule 7). */
    public PrometheusMeterRegistry registry() {
        return registry;
    }

    /** One scrape in the given format ({@code null}: the Prometheus text format), as the endpoint answers it. */
    public String scrape(String acceptHeader) {
        bdevMetrics.refresh();
        return registry.scrape(contentType(acceptHeader));
    }

    private void handle(HttpServerRequest req) {
        if (!PATH.equals(req.path())) {
            req.response().setStatusCode(404).end("only " + PATH + " is served\n");
            return;
        }
        if (req.method() != HttpMethod.GET && req.method() != HttpMethod.HEAD) {
            req.response().setStatusCode(405).putHeader("Allow", "GET, HEAD").end();
            return;
        }
        String accept = req.getHeader("Accept");
        vertx.executeBlocking(() -> scrape(accept)).onComplete(ar -> {
            if (ar.succeeded()) {
                req.response().putHeader("Content-Type", contentType(accept)).end(ar.result());
            } else {
                LOG.log(System.Logger.Level.WARNING, "scrape failed", ar.cause());
                req.response().setStatusCode(500).end("scrape failed: " + ar.cause() + "\n");
            }
        });
    }

    static String contentType(String accept) {
        return accept != null && accept.contains("application/openmetrics-text")
                ? CONTENT_TYPE_OPENMETRICS
                : CONTENT_TYPE_TEXT;
    }

    private static String hostText(String host) {
        return host.indexOf(':') >= 0 ? "[" + host + "]" : host;
    }

    /** Stops listening and releases the JVM metrics' listeners; waits for the server to close. */
    @Override
    public void close() {
        if (server != null) {
            try {
                server.close().await();
            } catch (Exception e) {
                LOG.log(System.Logger.Level.DEBUG, "metrics server close: " + e.getMessage());
            }
        }
        gcMetrics.close();
        registry.close();
    }
}
