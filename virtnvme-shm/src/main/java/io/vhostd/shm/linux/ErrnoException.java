package io.vhostd.shm.linux;

/**
 * A system call failed. The message reads {@code "<call>: <NAME> (errno <n>): <strerror text>"}, e.g. {@code "close:
 * EBADF (errno 9): Bad file descriptor"}.
 */
public final class ErrnoException extends RuntimeException {
    private final String call;
    private final int errno;

    /**
     * @param call the failed call, optionally with context (e.g. {@code "open /dev/nvme0n1"})
     * @param errno the {@code errno} value the call left
     */
    public ErrnoException(String call, int errno) {
        super(call + ": " + Errno.name(errno) + " (errno " + errno + "): " + Errno.strerror(errno));
        this.call = call;
        this.errno = errno;
    }

    /** The failed call, as given to the constructor. */
    public String call() {
        return call;
    }

    /** The {@code errno} value. */
    public int errno() {
        return errno;
    }

    /** The symbolic name of {@link #errno()}, e.g. {@code "EBADF"}. */
    public String errnoName() {
        return Errno.name(errno);
    }
}
