package io.vhostd.master;

import io.vhostd.shm.linux.Pidfd;
import io.vhostd.shm.linux.Poll;
import io.vhostd.shm.linux.Signal;
import io.vhostd.shm.linux.Unistd;
import java.io.InputStream;
import java.io.OutputStream;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;

/**
 * A slave this master did not start (issue #4 master restart: a slave of the dead master re-adopted over the control
 * socket), seen through a pidfd as a {@link Process}: not our child, so there is no exit status ({@link #exitValue()}
 * answers {@link #UNKNOWN_EXIT_STATUS} once it exited) and no standard streams. The pidfd becomes readable when the
 * process exits (pidfd_open(2)); a daemon thread waits on it and completes {@link #onExit()}. Signals go through the
 * pidfd, so a reused pid is never signalled.
 */
final class AdoptedProcess extends Process {
    /** {@link #exitValue()} of an adopted process that exited: its status went to its real parent. */
    static final int UNKNOWN_EXIT_STATUS = -1;

    private final long pid;
    private final int pidfd;
    private final CompletableFuture<Process> exited = new CompletableFuture<>();

    /**
     * @param pid the process, checked by the caller (SO_PEERCRED of its control connection)
     * @throws io.vhostd.shm.linux.ErrnoException if the process is gone already (ESRCH)
     */
    AdoptedProcess(long pid) {
        this.pid = pid;
        this.pidfd = Pidfd.pidfd_open((int) pid, 0);
        Thread.ofPlatform().name("pidfd-" + pid).daemon(true).start(this::awaitExit);
    }

    private void awaitExit() {
        try {
            while ((Poll.poll(pidfd, Poll.POLLIN, -1) & Poll.POLLIN) == 0) {
                // EINTR or a spurious wake-up: wait again
            }
        } finally {
            exited.complete(this);
        }
    }

    @Override
    public long pid() {
        return pid;
    }

    @Override
    public CompletableFuture<Process> onExit() {
        return exited.copy();
    }

    @Override
    public boolean isAlive() {
        return !exited.isDone() && (Poll.poll(pidfd, Poll.POLLIN, 0) & Poll.POLLIN) == 0;
    }

    @Override
    public int waitFor() throws InterruptedException {
        try {
            exited.get();
        } catch (ExecutionException e) {
            throw new IllegalStateException(e.getCause());
        }
        return UNKNOWN_EXIT_STATUS;
    }

    @Override
    public boolean waitFor(long timeout, TimeUnit unit) throws InterruptedException {
        try {
            exited.get(timeout, unit);
            return true;
        } catch (TimeoutException e) {
            return false;
        } catch (ExecutionException e) {
            throw new IllegalStateException(e.getCause());
        }
    }

    @Override
    public int exitValue() {
        if (isAlive()) {
            throw new IllegalThreadStateException("process " + pid + " has not exited");
        }
        return UNKNOWN_EXIT_STATUS;
    }

    @Override
    public void destroy() {
        signal(Signal.SIGTERM);
    }

    @Override
    public Process destroyForcibly() {
        signal(Signal.SIGKILL);
        return this;
    }

    private void signal(int sig) {
        if (exited.isDone()) {
            return;
        }
        try {
            Pidfd.pidfd_send_signal(pidfd, sig);
        } catch (RuntimeException e) {
            // ESRCH: it exited meanwhile
        }
    }

    /** @throws IllegalStateException if the process is gone */
    @Override
    public ProcessHandle toHandle() {
        return ProcessHandle.of(pid).orElseThrow(() -> new IllegalStateException("process " + pid + " gone"));
    }

    /** @throws IllegalStateException if the process is gone */
    @Override
    public ProcessHandle.Info info() {
        return toHandle().info();
    }

    @Override
    public OutputStream getOutputStream() {
        return OutputStream.nullOutputStream();
    }

    @Override
    public InputStream getInputStream() {
        return InputStream.nullInputStream();
    }

    @Override
    public InputStream getErrorStream() {
        return InputStream.nullInputStream();
    }

    /** Closes the pidfd once the process exited (the waiting thread has returned). */
    void closeWhenExited() {
        exited.thenRun(() -> Unistd.close(pidfd));
    }
}
