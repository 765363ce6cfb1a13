package io.vhostd.master.engine;

/**
 * Executes VirtNvme commands of the queue pairs attached to it against one bdev. Thread-safe: attach/detach hand the
 * change to the engine thread through a queue and wait for it to be applied.
 */
public interface DeviceEngine extends AutoCloseable {
    /** "io_uring", "thread-pool" or "memory" ({@link MemoryEngine}: null and malloc bdevs). */
    String kind();

    /** Starts serving {@code binding}; returns when the engine thread has taken it. */
    void attach(QpairBinding binding);

    /**
     * Stops serving the queue pair with this id once its in-flight commands completed; returns when it is detached.
     */
    void detach(int qpairId);

    /** Commands executed since start, for the log and stats. */
    long commandsCompleted();

    /** Stops the thread; commands in flight are completed or failed first. */
    @Override
    void close();
}
