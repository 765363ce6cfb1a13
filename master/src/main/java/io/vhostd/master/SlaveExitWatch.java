package io.vhostd.master;

import io.vhostd.shm.linux.Poll;
import io.vhostd.shm.linux.Priority;
import io.vhostd.shm.linux.Taskstats;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;

/**
 * Learns of a slave's death before the kernel has torn its memory down (issue #4): the kernel's TASKSTATS exit record
 * ({@link Taskstats}) of the slave's thread group arrives 0.3 - 3 ms after a SIGKILL, its pidfd 10 - 30 ms after it
 * for a JVM of 120 - 180 MB resident on a busy host. The record is sent once every thread of the process is inside
 * {@code do_exit}, so no code of the slave runs again: its controllers can be handed over at once.
 *
 * <p>A hint, never the only notice: without the interface (no CAP_NET_ADMIN, a container's namespaces, a kernel
 * without CONFIG_TASKSTATS) or when the kernel drops a record (every exit on the host is reported, and the socket's
 * buffer can fill), the master learns of the death from the process's exit as before. One thread, at the control
 * threads' priority, reads the records.
 */
final class SlaveExitWatch implements AutoCloseable {
    private static final System.Logger LOG = System.getLogger(SlaveExitWatch.class.getName());

    private final Taskstats taskstats;
    private final Map<Integer, Runnable> watched = new ConcurrentHashMap<>();
    private volatile boolean closed;

    private SlaveExitWatch(Taskstats taskstats) {
        this.taskstats = taskstats;
    }

    /** Starts listening if the kernel lets this process; otherwise an inactive watch (it registers nothing). */
    static SlaveExitWatch start() {
        Taskstats t;
        try {
            t = Taskstats.listenForExits();
        } catch (RuntimeException e) {
            LOG.log(
                    System.Logger.Level.INFO,
                    "slave deaths are seen when the process is gone (TASKSTATS exit records unavailable: "
                            + e.getMessage() + ")");
            return new SlaveExitWatch(null);
        }
        SlaveExitWatch w = new SlaveExitWatch(t);
        Thread.ofPlatform().name("slave-exits").daemon(true).start(w::readLoop);
        LOG.log(System.Logger.Level.INFO, "slave deaths are seen from the kernel's TASKSTATS exit records");
        return w;
    }

    /**
     * Runs {@code exiting} (once, on the reader thread: it must hand off at once) when the thread group {@code pid}
     * is reported exiting. Replaces what was registered for {@code pid}.
     */
    void onExiting(long pid, Runnable exiting) {
        if (taskstats != null) {
            watched.put((int) pid, exiting);
        }
    }

    /** Forgets what {@link #onExiting} registered for {@code pid} if it is still {@code exiting} (a reused pid's is kept). */
    void forget(long pid, Runnable exiting) {
        watched.remove((int) pid, exiting);
    }

    private void readLoop() {
        // a death is on the critical path of the guests' pause: not behind the guests' vCPUs for a time slice
        Priority.favourCurrentThread(SlaveProcess.CONTROL_NICE, Priority.HANDOVER_RTPRIO);
        boolean warned = false;
        try {
            while (!closed) {
                Poll.poll(taskstats.fd(), Poll.POLLIN, 500);
                if (closed) {
                    break;
                }
                boolean complete = taskstats.drain(tgid -> {
                    Runnable r = watched.remove(tgid);
                    if (r != null) {
                        r.run();
                    }
                });
                if (!complete && !warned) {
                    warned = true;
                    LOG.log(
                            System.Logger.Level.WARNING,
                            "TASKSTATS: the kernel dropped exit records (many exits on the host); a slave death among"
                                    + " them is seen when the process is gone");
                }
            }
        } catch (RuntimeException e) {
            LOG.log(
                    System.Logger.Level.WARNING,
                    "TASKSTATS exit records stopped: " + e.getMessage() + "; slave deaths are seen when the process is"
                            + " gone");
        } finally {
            taskstats.close();
        }
    }

    /** Stops reading (within 0.5 s; the socket is closed by the reader). Idempotent. */
    @Override
    public void close() {
        closed = true;
        watched.clear();
    }
}
