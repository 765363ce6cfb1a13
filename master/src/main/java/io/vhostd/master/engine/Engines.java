package io.vhostd.master.engine;

import io.vhostd.master.bdev.Bdev;
import io.vhostd.master.config.BdevConfig;
import io.vhostd.shm.linux.IoUring;

/** Chooses and starts the device engine of a bdev. */
public final class Engines {
    private Engines() {}

    /**
     * Starts the engine that serves {@code bdev}: {@link MemoryEngine} for {@code null} and {@code malloc}, {@link
     * IoUringEngine} for the others, or {@link ThreadPoolEngine} where io_uring is unavailable ({@link
     * #ioUringUnavailableReason()}).
     *
     * @param maxSegments most data segments of one VirtNvme command
     */
    public static DeviceEngine create(Bdev bdev, int maxSegments) {
        return switch (bdev.type()) {
            case BdevConfig.TYPE_NULL, BdevConfig.TYPE_MALLOC -> new MemoryEngine(bdev, maxSegments);
            default ->
                IoUring.isAvailable() ? new IoUringEngine(bdev, maxSegments) : new ThreadPoolEngine(bdev, maxSegments);
        };
    }

    /** Why a file or device bdev gets the thread-pool engine, or null when io_uring is available. */
    public static String ioUringUnavailableReason() {
        return IoUring.isAvailable() ? null : "io_uring unavailable on this host";
    }
}
