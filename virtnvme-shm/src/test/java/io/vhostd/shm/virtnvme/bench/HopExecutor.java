package io.vhostd.shm.virtnvme.bench;

import io.vhostd.shm.linux.Eventfd;
import io.vhostd.shm.linux.Poll;
import io.vhostd.shm.linux.Unistd;
import io.vhostd.shm.virtnvme.VirtNvmeQueuePair;
import io.vhostd.shm.virtnvme.VirtNvmeStatus;
import java.util.concurrent.atomic.AtomicLong;

/**
 * The master's side of the hop: one thread that executes the qpair's commands against a null device (each command is
 * validated as the master's engine does, then completed at once with SUCCESS and its length as the result; no I/O and
 * no guest memory touched). Its waiting follows the daemon's engines: in {@link HopPhase#WAIT_POLL} mode it spins on
 * the SQ and never arms a wake-up; in {@link HopPhase#WAIT_ADAPTIVE} mode it spins for {@code spinNs} after its last
 * command, then stores its SQ event index ({@link VirtNvmeQueuePair#armSubmissionWakeup()}) and sleeps in poll(2) on the
 * SQ eventfd. No allocation and no system call per command while busy.
 *
 * <p>The controller thread changes the mode with {@link #mode(int)} and reads the counters at any time.
 */
final class HopExecutor implements Runnable, VirtNvmeQueuePair.SubmissionHandler {
    /** Thread name, also how JFR events of this thread are found. */
    static final String THREAD_NAME = "virtnvme-hop-executor";

    private static final int MODE_STOP = -1;
    private static final int SLEEP_TIMEOUT_MS = 1000;
    private static final int POLL_INDEX_SQ = 0;
    private static final int POLL_INDEX_WAKE = 1;

    private final VirtNvmeQueuePair qp;
    private final int sqEventFd;
    private final int cqEventFd;
    private final int wakeEventFd;
    private final long spinNs;
    private volatile boolean spinDisabled;
    private final int batchLimit;
    private final Poll.PollSet pollSet = new Poll.PollSet(2);

    private volatile int mode = HopPhase.WAIT_ADAPTIVE;

    // written by the executor thread only (lazySet: a plain store on x86), read by the controller
    private final AtomicLong completed = new AtomicLong();
    private final AtomicLong eventfdWrites = new AtomicLong();
    private final AtomicLong sleeps = new AtomicLong();

    /**
     * @param qp the formatted queue pair; only its executor role is used
     * @param sqEventFd wakes this side (the slave writes it)
     * @param cqEventFd wakes the slave
     * @param spinNs how long to spin after the last command before sleeping, in adaptive mode
     */
    HopExecutor(final VirtNvmeQueuePair qp, final int sqEventFd, final int cqEventFd, final long spinNs) {
        this.qp = qp;
        this.sqEventFd = sqEventFd;
        this.cqEventFd = cqEventFd;
        this.wakeEventFd = Eventfd.eventfd(0, Eventfd.EFD_CLOEXEC | Eventfd.EFD_NONBLOCK);
        this.spinNs = spinNs;
        this.batchLimit = qp.depth();
    }

    /** Sets {@link HopPhase#WAIT_POLL} or {@link HopPhase#WAIT_ADAPTIVE} and wakes the thread if it sleeps. */
    void mode(final int waitMode) {
        mode = waitMode;
        Eventfd.eventfd_write(wakeEventFd, 1);
    }

    /**
     * @param disabled true: sleep as soon as the SQ is empty (no spin), to warm the sleep path up; false: spin for the
     *     budget again
     */
    void spinDisabled(final boolean disabled) {
        spinDisabled = disabled;
        Eventfd.eventfd_write(wakeEventFd, 1);
    }

    /** Makes {@link #run()} return soon. */
    void stop() {
        mode(MODE_STOP);
    }

    /** @return commands completed so far */
    long completed() {
        return completed.get();
    }

    /** @return CQ eventfd writes (slave wake-ups) so far */
    long eventfdWrites() {
        return eventfdWrites.get();
    }

    /** @return times this thread slept in poll(2) so far */
    long sleeps() {
        return sleeps.get();
    }

    @Override
    public void onSubmission(final VirtNvmeQueuePair.Command command) {
        // the null device: what the engine does before any I/O (syntax check), then complete at once
        final int status = command.validate();
        final int result = status == VirtNvmeStatus.SUCCESS ? command.lengthBytes() : 0;
        while (!qp.postCompletion(command.cid(), status, result)) {
            // cannot happen while the slave keeps at most depth commands outstanding (spec §8); wait for it
            publish();
            Thread.onSpinWait();
        }
    }

    @Override
    public void run() {
        long idleSinceNs = 0;
        try {
            while (true) {
                final int n = qp.pollSubmissions(this, batchLimit);
                if (n > 0) {
                    publish();
                    completed.lazySet(completed.get() + n);
                    idleSinceNs = 0;
                    continue;
                }
                final int m = mode;
                if (m == MODE_STOP) {
                    return;
                }
                if (m == HopPhase.WAIT_POLL) {
                    Thread.onSpinWait();
                    continue;
                }
                final long nowNs = System.nanoTime();
                if (idleSinceNs == 0) {
                    idleSinceNs = nowNs;
                }
                if (nowNs - idleSinceNs < spinNs && !spinDisabled) {
                    Thread.onSpinWait();
                    continue;
                }
                idleSinceNs = 0;
                sleep();
            }
        } finally {
            pollSet.close();
            Unistd.close(wakeEventFd);
        }
    }

    private void publish() {
        if (qp.publishCompletions()) {
            Eventfd.eventfd_write(cqEventFd, 1);
            eventfdWrites.lazySet(eventfdWrites.get() + 1);
        }
    }

    /** spec §6.7 "Master, before it sleeps": arm, look again, then block on the SQ eventfd. */
    private void sleep() {
        if (qp.armSubmissionWakeup()) {
            return;
        }
        sleeps.lazySet(sleeps.get() + 1);
        pollSet.set(POLL_INDEX_SQ, sqEventFd, Poll.POLLIN);
        pollSet.set(POLL_INDEX_WAKE, wakeEventFd, Poll.POLLIN);
        pollSet.poll(SLEEP_TIMEOUT_MS);
        if ((pollSet.revents(POLL_INDEX_SQ) & Poll.POLLIN) != 0) {
            // readable and non-blocking: drains the counter, several writes cost one wake-up
            Eventfd.eventfd_read(sqEventFd);
        }
        if ((pollSet.revents(POLL_INDEX_WAKE) & Poll.POLLIN) != 0) {
            Eventfd.eventfd_read(wakeEventFd);
        }
    }
}
