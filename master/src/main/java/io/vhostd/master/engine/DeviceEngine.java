package io.vhostd.master.engine;

/**
 * Executes VirtNvme commands of the queue pairs attached to it against one bdev ({@code
 * virtnvme-shm/spec/virtnvme.md} §6.4–§6.7). Thread-safe: attach/detach hand the change to the engine thread through
 * a queue and wait for it to be applied.
 */
public interface DeviceEngine extends AutoCloseable {
    /** Most queue pairs one engine serves at once; {@link #attach} refuses more. */
    int MAX_QPAIRS = 256;

    /** "io_uring", "thread-pool" or "memory" ({@link MemoryEngine}: null and malloc bdevs). */
    String kind();

    /**
     * Starts serving {@code binding}; returns when the engine thread has taken it.
     *
     * @throws IllegalStateException if the engine stopped, already serves {@link #MAX_QPAIRS} queue pairs, or already
     *     serves a queue pair with this id
     */
    void attach(QpairBinding binding);

    /**
     * Stops serving the queue pair with this id once its in-flight commands completed; returns when it is detached.
     * Returns at once if no such queue pair is attached (also when the engine detached it itself, spec §9.3).
     *
     * @throws IllegalStateException if the engine stopped
     */
    void detach(int qpairId);

    /**
     * {@link #detach(int)} of several queue pairs at once (issue #4: a dead slave's queues, reset in a handover): their
     * in-flight commands drain together; returns when every one is detached. Ids not attached are skipped.
     *
     * @throws IllegalStateException if the engine stopped
     */
    default void detachAll(int... qpairIds) {
        for (int id : qpairIds) {
            detach(id);
        }
    }

    /** Commands executed (completion posted) since start, for the log and stats. */
    long commandsCompleted();

    /**
     * SQEs dropped unanswered since start: a CID not below the queue's depth, or a CID still in flight (spec §9.1).
     * The first of each queue pair is logged.
     */
    long commandsDropped();

    /**
     * Queue pairs the engine stopped serving and detached because the slave corrupted them (spec §9.3: an SQ tail
     * more than depth ahead, a CQ head out of range, a CQ that stays full). Each is logged once.
     */
    long queuePairsFailed();

    /**
     * Commands the device failed since start (answered {@code WRITE_FAULT}, {@code UNRECOVERED_READ_ERROR}, or
     * {@code DATA_TRANSFER_ERROR} when guest memory was at fault, spec §7.1). The first of each queue pair is logged.
     */
    long deviceErrors();

    /**
     * Stops the thread; commands in flight are completed or failed first. Safe to call more than once and after the
     * engine thread died.
     */
    @Override
    void close();
}
