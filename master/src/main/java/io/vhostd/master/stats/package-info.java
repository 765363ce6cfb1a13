/**
 * The master's side of the statistics of issue #5: it creates, formats and owns each controller's stats region
 * ({@code virtnvme-shm/spec/stats.md}) and reads it for the {@code bdev_*_iostat}, {@code bdev_*_histogram} and
 * {@code trace_*} RPC methods (and for the Prometheus endpoint, through {@link io.vhostd.master.stats.StatsService}).
 * The slave's data path is the only writer of the counters; this package never writes them.
 */
package io.vhostd.master.stats;
