package io.vhostd.master.config;

import java.util.List;

/**
 * {@code slave:} — how the master starts the slave process.
 *
 * @param javaOpts extra JVM options for the slave, in order; key {@code java_opts}, default none
 * @param maxSegments most scatter-list segments of one VirtNvme command, 1..{@value #MAX_MAX_SEGMENTS}; key {@code
 *     max_segments}, default {@value #DEFAULT_MAX_SEGMENTS}
 * @param orphanTimeoutMs how long a slave that serves controllers keeps them open after its master died, waiting for a
 *     restarted master to re-adopt it (issue #4), 0..{@value #MAX_ORPHAN_TIMEOUT_MS} ms; key {@code
 *     orphan_timeout_ms}, default {@value #DEFAULT_ORPHAN_TIMEOUT_MS}; 0: the slave exits with its master
 * @param standbyDelayMs how long after a handover (a slave's death or an upgrade) the master waits before it starts
 *     the next standby, 0..{@value #MAX_STANDBY_DELAY_MS} ms; key {@code standby_delay_ms}, default {@value
 *     #DEFAULT_STANDBY_DELAY_MS}. A JVM start takes CPU from the guests just when they resume; a handover that finds
 *     the standby still waiting starts it at once, and a slave death less than 5 s after the previous one starts the
 *     next standby without delay
 * @param aotCache where the slaves' AOT cache is kept (issue #4, the master's {@code SlaveAotCache}): a directory, or
 *     {@code off} for none; key {@code aot_cache}, default null: {@code /var/cache/vhostd/aot}, or {@code
 *     <run_dir>/aot} when that cannot be created
 */
public record SlaveConfig(
        List<String> javaOpts, int maxSegments, long orphanTimeoutMs, long standbyDelayMs, String aotCache) {
    /** Default {@code orphan_timeout_ms}: a minute, for a master restarted by systemd (RestartSec=1s). */
    public static final long DEFAULT_ORPHAN_TIMEOUT_MS = 60_000;

    /** Largest {@code orphan_timeout_ms} accepted (an hour). */
    public static final long MAX_ORPHAN_TIMEOUT_MS = 3_600_000;

    /** Default {@code standby_delay_ms}. */
    public static final long DEFAULT_STANDBY_DELAY_MS = 1_000;

    /** Largest {@code standby_delay_ms} accepted (a minute). */
    public static final long MAX_STANDBY_DELAY_MS = 60_000;

    /** Default {@code max_segments}. */
    public static final int DEFAULT_MAX_SEGMENTS = 128;

    /** Largest {@code max_segments} accepted. */
    public static final int MAX_MAX_SEGMENTS = 1024;

    public SlaveConfig {
        javaOpts = List.copyOf(javaOpts);
    }

    /**
     * {@code java_opts: [], max_segments: 128, orphan_timeout_ms: 60000, standby_delay_ms: 1000}, {@code aot_cache}
     * absent.
     */
    public static SlaveConfig defaults() {
        return new SlaveConfig(
                List.of(), DEFAULT_MAX_SEGMENTS, DEFAULT_ORPHAN_TIMEOUT_MS, DEFAULT_STANDBY_DELAY_MS, null);
    }
}
