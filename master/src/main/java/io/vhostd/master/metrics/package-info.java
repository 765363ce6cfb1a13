/**
 * The Prometheus endpoint (issue #5): a Micrometer {@code PrometheusMeterRegistry} with the per-bdev counters of
 * {@code StatsService}, its latency histograms as real Prometheus histograms, and the master's JVM and process
 * metrics, served by Vert.x at {@code GET /metrics} on the configured {@code prometheus.listen} address ({@link
 * io.vhostd.master.metrics.MetricsServer}). Metric names: docs/observability.md. Role: master.
 */
package io.vhostd.master.metrics;
