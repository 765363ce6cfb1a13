package io.vhostd.master.config;

import java.util.List;

/**
 * {@code slave:} — how the master starts the slave process.
 *
 * @param javaOpts extra JVM options for the slave, in order; key {@code java_opts}, default none
 * @param maxSegments most scatter-list segments of one VirtNvme command, 1..{@value #MAX_MAX_SEGMENTS}; key {@code
 *     max_segments}, default {@value #DEFAULT_MAX_SEGMENTS}
 */
public record SlaveConfig(List<String> javaOpts, int maxSegments) {
    /** Default {@code max_segments}. */
    public static final int DEFAULT_MAX_SEGMENTS = 128;

    /** Largest {@code max_segments} accepted. */
    public static final int MAX_MAX_SEGMENTS = 1024;

    public SlaveConfig {
        javaOpts = List.copyOf(javaOpts);
    }

    /** {@code java_opts: [], max_segments: 128}. */
    public static SlaveConfig defaults() {
        return new SlaveConfig(List.of(), DEFAULT_MAX_SEGMENTS);
    }
}
